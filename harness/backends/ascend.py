"""Ascend NPU: ATC compiles the ONNX into an offline model (.om) per batch size, ais_bench runs it.

``AscendBackend(precision, device, soc='Ascend310P3')``: ``soc`` is ATC's ``--soc_version`` (what
``npu-smi info`` shows as Name, prefixed 'Ascend'; None means the seeds' Ascend310P3), ``device``
the NPU id InferSession loads on. :meth:`AscendBackend.from_options` builds it from a run's
``--precision``, ``--devices`` and ``--soc``.

A model's own atc options are an :class:`AtcOptions` in its card's ``compile_options['ascend']``:
before ``atc``, its ``graph_passes`` run over the ONNX (harness/backends/onnx_passes.py: the
seeds' int64 -> int32 fixes), and ``keep_fp32`` becomes the ``--keep_dtype`` file, unless the run
gives its own list (``--keep-fp32 FILE``, :func:`keep_list`); each row records which list it used.

Precision: ATC's default precision mode on inference SoCs is fp16 (operators that support both
fp16 and fp32 run in fp16), so 'default' reports 'fp16'. 'fp32' passes
``--precision_mode=force_fp32``; on CANN >= 6.2 that makes cube operators (Conv, MatMul) take
fp16 inputs and accumulate into fp32 outputs where the SoC has no fp32 cube path, and vector
operators run in fp32 -- the closest to fp32 the 310P offers, so it is reported as 'fp32'.

ais_bench: both API generations of ``ais_bench.infer.interface.InferSession`` are supported, each
feature detected by name (their surfaces, as read in the real sources, are recorded in
tests/fakes/real_surfaces.py). The Ascend/tools one the seeds link (ais-bench_workload/tool/
ais_bench) has ``sumary()``, an instance ``finalize()`` that also destroys every device context of
the process, no ``free_resource()``, and ``MemorySummary.get_H2D_time_list()``; the later msit one
has ``summary()``, ``free_resource()``, a static, process-wide ``finalize()`` and
``MemorySummary.get_h2d_time_list()``. A session is released alone: ``free_resource()`` where
present, else by dropping it (aclruntime's destructor unloads the model); ``finalize()`` is never
called. Compute time is aclruntime's ``exec_time_list``, the milliseconds around
``aclmdlExecute`` (ModelInferenceProcessor::Execute): one float per execute (Ascend/tools), or a
(start, end) pair in ms since the session was created (msit). Host-to-device and device-to-host
copies come from ``MemorySummary`` where the interface has it; what the installed generation
cannot give is said once in :meth:`AscendBackend.environment`.
"""
from __future__ import annotations

import importlib.metadata
import re
import shutil
import subprocess
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np

from harness import cache
from harness.backends import onnx_passes
from harness.backends.base import Backend, Session, looks_like_oom
from harness.peak import Peak, accelerator_peak

SET_ENV = "source /usr/local/Ascend/ascend-toolkit/set_env.sh"
AIS_BENCH_HINT = ("pip install the aclruntime and ais_bench wheels from gitee ascend/tools "
                  "ais-bench_workload (tool/ais_bench)")
DEFAULT_SOC = "Ascend310P3"  # the seeds' SoC
# compile() writes AtcOptions.keep_fp32 here, in ATC's temporary working directory: ATC reads it
# only while converting, and the cache moves just the .om (the lines are part of its cache key)
KEEP_DTYPE_CFG = "keep_dtype.cfg"
DRIVER_VERSION_INFO = Path("/usr/local/Ascend/driver/version.info")


@dataclass(frozen=True)
class AtcOptions:
    """What the seed's ``atc`` line adds for one model (``ModelSpec.compile_options['ascend']``)."""

    input_format: str | None = "NCHW"  # None: the seed's atc command has no --input_format
    extra_args: tuple[str, ...] = ()  # further atc flags the seed's command passes
    keep_fp32: tuple[str, ...] = ()  # lines of the --keep_dtype config (ops ATC must keep in fp32)
    # graph passes the seed runs on the ONNX before atc (onnx_passes.PASSES), in order, e.g.
    # FlowNet2's fix_onnx.py and GMA's auto-optimizer knowledge: int64 -> int32
    graph_passes: tuple[str, ...] = ()


def atc_options(spec) -> AtcOptions:
    return spec.compile_options.get("ascend", AtcOptions())


@dataclass(frozen=True)
class KeepList:
    """Lines of an ATC ``--keep_dtype`` file (``OpType::<type>`` or a node name each) and where
    they come from: ``--keep-fp32 <file>``, the model card, or none."""

    lines: tuple[str, ...]
    source: str


def keep_list(given: KeepList | None, spec) -> KeepList:
    """The run's own list where given (``--keep-fp32 FILE``), else the card's (``AtcOptions.keep_fp32``)."""
    if given is not None:
        return given
    card = atc_options(spec).keep_fp32 if spec is not None else ()
    return KeepList(tuple(card), "the model card" if card else "none")


def given_keep_list(config) -> KeepList | None:
    """The run's ``--keep-fp32`` file (``RunConfig.keep_fp32``) read, or None."""
    from harness.keep_fp32 import read_keep_dtype

    return read_keep_dtype(config.keep_fp32) if config.keep_fp32 is not None else None


def keep_environment(keep: KeepList) -> dict:
    """What a row records of the keep list its model was compiled with."""
    return {"keep_fp32": list(keep.lines), "keep_fp32_from": keep.source}


def atc_command(spec, onnx_path: str | Path, input_shapes: Mapping[str, Sequence[int]], soc: str,
                output_stem: str | Path, precision: str = "default",
                keep_dtype_cfg: str | Path = KEEP_DTYPE_CFG, keep_fp32: Sequence[str] | None = None) -> list[str]:
    """The seed's ``atc`` invocation for static ``input_shapes`` (batch axis included).

    Reads ``spec.input_names`` and the model's :class:`AtcOptions`; ``keep_fp32`` replaces the
    card's keep list where given. ATC appends '.om' to ``output_stem``.
    """
    options = atc_options(spec)
    shapes = ";".join(f"{name}:{','.join(str(d) for d in input_shapes[name])}"
                      for name in spec.input_names)
    command = ["atc", "--framework=5", f"--model={onnx_path}", f"--output={output_stem}"]
    if options.input_format is not None:
        command.append(f"--input_format={options.input_format}")
    command += [f"--input_shape={shapes}", "--log=error", f"--soc_version={soc}", *options.extra_args]
    if (options.keep_fp32 if keep_fp32 is None else keep_fp32):
        command.append(f"--keep_dtype={keep_dtype_cfg}")
    if precision == "fp32":
        command.append("--precision_mode=force_fp32")
    return command


def static_input_shapes(spec, profile: str, batch_size: int) -> dict[str, tuple[int, ...]]:
    """Per-sample shapes of a profile with the batch axis prepended, in ONNX input order."""
    return {name: (batch_size, *shape) for name, shape in spec.profiles[profile].inputs.items()}


def _interface():
    """The installed ``ais_bench.infer.interface`` module."""
    from ais_bench.infer import interface

    return interface


def _transfer_lists(interface) -> tuple | None:
    """MemorySummary's (H2D list getter, D2H list getter) in the installed generation's spelling
    (Ascend/tools: ``get_H2D_time_list``; msit: ``get_h2d_time_list``); None where it has neither."""
    memory = getattr(interface, "MemorySummary", None)
    for h2d, d2h in (("get_h2d_time_list", "get_d2h_time_list"), ("get_H2D_time_list", "get_D2H_time_list")):
        if memory is not None and hasattr(memory, h2d) and hasattr(memory, d2h):
            return getattr(memory, h2d), getattr(memory, d2h)
    return None


def _releases_one_session(infer_session_class) -> bool:
    """True where the interface can release a single session (msit's ``free_resource()``)."""
    return callable(getattr(infer_session_class, "free_resource", None))


def interface_gaps(interface) -> list[str]:
    """What the harness cannot use from the installed ais_bench, said once in the environment."""
    gaps = []
    if _transfer_lists(interface) is None:
        gaps.append("h2d/d2h: not reported by this ais_bench (its interface has no MemorySummary time lists)")
    if not _releases_one_session(interface.InferSession):
        gaps.append("release: this ais_bench has no free_resource(); a session is released by its "
                    "destructor (its finalize() would reset every device of the process)")
    return gaps


def _duration_ms(entry) -> float:
    # Ascend/tools' aclruntime records one float per execute (ms); msit's a (start, end) pair in
    # ms since the session was created
    if isinstance(entry, (tuple, list)):
        if len(entry) != 2:
            raise RuntimeError(f"ais_bench exec_time_list entry {entry!r}: expected a duration in ms "
                               f"or a (start, end) pair")
        return float(entry[1]) - float(entry[0])
    return float(entry)


def _static_shape(dims) -> tuple:
    return tuple(None if int(d) < 0 else int(d) for d in dims)


class _AisBenchSession(Session):
    def __init__(self, session, input_names: Sequence[str]):
        interface = _interface()
        self._session = session
        self._inputs = list(input_names)
        self._outputs = [meta.name for meta in session.get_outputs()]
        self._transfers = _transfer_lists(interface)
        self._reset_transfers = getattr(getattr(interface, "MemorySummary", None), "reset", None)

    def _summary(self):
        # msit's InferSession has summary(); Ascend/tools' spells it sumary()
        session = self._session
        return session.summary() if hasattr(session, "summary") else session.sumary()

    def run(self, feeds: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        arrays = [np.ascontiguousarray(feeds[name], dtype=np.float32) for name in self._inputs]
        if self._transfers is not None and self._reset_transfers is not None:
            self._reset_transfers()  # the lists are process-wide; keep this run's copies only
        try:
            outputs = self._session.infer(arrays, mode="static")
        except RuntimeError as error:
            if looks_like_oom(str(error)):
                raise MemoryError(str(error)) from error
            raise
        return dict(zip(self._outputs, outputs))

    def last_compute_ms(self) -> float | None:
        times = self._summary().exec_time_list
        return _duration_ms(times[-1]) if times else None

    def last_transfer_ms(self) -> dict[str, float] | None:
        """Host-to-device and device-to-host copy time of the last run, where ais_bench has it."""
        if self._transfers is None:
            return None
        h2d, d2h = (list(getter()) for getter in self._transfers)
        if not h2d and not d2h:
            return None
        return {"h2d_ms": float(sum(h2d)), "d2h_ms": float(sum(d2h))}

    def io_shapes(self) -> dict[str, dict[str, tuple]]:
        """The .om's own shapes as aclruntime describes them (``tensor_desc.shape``, -1 dynamic)."""
        return {"inputs": {d.name: _static_shape(d.shape) for d in self._session.get_inputs()},
                "outputs": {d.name: _static_shape(d.shape) for d in self._session.get_outputs()}}

    def close(self) -> None:
        """Release this session only. A process-wide ``finalize()`` (static in msit; in Ascend/tools
        it also destroys every device context) would break any other open session, so it is never
        called: ``free_resource()`` where the generation has it, else the last reference goes and
        aclruntime's destructor unloads the model."""
        if self._session is None:
            return
        session, self._session = self._session, None
        if _releases_one_session(type(session)):
            session.free_resource()


def _distribution_version(name: str) -> str:
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return "absent"


def _npu_smi(*args: str) -> str:
    if shutil.which("npu-smi") is None:
        return ""
    try:
        done = subprocess.run(["npu-smi", "info", *args], capture_output=True, text=True, timeout=30)
    except subprocess.TimeoutExpired:
        return ""
    return done.stdout if done.returncode == 0 else ""


def npu_smi_versions(device: int) -> dict[str, str]:
    """Driver and firmware versions as npu-smi reports them ('absent' where it says nothing).

    ``npu-smi info`` heads its table with ``npu-smi <v>  Version: <driver>``; ``npu-smi info -t
    board -i <id>`` lists ``Firmware Version : <v>`` for one NPU.
    """
    table = _npu_smi()
    driver = re.search(r"Version:\s*([\w.\-]+)", table)
    board = _npu_smi("-t", "board", "-i", str(device))
    firmware = re.search(r"Firmware Version\s*:\s*([\w.\-]+)", board)
    versions = {"driver": driver.group(1) if driver else "absent",
                "firmware": firmware.group(1) if firmware else "absent"}
    if versions["driver"] == "absent" and DRIVER_VERSION_INFO.exists():
        for line in DRIVER_VERSION_INFO.read_text(errors="replace").splitlines():
            if line.startswith("Version="):
                versions["driver"] = line.split("=", 1)[1].strip()
    return versions


class AscendTarget(Backend):
    """A backend that builds for an Ascend SoC, on it (ascend) or emulating it on the CPU
    (ascend-preview): the SoC, the keep list ATC takes (``--keep-fp32 FILE``, else the card's),
    and ATC's precision modes, whose default computes in fp16."""

    default_precision = "default"  # the seeds ran ATC's default (fp16)
    reads_keep_fp32 = True

    def __init__(self, precision: str | None = None, device: int = 0, soc: str | None = DEFAULT_SOC,
                 keep_fp32: KeepList | None = None):
        super().__init__(precision, device)
        self.soc = self.target_soc(soc)
        self.keep_fp32 = keep_fp32  # None: each model card's own list

    @classmethod
    def target_soc(cls, soc: str | None) -> str:
        """The SoC built for, given --soc."""
        return soc or DEFAULT_SOC

    @classmethod
    def from_options(cls, config) -> "AscendTarget":
        return cls(precision=config.precision, device=config.device, soc=config.soc,
                   keep_fp32=given_keep_list(config))

    @property
    def precision(self) -> str:
        return "fp32" if self.requested_precision == "fp32" else "fp16"


class AscendBackend(AscendTarget):
    name = "ascend"
    artifact_suffix = ".om"
    reports_compute_time = True  # aclruntime's exec_time_list, around aclmdlExecute
    not_localised = (
        "Ascend is not localised by the harness: dump the per-operator data with the CANN dump "
        "facility (acl.json dump config, or ais_bench --dump) and compare it with the ONNX using "
        "`msit compare -gm MODEL.onnx -om MODEL.om -i INPUTS.bin` (formerly ait compare); its "
        "dumps name fused operators, not ONNX tensors")

    @classmethod
    def owns_soc(cls, soc: str) -> bool:
        return soc.startswith("Ascend")  # as `npu-smi info` names the chip; also ATC's --soc_version

    @classmethod
    def option_problem(cls, soc: str | None) -> str | None:
        if soc and cls.owns_soc(soc):
            return None
        return ("--backend ascend needs an Ascend --soc (e.g. --soc Ascend310P3, as `npu-smi info` shows the chip)"
                + (f"; --soc {soc} is not one" if soc else ""))

    @classmethod
    def option_name(cls, soc: str | None) -> str:
        return f"--soc {soc}" if soc else "--backend ascend"

    @classmethod
    def availability(cls) -> tuple[bool, str]:
        missing = []
        if shutil.which("atc") is None:
            missing.append(f"atc (the ATC model compiler) is not on PATH: {SET_ENV}")
        try:
            from ais_bench.infer.interface import InferSession  # noqa: F401
        except ImportError as error:
            missing.append(f"ais_bench is not importable ({error}): {AIS_BENCH_HINT}")
        if missing:
            return False, "; ".join(missing)
        return True, ""

    @staticmethod
    def _cann_version() -> str:
        """The CANN toolkit version from its install record, else the resolved atc path."""
        atc = Path(shutil.which("atc") or "atc").resolve()
        for parent in list(atc.parents)[:4]:
            for info in sorted(parent.glob("*/ascend_toolkit_install.info")) + sorted(
                    parent.glob("ascend_toolkit_install.info")):
                for line in info.read_text(errors="replace").splitlines():
                    if line.startswith("version="):
                        return line.split("=", 1)[1].strip()
        return str(atc)

    def versions(self) -> dict[str, str]:
        # the .om is specific to the SoC and the precision mode as well as to the toolkit
        return {"cann": self._cann_version(), "soc": self.soc,
                "precision_mode": "force_fp32" if self.requested_precision == "fp32" else "default"}

    def compile_key(self, spec) -> dict:
        return {**super().compile_key(spec),
                "atc_options": asdict(atc_options(spec)),
                "keep_fp32": keep_list(self.keep_fp32, spec).lines,
                "graph_passes_source": cache.source_hash(onnx_passes) if atc_options(spec).graph_passes else None}

    def machine(self) -> None:
        return None  # an accelerator row is keyed by its --soc

    def environment(self, spec=None) -> dict:
        env = {**self.versions(), **npu_smi_versions(self.device), "device": self.device,
               **(keep_environment(keep_list(self.keep_fp32, spec)) if spec is not None else {}),
               "ais_bench": _distribution_version("ais_bench"),
               "aclruntime": _distribution_version("aclruntime")}
        try:
            gaps = interface_gaps(_interface())
        except ImportError:  # availability() names what to install
            gaps = []
        if gaps:
            env["ais_bench_not_used"] = "; ".join(gaps)
        return env

    def peak(self, precision: str, cache_dir: Path | None = None) -> Peak:
        """The SoC's documented dense peak (harness/peaks.toml: the 310P3's fp16; none for fp32)."""
        return accelerator_peak(self.soc, precision, precision)

    def compile(self, onnx_path: Path, input_shapes: Mapping[str, tuple[int, ...]],
                out_path: Path, spec) -> Path:
        self.require()
        onnx_path, out_path = Path(onnx_path).resolve(), Path(out_path).resolve()
        stem = out_path.with_suffix("") if out_path.suffix == ".om" else out_path
        # ATC leaves fusion_result.json and kernel_meta/ in its working directory
        with tempfile.TemporaryDirectory(prefix="atc-") as workdir:
            model = onnx_path
            options = atc_options(spec)
            if options.graph_passes:
                model = onnx_passes.apply_passes(onnx_path, options.graph_passes,
                                                 Path(workdir) / f"{onnx_path.stem}_passed.onnx")
            keep = keep_list(self.keep_fp32, spec).lines
            command = atc_command(spec, model, input_shapes, self.soc, stem, self.requested_precision,
                                  keep_fp32=keep)
            if keep:
                (Path(workdir) / KEEP_DTYPE_CFG).write_text("\n".join(keep) + "\n")
            done = subprocess.run(command, cwd=workdir, capture_output=True, text=True)
        output = (done.stdout + done.stderr).strip()
        produced = Path(f"{stem}.om")
        if done.returncode != 0 or not produced.exists():
            message = (f"atc failed (exit {done.returncode}) compiling {onnx_path} for "
                       f"{self.soc}:\n{' '.join(command)}\n{output[-4000:]}")
            if looks_like_oom(output):
                raise MemoryError(message)
            raise RuntimeError(message)
        if produced != out_path:
            produced.replace(out_path)
        return out_path

    def open(self, artifact: Path, input_shapes: Mapping[str, tuple[int, ...]]) -> Session:
        self.require()
        from ais_bench.infer.interface import InferSession

        try:
            session = InferSession(self.device, str(artifact))
        except RuntimeError as error:
            if looks_like_oom(str(error)):
                raise MemoryError(f"loading {artifact}: {error}") from error
            raise
        return _AisBenchSession(session, list(input_shapes))


BACKEND = AscendBackend  # what harness.backends.backend_class('ascend') gives
