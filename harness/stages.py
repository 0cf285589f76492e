"""The stages of a seed's pipeline, as plain functions: fixtures wire them, scripts call them.

    weights -> PyTorch network -> exported ONNX -> simplified ONNX -> compiled model (backend, bs)
    dataset -> samples -> PyTorch reference outputs -> deployed outputs (compared in lockstep)

Each expensive result is cached under ``cache_dir`` by :func:`harness.cache.build_once`, keyed
by everything that determines it: the checkpoint's sha256, the profile's shapes and protocol,
the source of the model package and of every project module it imports, the opset, tool
versions and, for compiled models, what the backend declares in ``compile_key``.
"""
from __future__ import annotations

import hashlib
import importlib
from pathlib import Path
from typing import Callable, Iterable

import numpy as np
import onnx
import torch

from harness import cache, cache_budget, checkpoint, export
from harness.agreement import AgreementMeter
from harness.backends import Backend, Session
from harness.backends.base import ArtifactMismatch, io_shape_mismatches
from harness.environment import version
from harness.outputs import (
    DeployedRun,
    ElementwiseStats,
    OutputStore,
    ReferenceRun,
    batches,
    nonfinite,
    output_contract_problems,
    split,
    torch_forward,
)
from harness.runstate import RunState
from harness.samples_cache import SampleCache
from harness.spec import Dataset, ModelSpec, Sample


def model_package(spec: ModelSpec):
    """The package of ``models/<name>/`` that registered this spec."""
    return importlib.import_module(spec.build_network.__module__.rsplit(".", 1)[0])


def network_key(spec: ModelSpec, profile: str, weights: checkpoint.Weights) -> dict:
    """What determines the PyTorch network's outputs."""
    shapes = spec.profile(profile)
    return {
        "model": spec.name,
        "weights": weights.provenance.get("sha256", "seeded"),
        "inputs": dict(shapes.inputs), "outputs": dict(shapes.outputs),
        "protocol": spec.protocol_for(profile),
        "source": cache.source_hash(model_package(spec), checkpoint),
        "torch": torch.__version__,
    }


def load_weights(spec: ModelSpec, weights_dir: Path | None) -> checkpoint.Weights:
    """The checkpoint under ``weights_dir`` (strict, safe loading), or seeded weights without one."""
    path = checkpoint.find_checkpoint(spec, weights_dir)
    return checkpoint.load_checkpoint(spec, path) if path else checkpoint.seeded_weights()


def torch_network(spec: ModelSpec, profile: str, weights: checkpoint.Weights) -> torch.nn.Module:
    return checkpoint.build_network(spec, profile, weights)


def exported_onnx(spec: ModelSpec, profile: str, weights: checkpoint.Weights,
                  network: Callable[[], torch.nn.Module], cache_dir: Path, state: RunState | None = None) -> Path:
    """torch.onnx.export with the seed's names and a dynamic batch axis; ``network()`` is only
    called when the cache misses."""
    parts = {**network_key(spec, profile, weights), "opset": spec.opset, "onnx": onnx.__version__,
             "exporter": cache.source_hash(export)}
    return cache.build_once(cache_dir, f"onnx-exported/{spec.name}", parts,
                            lambda out: export.export_onnx(spec, network(), profile, out), ".onnx", state)


def simplified_onnx(spec: ModelSpec, exported: Path, cache_dir: Path, state: RunState | None = None) -> Path:
    """onnxsim + onnx.checker over the exported graph (keyed by the exported graph's own key)."""
    parts = {"exported": Path(exported).name, "onnxsim": version("onnxsim"), "onnx": onnx.__version__,
             "simplifier": cache.source_hash(export)}
    return cache.build_once(cache_dir, f"onnx/{spec.name}", parts,
                            lambda out: export.simplify(exported, out), ".onnx", state)


def input_shapes(spec: ModelSpec, profile: str, batch_size: int) -> dict[str, tuple[int, ...]]:
    return {n: (batch_size, *s) for n, s in spec.profile(profile).inputs.items()}


def compiled_model(backend: Backend, spec: ModelSpec, profile: str, batch_size: int, onnx_path: Path,
                   cache_dir: Path, state: RunState | None = None) -> Path:
    """The backend's artifact for one batch size (the .om, engine or IR), or the ONNX itself
    for runtimes that compile in memory when they open it."""
    shapes = input_shapes(spec, profile, batch_size)
    if not backend.compiles_ahead:
        return onnx_path
    parts = {"onnx": Path(onnx_path).name, "backend": backend.name, "shapes": shapes,
             **backend.compile_key(spec)}
    return cache.build_once(cache_dir, f"{backend.name}/{spec.name}", parts,
                            lambda out: backend.compile(onnx_path, shapes, out, spec), backend.artifact_suffix, state)


def open_session(backend: Backend, artifact: Path, spec: ModelSpec, profile: str, batch_size: int) -> Session:
    """The artifact opened for running, after checking that its own input and output shapes, as
    the runtime reads them back, are the ones asked for (a compiler that ignored the batch size
    or a foreign artifact raises :class:`ArtifactMismatch` naming each tensor and both shapes)."""
    shapes = input_shapes(spec, profile, batch_size)
    where = f"{backend.name}: {spec.name} bs{batch_size}: {Path(artifact).name}"
    try:
        session = backend.open(artifact, shapes)
    except ArtifactMismatch as error:
        raise ArtifactMismatch(f"{where}: {error}") from error
    read_back = session.io_shapes()
    requested = {"inputs": shapes,
                 "outputs": {n: (batch_size, *s) for n, s in spec.profile(profile).outputs.items()}}
    mismatches = io_shape_mismatches(requested, read_back) if read_back is not None else []
    if mismatches:
        session.close()
        raise ArtifactMismatch(f"{where} is not the model that was asked for: " + "; ".join(mismatches))
    return session


def generated_dataset_root(spec: ModelSpec, profile: str, cache_dir: Path, state: RunState | None = None) -> Path:
    """The embedded default: the model's generator writes its real layout, once per content."""
    shapes, protocol = spec.profile(profile), spec.protocol_for(profile)
    parts = {"model": spec.name, "inputs": dict(shapes.inputs), "protocol": protocol,
             "samples": shapes.generated_samples, "generator": cache.source_hash(model_package(spec))}
    return cache.build_once(cache_dir, f"data/{spec.name}", parts,
                            lambda out: spec.generate_dataset(out, shapes, protocol), "", state)


def sample_cache_key(spec: ModelSpec, profile: str) -> dict:
    """What determines a preprocessed sample besides its item's files (harness/samples_cache.py)."""
    return {"model": spec.name, "inputs": dict(spec.profile(profile).inputs), "protocol": spec.protocol_for(profile),
            "code": cache.source_hash(model_package(spec))}


def open_dataset(spec: ModelSpec, profile: str, data_root: Path | None, cache_dir: Path,
                 limit: int | None = None, workers: int | None = 0, state: RunState | None = None) -> Dataset:
    """The dataset under ``data_root/<spec.dataset_dir>``, or the generated one without a root,
    streamed through the preprocessed-sample cache: each item is decoded and preprocessed at
    most once for the same files and preprocessing, by ``workers`` processes ahead of the
    consumer (None: every core; 0: in this process)."""
    if data_root is not None:
        root, generated = Path(data_root) / spec.dataset_dir, False
    else:
        root, generated = generated_dataset_root(spec, profile, cache_dir, state), True
    dataset = spec.open_dataset(root, spec.profile(profile), spec.protocol_for(profile), limit, generated)
    samples = SampleCache(Path(cache_dir) / "samples" / spec.name, sample_cache_key(spec, profile), cache_dir)
    return dataset.preprocessed(samples, workers, state)


def inputs_digest(sample: Sample) -> str:
    digest = hashlib.sha256()
    for name in sorted(sample.inputs):
        array = np.ascontiguousarray(sample.inputs[name], dtype=np.float32)
        digest.update(name.encode())
        digest.update(str(array.shape).encode())
        digest.update(array.tobytes())
    return digest.hexdigest()[:32]


class ReferenceOutputs(OutputStore):
    """PyTorch outputs keyed by the network's key and each sample's input bytes, so other batch
    sizes, other backends and later nights reuse them (on an accelerator host the reference
    runs on its CPU); ``get(sample_id)`` looks a sample up by the id the dataset gave it."""

    def __init__(self, root: Path):
        super().__init__(root, verified=True)  # a damaged entry is computed again (reference_pass)
        self.digests: dict[str, str] = {}
        # the session compares every deployed pass with these: never evicted while it runs
        self.root.mkdir(parents=True, exist_ok=True)
        cache_budget.pin(self.root)
        cache_budget.touch(self.root)

    def get(self, sample_id: str) -> dict[str, np.ndarray]:
        return super().get(self.digests.get(sample_id, sample_id))


def reference_pass(spec: ModelSpec, profile: str, weights: checkpoint.Weights,
                   network: Callable[[], torch.nn.Module], samples: Iterable[Sample], cache_dir: Path,
                   save_outputs: Path | None = None, batch_size: int = 1) -> ReferenceRun:
    """Run (or read from the cache) the PyTorch reference over the dataset and score it."""
    store = ReferenceOutputs(Path(cache_dir) / "reference" / spec.name
                             / cache.content_key(network_key(spec, profile, weights)))
    scorer = spec.new_scorer(spec.profile(profile), spec.protocol_for(profile))
    run = ReferenceRun(store, [], {}, {})
    net = None
    for group, feeds in batches(samples, batch_size, spec.input_names):
        keys = [inputs_digest(s) for s in group]
        if all(k in store for k in keys):
            per_sample = [store.get(k) for k in keys]
        else:
            net = net or network()
            per_sample = split(torch_forward(net, feeds, spec.output_names), len(group))
            for key, outputs in zip(keys, per_sample):
                store.put(key, outputs)
            run.computed += len(group)
        for sample, key, outputs in zip(group, keys, per_sample):
            store.digests[sample.id] = key
            run.sample_ids.append(sample.id)
            bad = nonfinite(outputs)
            if bad:
                run.nonfinite[sample.id] = bad
            scorer.add(sample, outputs)
            if save_outputs is not None:
                OutputStore(save_outputs / spec.name / "torch").put(sample.id, outputs)
    run.metrics = scorer.result()
    for key, why in store.damaged.items() if hasattr(samples, "note_rebuilt") else ():
        samples.note_rebuilt(f"the PyTorch outputs {key}", why)
    run.dataset = samples.summary if hasattr(samples, "summary") else {}
    return run


def deployed_pass(spec: ModelSpec, profile: str, session: Session, batch_size: int, samples: Iterable[Sample],
                  reference: ReferenceRun, precision: str, store: OutputStore) -> DeployedRun:
    """Run the deployed model over the dataset at ``batch_size``; each batch is compared with the
    PyTorch reference and scored as it arrives, and its outputs are kept in ``store``."""
    scorer = spec.new_scorer(spec.profile(profile), spec.protocol_for(profile))
    stats = ElementwiseStats(spec.elementwise[precision])
    meter = AgreementMeter(spec.agreement)
    run = DeployedRun(store, [], {}, stats, {}, {})
    declared = spec.profile(profile).outputs
    for group, feeds in batches(samples, batch_size, spec.input_names):
        outputs = session.run(feeds)
        problems = output_contract_problems(outputs, declared, batch_size, precision)
        if problems:
            run.output_problems.append(f"the batch of {', '.join(s.id for s in group)}: {'; '.join(problems)}")
            continue
        for sample, got in zip(group, split(outputs, len(group))):
            ref = reference.store.get(sample.id)
            run.sample_ids.append(sample.id)
            bad = nonfinite(got)
            if bad:
                run.nonfinite[sample.id] = bad
            stats.add(sample.id, ref, got)
            meter.add(ref, got)
            scorer.add(sample, got)
            store.put(sample.id, got)
    run.metrics = scorer.result()
    run.agreement = meter.result()
    run.dataset = samples.summary if hasattr(samples, "summary") else {}
    return run



def onnx_for(spec: ModelSpec, profile: str, cache_dir: Path, weights_dir: Path | None = None) -> Path:
    """The simplified ONNX through every stage before it, for scripts and unit tests."""
    weights = load_weights(spec, weights_dir)
    exported = exported_onnx(spec, profile, weights, lambda: torch_network(spec, profile, weights), cache_dir)
    return simplified_onnx(spec, exported, cache_dir)


def sample_feeds(samples: Iterable[Sample], sample_id: str, input_names) -> dict[str, np.ndarray] | None:
    """One sample as a batch of one (e.g. the worst sample, to localise a divergence on)."""
    for sample in samples:
        if sample.id == sample_id:
            return next(batches([sample], 1, input_names))[1]
    return None
