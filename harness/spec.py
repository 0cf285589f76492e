"""The model card as data, and the small protocols a model folder implements.

A model lives in ``models/<name>/``; its ``spec.py`` builds one :class:`ModelSpec` and
``models/<name>/__init__.py`` registers it (``harness.registry.register``). Everything the
generic tests need to know about a model is a field here; tests never name a model.

What a model folder provides, besides data:

* ``network.build(profile, state_dict=None) -> torch.nn.Module`` -- the PyTorch network with
  upstream state_dict keys. ``state_dict`` (already unwrapped and prefix-stripped) lets a model
  pick a variant from what a checkpoint holds; the harness then loads it strictly.
* ``data.open_dataset(root, profile, protocol, limit=None, generated=False) -> Dataset`` -- streams :class:`Sample`s
  from the real layout under ``root``; raises :class:`DatasetLayoutError` showing the expected
  tree when the layout is wrong.
* ``data.generate(root, profile, protocol)`` -- writes a small deterministic dataset in that same
  layout (the embedded default), with exact ground truth where physics gives it.
* ``new_scorer(profile, protocol) -> Scorer`` -- streaming metric accumulator.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Iterator, Mapping, Protocol, Sequence

import numpy as np

OOM = "oom"  # a reference-table cell the seed records as out of memory


class DatasetLayoutError(ValueError):
    """The data root does not hold the layout a reader expects; the message shows that tree."""


class CheckpointError(ValueError):
    """A checkpoint file that cannot be used; the message names the file and what was expected."""


@dataclass
class Sample:
    """One unit the model consumes: inputs without the batch axis, and what scoring needs."""

    id: str  # as the dataset names it: 'clean/alley_1/frame_0001', 'ucf101_extracted/0', ...
    inputs: dict[str, np.ndarray]  # ONNX input name -> float32 array, no batch axis
    target: Any  # ground truth or label; opaque to the harness, read by the model's scorer


class Dataset(Protocol):
    """A streamed dataset. Iterating yields samples; after iterating, ``summary`` is final."""

    def __iter__(self) -> Iterator[Sample]: ...

    @property
    def complete(self) -> bool:
        """True when every item the dataset's own index lists was present and read."""

    @property
    def summary(self) -> dict:
        """Counts (listed, read, missing, failed with names) and the root, for the report."""


class Scorer(Protocol):
    def add(self, sample: Sample, outputs: Mapping[str, np.ndarray]) -> None:
        """Outputs for one sample (no batch axis), keyed by ONNX output name."""

    def result(self) -> dict[str, float]:
        """Metric name -> value, names as declared in ``ModelSpec.metrics``."""


@dataclass(frozen=True)
class KnownFailure:
    """A row a team knows fails, declared as data (NNCF's ``exception_xfail_reason``): the
    row's test is expected to raise ``error`` for ``reason``; failing otherwise, or passing, is
    reported. ``None`` in a field matches any value."""

    error: type[BaseException]
    reason: str  # why, with the issue or ticket that tracks it
    backend: str | None = None
    precision: str | None = None  # what the runtime ran at: 'fp32', 'fp16', 'bf16'
    batch_size: int | None = None
    soc: str | None = None

    def matches(self, backend: str, precision: str, batch_size: int, soc: str | None) -> bool:
        wanted = (self.backend, self.precision, self.batch_size, self.soc)
        return all(w is None or w == got for w, got in zip(wanted, (backend, precision, batch_size, soc)))


@dataclass(frozen=True)
class Profile:
    """Shapes and sizes for one run profile ('smoke' for this CPU, 'full' for the seed's)."""

    inputs: Mapping[str, tuple[int, ...]]  # per-sample shape, no batch axis, in ONNX input order
    outputs: Mapping[str, tuple[int, ...]]  # per-sample shape, no batch axis, in ONNX output order
    batch_sizes: tuple[int, ...]
    generated_samples: int  # how many samples the embedded default generates
    protocol: Mapping[str, Any] = field(default_factory=dict)  # overrides ModelSpec.protocol


@dataclass(frozen=True)
class Checkpoint:
    filename: str  # as the seed names it, looked up in --weights-dir
    nesting: str | None = "state_dict"  # key holding the state_dict, None for a bare state_dict
    strip_prefix: str | None = None  # e.g. 'module.' from DataParallel
    sha256_prefix: str | None = None  # published file's sha256 starts with this (e.g. mmaction2 names)
    keys: int | None = None  # entries in the upstream state_dict, for messages and tests
    parameters: int | None = None  # upstream parameter count


@dataclass(frozen=True)
class Metric:
    name: str  # key in Scorer.result()
    higher_is_better: bool
    published: float | None = None  # the seed's figure on its soc, same unit as the scorer's
    published_band: float = 0.0  # |measured - published| allowed before the published verdict fails
    # deployed-vs-PyTorch: |delta| allowed per backend precision ('fp32', 'fp16', 'bf16')
    tolerance: Mapping[str, float] = field(default_factory=dict)
    unit: str = ""


@dataclass(frozen=True)
class Elementwise:
    """Element-wise conformance tolerance for one precision: |a-b| <= atol + rtol*|b|."""

    rtol: float
    atol: float


@dataclass(frozen=True)
class Agreement:
    """Task-level agreement of deployed outputs with PyTorch's (see harness/agreement.py)."""

    kind: str  # 'classification', 'frames' or 'flow'
    outputs: tuple[str, ...]  # ONNX output names compared
    # precision -> statistic -> limit (top1_agreement: min %, max_probability_error: max,
    # min_psnr: min dB, max_epe: max px)
    limits: Mapping[str, Mapping[str, float]]
    logits: bool = True  # classification: softmax before comparing probabilities
    data_range: float = 1.0  # frames: the PSNR peak


@dataclass(frozen=True, repr=False)
class ModelSpec:
    name: str  # registry key, used in --models and report rows
    task: str
    seed: str  # file name under shared/seeds
    upstream: str  # 'owner/repo@commit'
    checkpoint: Checkpoint
    profiles: Mapping[str, Profile]  # 'smoke' and 'full'
    metrics: tuple[Metric, ...]
    elementwise: Mapping[str, Elementwise]  # per precision
    agreement: Agreement  # deployed vs PyTorch in the task's terms, meaningful with seeded weights
    reference_fps: Mapping[str, Mapping[int, float | str]]  # soc -> bs -> fps or OOM
    dataset_dir: str  # subfolder of --data-root holding this model's dataset
    # items (videos, pairs, triplets) of the evaluation set the published figure was measured on;
    # an index listing fewer (a subset list, a few test files) is not the full dataset
    published_items: int | None
    dataset_layout: str  # the expected tree, shown in errors and the README
    build_network: Callable[..., Any]
    open_dataset: Callable[..., Dataset]
    generate_dataset: Callable[..., None]
    new_scorer: Callable[..., Scorer]
    opset: int = 11
    seed_loop: int = 100  # the seed's ais_bench --loop for its FPS table
    protocol: Mapping[str, Any] = field(default_factory=dict)  # preprocessing + scoring params
    # backend name -> that backend's own options for this model, as the seed's command gives them
    # (e.g. 'ascend': harness.backends.ascend.AtcOptions, the seed's atc flags and graph passes)
    compile_options: Mapping[str, Any] = field(default_factory=dict)
    # where the seed's *_preprocess.py writes the inputs: a harness.aisbench.SeedBinLayout
    seed_bin_layout: Any = None
    identify_foreign: Callable[[Sequence[str]], str | None] | None = None  # names another family
    # deliberate differences from the seed, key -> why ('atc:<flag>', 'input:<name>',
    # 'output:<name>', 'fps:<soc>:<bs>', 'published:<metric or figure>'); tests/test_model_cards.py
    # fails on any difference not declared here and on any declaration that no longer differs
    deviations: Mapping[str, str] = field(default_factory=dict)
    # rows known to fail (model x backend x precision x batch size), besides the seed's
    # out-of-memory rows of reference_fps, which apply with --soc
    known_failures: tuple[KnownFailure, ...] = ()

    def __repr__(self) -> str:  # the card is large: test ids and --setup-plan show its name
        return f"ModelSpec({self.name!r})"

    def profile(self, name: str) -> Profile:
        return self.profiles[name]

    def protocol_for(self, profile: str) -> dict[str, Any]:
        return {**self.protocol, **self.profiles[profile].protocol}

    @property
    def input_names(self) -> tuple[str, ...]:
        return tuple(self.profiles["full"].inputs)

    @property
    def output_names(self) -> tuple[str, ...]:
        return tuple(self.profiles["full"].outputs)

    def metric(self, name: str) -> Metric:
        for m in self.metrics:
            if m.name == name:
                return m
        raise KeyError(f"{self.name} declares no metric {name!r}")

