"""Checkpoint loading and network construction, with errors that name the file and the fix."""
from __future__ import annotations

import codecs
import difflib
import re
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import torch

from harness.cache import file_sha256
from harness.spec import CheckpointError, ModelSpec

SEED = 0  # seeded weights: torch.manual_seed(SEED) before building


@dataclass
class Weights:
    state_dict: dict[str, torch.Tensor] | None
    provenance: dict[str, Any] = field(default_factory=dict)

    @property
    def seeded(self) -> bool:
        return self.state_dict is None

    @property
    def published_file(self) -> bool:
        """The real upstream checkpoint: given, and its sha256 prefix matches where one is known."""
        return not self.seeded and self.provenance.get("sha256_matches_name", True) is not False


def _expected(spec: ModelSpec) -> str:
    c = spec.checkpoint
    shape = f"a dict with the state_dict under {c.nesting!r}" if c.nesting else "a bare state_dict"
    prefix = f", keys optionally prefixed {c.strip_prefix!r}" if c.strip_prefix else ""
    count = f", {c.keys} entries" if c.keys else ""
    return f"{spec.name}'s upstream checkpoint ({spec.upstream}): {shape}{prefix}{count}"


def _unreadable(path: Path, err: Exception) -> str:
    """Why torch.load refused the file, without torch's advice to turn safe loading off."""
    text = str(err)
    if "Unsupported global" in text:
        found = text.split("Unsupported global:")[-1].split("was not")[0].strip(" .")
        return ("holds Python objects beyond tensors and plain containers, which safe loading "
                f"(weights_only=True) refuses ({found[:120]}): re-save the state_dict alone")
    if not zipfile.is_zipfile(path):
        return f"not a PyTorch checkpoint: {_looks_like(path)}, neither a torch.save zip archive nor a readable legacy pickle"
    return f"not a readable PyTorch checkpoint ({type(err).__name__}: {text.splitlines()[0][:200] if text else ''})"


def _looks_like(path: Path) -> str:
    """What a file that is no checkpoint holds, from its first bytes: empty, text or binary."""
    with open(path, "rb") as f:
        head = f.read(64)
    if not head:
        return "an empty file"
    try:  # incremental: a character cut at byte 64 is not an error
        start = codecs.getincrementaldecoder("utf-8")().decode(head, final=False)
    except UnicodeDecodeError:
        start = None
    if start and all(c.isprintable() or c.isspace() for c in start):
        first_line = start.strip().splitlines()[0] if start.strip() else start
        return f"a text file starting {first_line[:40]!r}"
    return f"{path.stat().st_size} bytes of binary data starting {head[:16]!r}"


def family_by_key_pattern(keys: Sequence[str], families: Sequence[tuple[str, str]]) -> str | None:
    """The first family whose key regex matches any key: ``families`` = ((regex, name), ...),
    most specific first. Model specs use it to name a foreign checkpoint's family."""
    for pattern, family in families:
        if any(re.match(pattern, k) for k in keys):
            return family
    return None


def find_checkpoint(spec: ModelSpec, weights_dir: str | Path | None) -> Path | None:
    """The model's checkpoint in ``weights_dir``; None only when no directory was given at all
    (seeded weights). A given directory that lacks the file is an error naming the file it looked
    for and what the directory holds instead, so that a mistyped or half-filled --weights-dir
    cannot quietly run on seeded weights."""
    if weights_dir is None:
        return None
    if str(weights_dir) == "":
        raise CheckpointError(f"--weights-dir is empty; expected a directory holding {spec.checkpoint.filename}")
    directory = Path(weights_dir)
    if not directory.is_dir():
        raise CheckpointError(f"--weights-dir {directory}: not a directory; expected one holding "
                              f"{spec.checkpoint.filename} ({spec.name})")
    path = directory / spec.checkpoint.filename
    if path.is_file():
        return path
    present = sorted(p.name for p in directory.iterdir() if not p.name.startswith("."))
    near = difflib.get_close_matches(spec.checkpoint.filename, present, n=3, cutoff=0.5)
    if near:
        found = "near-miss name(s) " + ", ".join(near)
    elif present:
        found = f"{len(present)} other file(s): " + ", ".join(present[:10]) + (" ..." if len(present) > 10 else "")
    else:
        found = "nothing (the directory is empty)"
    raise CheckpointError(f"{path}: no such file for {spec.name}; --weights-dir {directory} holds {found}. "
                          f"Expected {_expected(spec)}, named as the seed names it")


def load_checkpoint(spec: ModelSpec, path: Path) -> Weights:
    """Read a checkpoint safely (weights_only) and return the state_dict the network expects."""
    path = Path(path)
    try:
        raw = torch.load(path, map_location="cpu", weights_only=True)
    except MemoryError:
        raise
    except Exception as err:  # noqa: BLE001 -- the legacy unpickler raises anything on foreign bytes
        raise CheckpointError(f"{path}: {_unreadable(path, err)}; expected {_expected(spec)}") from err
    nesting = spec.checkpoint.nesting
    if nesting is not None:
        if not isinstance(raw, dict) or nesting not in raw:
            found = sorted(raw)[:8] if isinstance(raw, dict) else type(raw).__name__
            raise CheckpointError(f"{path}: no {nesting!r} entry (found {found}); expected {_expected(spec)}")
        raw = raw[nesting]
    if not isinstance(raw, dict) or not all(isinstance(v, torch.Tensor) for v in raw.values()):
        raise CheckpointError(f"{path}: does not hold a state_dict of tensors; expected {_expected(spec)}")
    prefix = spec.checkpoint.strip_prefix
    if prefix and raw and all(k.startswith(prefix) for k in raw):
        raw = {k[len(prefix):]: v for k, v in raw.items()}
    _require_finite(path, raw)
    sha = file_sha256(path)
    provenance: dict[str, Any] = {"source": "checkpoint", "path": str(path), "sha256": sha,
                                  "stored_dtypes": stored_dtypes(raw)}
    if spec.checkpoint.sha256_prefix:
        provenance["sha256_matches_name"] = sha.startswith(spec.checkpoint.sha256_prefix)
    note = half_precision_note(provenance["stored_dtypes"])
    if note:
        provenance["note"] = note
    return Weights(dict(raw), provenance)


# the relative rounding a weight stored at that precision already carries (half its unit step)
_HALF_PRECISIONS = {"float16": 2.0 ** -11, "bfloat16": 2.0 ** -8}


def stored_dtypes(state_dict: dict[str, torch.Tensor]) -> dict[str, int]:
    """How many tensors the checkpoint stores at each dtype (what loading upcasts is not seen
    afterwards: the network's parameters are float32 whatever the file held)."""
    counts: dict[str, int] = {}
    for tensor in state_dict.values():
        name = str(tensor.dtype).removeprefix("torch.")
        counts[name] = counts.get(name, 0) + 1
    return dict(sorted(counts.items()))


def half_precision_note(dtypes: dict[str, int]) -> str:
    """What half-precision weights mean for the verdicts; '' for a full-precision checkpoint."""
    half = {name: count for name, count in dtypes.items() if name in _HALF_PRECISIONS}
    if not half:
        return ""
    stored = ", ".join(f"{count} tensor(s) as {name}" for name, count in half.items())
    worst = max(half, key=_HALF_PRECISIONS.get)
    return (f"half-precision checkpoint ({stored}), upcast to float32 on load: PyTorch and the deployment run "
            f"the same upcast values, so the element-wise tolerances hold as for float32 weights; against a "
            f"full-precision original (the published figures' network, if it was one) each weight already "
            f"differs by up to {_HALF_PRECISIONS[worst]:.2g} relative ({worst} rounding), which no tolerance here "
            f"covers")


def _require_finite(path: Path, state_dict: dict[str, torch.Tensor]) -> None:
    """A NaN or Inf weight makes every output NaN (or silently wrong): refuse it at load."""
    for key, tensor in state_dict.items():
        if tensor.is_floating_point() or tensor.is_complex():
            finite = torch.isfinite(tensor)
            if not bool(finite.all()):
                nan = int(torch.isnan(tensor).sum())
                raise CheckpointError(
                    f"{path}: tensor {key!r} {tuple(tensor.shape)} holds {nan} NaN and "
                    f"{int((~finite).sum()) - nan} Inf of {tensor.numel()} values; expected finite weights")


def seeded_weights() -> Weights:
    return Weights(None, {"source": "seeded", "seed": SEED,
                          "note": "no checkpoint given: seeded random weights, published figures do not apply"})


def build_network(spec: ModelSpec, profile: str, weights: Weights, source: str = "") -> torch.nn.Module:
    """The PyTorch reference network, loaded strictly from ``weights`` unless seeded."""
    torch.manual_seed(SEED)
    source = source or weights.provenance.get("path", "checkpoint")
    try:
        net = spec.build_network(spec.profile(profile), weights.state_dict)
    except CheckpointError as err:  # the model saw a variant it cannot serve: name the file
        raise CheckpointError(f"{source}: {err}") from err
    if weights.state_dict is not None:
        _check_keys(spec, net, weights.state_dict, source)
        net.load_state_dict(weights.state_dict, strict=True)
    return net.eval()


def _check_keys(spec: ModelSpec, net: torch.nn.Module, state_dict: dict, source: str) -> None:
    expected = net.state_dict()
    missing = [k for k in expected if k not in state_dict]
    unexpected = [k for k in state_dict if k not in expected]
    mismatched = [
        f"{k}: checkpoint {tuple(state_dict[k].shape)} vs network {tuple(v.shape)}"
        for k, v in expected.items()
        if k in state_dict and tuple(state_dict[k].shape) != tuple(v.shape)
    ]
    if not (missing or unexpected or mismatched):
        return
    lines = [f"{source}: does not match {_expected(spec)}."]
    family = spec.identify_foreign(list(state_dict)) if spec.identify_foreign else None
    if family:
        lines.append(f"It looks like a {family} checkpoint.")

    def listing(title: str, names: list[str]) -> None:
        if names:
            more = f" ... and {len(names) - 12} more" if len(names) > 12 else ""
            lines.append(f"{title} ({len(names)}): " + ", ".join(names[:12]) + more)

    listing("missing keys", missing)
    listing("unexpected keys", unexpected)
    listing("shape mismatches", mismatched)
    raise CheckpointError("\n".join(lines))
