"""The pipeline of one run: each stage a plain function, composed and memoized per run.

checkpoint -> network -> ONNX -> simplified ONNX -> compiled artifact per batch size
dataset -> batches -> (PyTorch reference, deployed) outputs in lockstep -> metrics

``Pipeline`` is what the pytest fixtures hold; scripts can use it without pytest. Expensive
results go through :func:`harness.cache.build_once`, keyed by what determines them.
"""
from __future__ import annotations

import hashlib
import inspect
import os
import platform
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Iterable, Iterator, Mapping, Sequence

import numpy as np
import onnx
import torch

from harness import cache, checkpoint, export
from harness.backends import Backend, Session, backend_class
from harness.config import RunConfig
from harness.spec import Elementwise, ModelSpec, Sample


def _source_hash(*objects) -> str:
    """Hash of the source files defining these callables: code changes invalidate artifacts."""
    digest = hashlib.sha256()
    for obj in objects:
        digest.update(Path(inspect.getsourcefile(obj)).read_bytes())
    return digest.hexdigest()[:16]


def batches(samples: Iterable[Sample], batch_size: int, input_names: Sequence[str]
            ) -> Iterator[tuple[list[Sample], dict[str, np.ndarray]]]:
    """Stack samples into batches; the last one is padded by repeating its last sample, since
    compiled artifacts have a static batch size. Only the real samples are returned with it."""
    pending: list[Sample] = []

    def stack(group: list[Sample]) -> dict[str, np.ndarray]:
        padded = group + [group[-1]] * (batch_size - len(group))
        return {n: np.ascontiguousarray(np.stack([s.inputs[n] for s in padded]), dtype=np.float32)
                for n in input_names}

    for sample in samples:
        pending.append(sample)
        if len(pending) == batch_size:
            yield pending, stack(pending)
            pending = []
    if pending:
        yield pending, stack(pending)


def torch_forward(network: torch.nn.Module, feeds: Mapping[str, np.ndarray],
                  output_names: Sequence[str]) -> dict[str, np.ndarray]:
    with torch.no_grad():
        result = network(*(torch.from_numpy(a) for a in feeds.values()))
    if isinstance(result, torch.Tensor):
        result = (result,)
    return {name: t.numpy() for name, t in zip(output_names, result)}


@dataclass
class ElementwiseStats:
    """Streaming comparison of deployed outputs with the PyTorch reference."""

    tolerance: Elementwise
    elements: int = 0
    outside: int = 0
    max_abs: float = 0.0
    max_ref: float = 0.0
    worst: str = ""

    def add(self, sample_id: str, reference: Mapping[str, np.ndarray], deployed: Mapping[str, np.ndarray]) -> None:
        for name, ref in reference.items():
            got = deployed[name].astype(np.float64)
            ref = ref.astype(np.float64)
            if got.shape != ref.shape:
                raise AssertionError(f"{sample_id}/{name}: deployed shape {got.shape} != reference {ref.shape}")
            diff = np.abs(got - ref)
            bound = self.tolerance.atol + self.tolerance.rtol * np.abs(ref)
            self.elements += diff.size
            self.outside += int((~(diff <= bound)).sum())  # NaN counts as outside
            peak = float(np.nanmax(diff)) if diff.size else 0.0
            if not np.isfinite(diff).all():
                peak = float("inf")
            if peak > self.max_abs or not self.worst:
                self.max_abs, self.worst = max(peak, self.max_abs), f"{sample_id}/{name}"
            self.max_ref = max(self.max_ref, float(np.nanmax(np.abs(ref))) if ref.size else 0.0)

    @property
    def passed(self) -> bool:
        return self.elements > 0 and self.outside == 0

    def as_dict(self) -> dict:
        return {"rtol": self.tolerance.rtol, "atol": self.tolerance.atol, "elements": self.elements,
                "outside_tolerance": self.outside, "max_abs_diff": self.max_abs,
                "max_abs_reference": self.max_ref, "worst": self.worst, "passed": self.passed}


@dataclass
class Evaluation:
    """One model x backend x precision x batch size over the dataset."""

    torch_metrics: dict[str, float]
    deployed_metrics: dict[str, float]
    elementwise: ElementwiseStats
    dataset: dict
    first_batch: tuple[dict[str, np.ndarray], dict[str, np.ndarray]] | None  # feeds, deployed outputs
    extra: dict = field(default_factory=dict)


def save_outputs(root: Path, spec: ModelSpec, where: str, sample_id: str, outputs: Mapping[str, np.ndarray]) -> None:
    path = root / spec.name / where / f"{sample_id}.npz"
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez(path, **outputs)


class Pipeline:
    """The stages for one deployed backend. Pipelines made with ``for_backend`` share the
    backend-independent stages (weights, reference network, ONNX) with this one."""

    def __init__(self, config: RunConfig, backend: str | None = None):
        self.config = config
        self.backend_name = backend or config.backends[0]
        self._weights: dict[str, checkpoint.Weights] = {}
        self._networks: dict[str, torch.nn.Module] = {}
        self._onnx: dict[tuple[str, str], Path] = {}
        self._artifacts: dict[tuple[str, int], Path] = {}
        self._evaluations: dict[tuple[str, int], Evaluation] = {}

    def for_backend(self, backend: str) -> "Pipeline":
        if backend == self.backend_name:
            return self
        sibling = Pipeline(self.config, backend)
        sibling._weights, sibling._networks, sibling._onnx = self._weights, self._networks, self._onnx
        return sibling

    # -- configuration ---------------------------------------------------------------------
    def batch_sizes(self, spec: ModelSpec) -> tuple[int, ...]:
        return self.config.batch_sizes or spec.profile(self.config.profile).batch_sizes

    @cached_property
    def backend(self) -> Backend:
        cls = backend_class(self.backend_name)
        kwargs = {"soc": self.config.soc} if self.backend_name == "ascend" else {}
        return cls(precision=self.config.precision, device=self.config.device, **kwargs)

    def tolerance_precision(self) -> str:
        return self.backend.precision

    # -- weights and network ---------------------------------------------------------------
    def weights(self, spec: ModelSpec) -> checkpoint.Weights:
        if spec.name not in self._weights:
            path = checkpoint.find_checkpoint(spec, self.config.weights_dir)
            self._weights[spec.name] = (
                checkpoint.load_checkpoint(spec, path) if path else checkpoint.seeded_weights()
            )
        return self._weights[spec.name]

    def network(self, spec: ModelSpec) -> torch.nn.Module:
        if spec.name not in self._networks:
            self._networks[spec.name] = checkpoint.build_network(spec, self.config.profile, self.weights(spec))
        return self._networks[spec.name]

    # -- conversion --------------------------------------------------------------------------
    def _onnx_parts(self, spec: ModelSpec, profile: str) -> dict:
        shapes = spec.profile(profile)
        return {
            "model": spec.name,
            "weights": self.weights(spec).provenance.get("sha256", "seeded"),
            "network_source": _source_hash(spec.build_network),
            "inputs": dict(shapes.inputs), "outputs": dict(shapes.outputs), "opset": spec.opset,
            "torch": torch.__version__, "onnx": onnx.__version__,
            "onnxsim": _version("onnxsim"), "harness_export": _source_hash(export.export_onnx),
        }

    def onnx(self, spec: ModelSpec, profile: str | None = None) -> Path:
        """The simplified ONNX for a profile (default: the run's)."""
        profile = profile or self.config.profile
        if (spec.name, profile) not in self._onnx:
            parts = self._onnx_parts(spec, profile)

            def build(out: Path) -> None:
                net = (self.network(spec) if profile == self.config.profile
                       else checkpoint.build_network(spec, profile, self.weights(spec)))
                raw = out.with_name(out.name + ".raw.onnx")
                try:
                    export.export_onnx(spec, net, profile, raw)
                    export.simplify(raw, out)
                finally:
                    raw.unlink(missing_ok=True)

            self._onnx[(spec.name, profile)] = cache.build_once(
                self.config.cache_dir, f"onnx/{spec.name}", parts, build, ".onnx")
        return self._onnx[(spec.name, profile)]

    def input_shapes(self, spec: ModelSpec, batch_size: int) -> dict[str, tuple[int, ...]]:
        return {n: (batch_size, *s) for n, s in spec.profile(self.config.profile).inputs.items()}

    def artifact(self, spec: ModelSpec, batch_size: int) -> Path:
        key = (spec.name, batch_size)
        if key not in self._artifacts:
            onnx_path = self.onnx(spec)
            backend = self.backend
            shapes = self.input_shapes(spec, batch_size)
            if not backend.artifact_suffix and type(backend).compile is Backend.compile:
                self._artifacts[key] = onnx_path  # compiled in memory when opened
            else:
                parts = {"onnx": cache.file_sha256(onnx_path), "backend": backend.name,
                         "precision": backend.requested_precision, "shapes": shapes,
                         "versions": backend.versions(), "soc": self.config.soc,
                         "atc_flags": [spec.atc_input_format, *spec.atc_extra_args, *spec.atc_keep_fp32]}
                self._artifacts[key] = cache.build_once(
                    self.config.cache_dir, f"{backend.name}/{spec.name}", parts,
                    lambda out: backend.compile(onnx_path, shapes, out, spec), backend.artifact_suffix)
        return self._artifacts[key]

    def open_session(self, spec: ModelSpec, batch_size: int) -> Session:
        return self.backend.open(self.artifact(spec, batch_size), self.input_shapes(spec, batch_size))

    # -- data ----------------------------------------------------------------------------------
    def dataset_root(self, spec: ModelSpec) -> tuple[Path, bool]:
        """(root, generated): the real dataset under --data-root, else the embedded default."""
        if self.config.data_root is not None:
            return Path(self.config.data_root) / spec.dataset_dir, False
        profile = self.config.profile
        parts = {"model": spec.name, "profile": profile, "protocol": spec.protocol_for(profile),
                 "samples": spec.profile(profile).generated_samples,
                 "generator": _source_hash(spec.generate_dataset)}
        generated = cache.build_once(
            self.config.cache_dir, f"data/{spec.name}", parts,
            lambda out: spec.generate_dataset(out, spec.profile(profile), spec.protocol_for(profile)))
        return generated, True

    def dataset(self, spec: ModelSpec):
        root, generated = self.dataset_root(spec)
        profile = self.config.profile
        return spec.open_dataset(root, spec.profile(profile), spec.protocol_for(profile),
                                 self.config.limit, generated)

    # -- evaluation ------------------------------------------------------------------------------
    def evaluation(self, spec: ModelSpec, batch_size: int) -> Evaluation:
        key = (spec.name, batch_size)
        if key not in self._evaluations:
            session = self.open_session(spec, batch_size)
            try:
                self._evaluations[key] = self._evaluate(spec, batch_size, session)
            finally:
                session.close()
        return self._evaluations[key]

    def evaluated(self, spec: ModelSpec, batch_size: int) -> Evaluation | None:
        """The evaluation of this model and batch size if this process already ran it."""
        return self._evaluations.get((spec.name, batch_size))

    def reference_outputs(self, spec: ModelSpec, group: Sequence[Sample], feeds: Mapping[str, np.ndarray]
                          ) -> dict[str, list[np.ndarray]]:
        """PyTorch outputs for the real samples of a batch, cached on disk per sample.

        The reference is a pure function of the network and a sample's inputs, so it is keyed by
        both: other batch sizes, other backends and later nightly runs reuse it instead of running
        the PyTorch network again (on an accelerator host that network runs on the CPU).
        """
        store = (self.config.cache_dir / "reference" / spec.name
                 / cache.content_key(self._onnx_parts(spec, self.config.profile)))
        paths = [store / f"{_inputs_digest(sample)}.npz" for sample in group]
        if not all(p.exists() for p in paths):
            computed = torch_forward(self.network(spec), feeds, spec.output_names)
            store.mkdir(parents=True, exist_ok=True)
            for i, path in enumerate(paths):
                tmp = path.with_name(f".{path.stem}.{os.getpid()}.tmp.npz")
                np.savez(tmp, **{n: computed[n][i] for n in spec.output_names})
                os.replace(tmp, path)
            return {n: [computed[n][i] for i in range(len(group))] for n in spec.output_names}
        loaded = []
        for path in paths:
            with np.load(path) as arrays:
                loaded.append({n: arrays[n] for n in spec.output_names})
        return {n: [outputs[n] for outputs in loaded] for n in spec.output_names}

    def _evaluate(self, spec: ModelSpec, batch_size: int, session: Session) -> Evaluation:
        profile = spec.profile(self.config.profile)
        protocol = spec.protocol_for(self.config.profile)
        torch_scorer, deployed_scorer = spec.new_scorer(profile, protocol), spec.new_scorer(profile, protocol)
        stats = ElementwiseStats(spec.elementwise[self.tolerance_precision()])
        dataset = self.dataset(spec)
        first_batch = None
        save = self.config.save_outputs
        for group, feeds in batches(dataset, batch_size, spec.input_names):
            reference = self.reference_outputs(spec, group, feeds)
            deployed = session.run(feeds)
            if first_batch is None:
                first_batch = (feeds, deployed)
            for i, sample in enumerate(group):
                ref_i = {n: reference[n][i] for n in spec.output_names}
                got_i = {n: deployed[n][i] for n in spec.output_names}
                torch_scorer.add(sample, ref_i)
                deployed_scorer.add(sample, got_i)
                stats.add(sample.id, ref_i, got_i)
                if save is not None:
                    save_outputs(save, spec, "torch", sample.id, ref_i)
                    save_outputs(save, spec, f"{self.backend.name}/bs{batch_size}", sample.id, got_i)
        return Evaluation(torch_scorer.result(), deployed_scorer.result(), stats, dataset.summary, first_batch)


def _inputs_digest(sample: Sample) -> str:
    digest = hashlib.sha256()
    for name in sorted(sample.inputs):
        array = np.ascontiguousarray(sample.inputs[name], dtype=np.float32)
        digest.update(name.encode())
        digest.update(str(array.shape).encode())
        digest.update(array.tobytes())
    return digest.hexdigest()[:32]


def _version(module: str) -> str:
    try:
        return __import__(module).__version__
    except (ImportError, AttributeError):
        return "absent"


def environment() -> dict:
    import numpy

    info = {"python": platform.python_version(), "platform": platform.platform(),
            "cpu": _cpu_name(), "cores": __import__("os").cpu_count(),
            "torch": torch.__version__, "onnx": onnx.__version__, "numpy": numpy.__version__}
    for module in ("onnxruntime", "onnxsim", "openvino", "cv2", "av"):
        info[module] = _version(module)
    return info


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"
