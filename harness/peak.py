"""The dense peak of the device a backend runs on, at the precision it ran, with its source.

A CPU's peak is the physical cores this process may use x their highest clock x the FLOPs per
cycle per core its FMA units do at that precision; an accelerator's is the vendor's documented
dense figure for the device found. The figures and the source of each are in ``peaks.toml``
beside this module. Where neither Linux (cpufreq) nor the table bounds a CPU's clock, the clock
is measured: what an FMA-bound kernel does per second on one core (harness/kernels.py, cached per
machine) over the FLOP/cycle of the table's fp32 row, and the source says it was measured. A
device or precision the table cannot bound gets no peak (``Peak.gflops`` None, ``Peak.source``
saying why), so no fraction of peak is reported for it: a fraction is only worth printing when
its denominator bounds what any runtime can reach.

The clock is never /proc/cpuinfo's "cpu MHz": that is the current or nominal clock (2596 MHz on
this project's KVM guest, where ONNX Runtime's MatMul alone implies at least 3.2 GHz at 32 FLOP
per cycle), not the highest one.

The CPU figure is checked against what ONNX Runtime's fp32 MatMul reaches here (measured once
per CPU and runtime version, cached): a table row that puts the peak below a measurement is
wrong for this CPU, and the peak says so instead of giving a fraction above 1.
"""
from __future__ import annotations

import json
import os
import re
import time
import tomllib
from dataclasses import dataclass, replace
from functools import lru_cache
from pathlib import Path
from typing import Callable, Mapping

import numpy as np

TABLE = Path(__file__).with_name("peaks.toml")
CPU_PRECISIONS = ("fp32", "bf16", "fp16")
ACCELERATOR_MATH = ("fp32", "tf32", "fp16", "bf16")
PROC_CPUINFO = Path("/proc/cpuinfo")
SYS_CPU = Path("/sys/devices/system/cpu")


@dataclass(frozen=True)
class Peak:
    """``gflops``: the device's dense peak at ``precision`` in GFLOP/s, or None where no figure
    bounds it; ``source``: where the figure comes from, or why there is none; ``bandwidth_gbs``:
    its memory bandwidth for the roofline (harness/roofline.py), or None with the reason."""

    device: str
    precision: str
    gflops: float | None
    source: str
    bandwidth_gbs: float | None = None
    bandwidth_source: str = "no memory bandwidth is known for this device"

    def fraction(self, gflops_per_s: float) -> float | None:
        """What share of the peak a measured rate is; None without a peak. Above 1 means the rate
        or the peak is wrong: the caller makes that an error of its row, never a capped 1."""
        return None if self.gflops is None else gflops_per_s / self.gflops


@dataclass(frozen=True)
class CpuRow:
    name: str
    flops_per_cycle: Mapping[str, float]  # precision -> FLOPs per cycle per core
    source: str
    vendor: str | None = None
    family: int | None = None
    models: tuple[tuple[int, int], ...] = ()  # inclusive ranges
    model_name: str | None = None  # regex searched in /proc/cpuinfo's model name
    flags: frozenset[str] = frozenset()  # every one required
    max_ghz: float | None = None
    max_ghz_source: str = ""

    def matches(self, cpu: "CpuInfo") -> bool:
        return ((self.vendor is None or cpu.vendor == self.vendor)
                and (self.family is None or cpu.family == self.family)
                and (not self.models or any(low <= (cpu.model if cpu.model is not None else -1) <= high
                                            for low, high in self.models))
                and (self.model_name is None or re.search(self.model_name, cpu.model_name) is not None)
                and self.flags <= cpu.flags)


@dataclass(frozen=True)
class AcceleratorRow:
    name: str
    match: str  # regex searched in the device name
    tflops: Mapping[str, float]  # math mode -> dense TFLOPS
    source: str


@dataclass(frozen=True)
class CpuInfo:
    vendor: str
    family: int | None
    model: int | None
    model_name: str
    flags: frozenset[str]
    cores: int  # physical cores among the logical CPUs this process may run on
    max_ghz: float | None = None  # cpufreq's highest clock, where Linux exposes it


def _positive(where: str, value) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
        raise ValueError(f"{where}: expected a positive number, got {value!r}")
    return float(value)


def _cpu_row(i: int, entry: dict, where: Path) -> CpuRow:
    name = entry.get("name") or f"cpu row {i + 1}"
    label = f"{where}: [[cpu]] {name!r}"
    figures = {p: _positive(f"{label} {p}", entry[p]) for p in CPU_PRECISIONS if p in entry}
    known = {"name", "source", "vendor", "family", "models", "model_name", "flags", "max_ghz",
             "max_ghz_source", *CPU_PRECISIONS}
    unknown = sorted(set(entry) - known)
    if unknown or not figures or not entry.get("source"):
        raise ValueError(f"{label}: expected a source and at least one of {', '.join(CPU_PRECISIONS)} "
                         f"(FLOP/cycle/core); unknown keys: {', '.join(unknown) or 'none'}")
    max_ghz = entry.get("max_ghz")
    if max_ghz is not None and not entry.get("max_ghz_source"):
        raise ValueError(f"{label}: max_ghz needs a max_ghz_source")
    models = entry.get("models", [])
    if not all(isinstance(r, list) and len(r) == 2 and all(isinstance(m, int) for m in r) for r in models):
        raise ValueError(f"{label}: models: expected [[first, last], ...] model numbers, got {models!r}")
    return CpuRow(name, figures, entry["source"], entry.get("vendor"), entry.get("family"),
                  tuple(tuple(r) for r in entry.get("models", ())), entry.get("model_name"),
                  frozenset(entry.get("flags", ())),
                  None if max_ghz is None else _positive(f"{label} max_ghz", max_ghz),
                  entry.get("max_ghz_source", ""))


def _accelerator_row(i: int, entry: dict, where: Path) -> AcceleratorRow:
    name = entry.get("name") or f"accelerator row {i + 1}"
    label = f"{where}: [[accelerator]] {name!r}"
    figures = {m: _positive(f"{label} {m}", entry[m]) for m in ACCELERATOR_MATH if m in entry}
    unknown = sorted(set(entry) - {"name", "match", "source", *ACCELERATOR_MATH})
    if unknown or not figures or not entry.get("source") or not entry.get("match"):
        raise ValueError(f"{label}: expected match, source and at least one of "
                         f"{', '.join(ACCELERATOR_MATH)} (dense TFLOPS); unknown keys: "
                         f"{', '.join(unknown) or 'none'}")
    try:
        re.compile(entry["match"])
    except re.error as error:
        raise ValueError(f"{label}: match {entry['match']!r} is not a regular expression ({error})") from None
    return AcceleratorRow(name, entry["match"], figures, entry["source"])


@lru_cache(maxsize=4)
def load_table(path: Path = TABLE) -> tuple[tuple[CpuRow, ...], tuple[AcceleratorRow, ...]]:
    """The [[cpu]] and [[accelerator]] rows of ``path``, checked: each has a source and
    positive figures under known precision names."""
    try:
        data = tomllib.loads(Path(path).read_text())
    except tomllib.TOMLDecodeError as error:
        raise ValueError(f"{path}: not valid TOML ({error})") from None
    return (tuple(_cpu_row(i, e, path) for i, e in enumerate(data.get("cpu", []))),
            tuple(_accelerator_row(i, e, path) for i, e in enumerate(data.get("accelerator", []))))


def _int(text: str | None) -> int | None:
    try:
        return int(text) if text is not None else None
    except ValueError:
        return None


def read_cpu(cpuinfo: str, usable: set[int] | None = None, sys_cpu: Path = SYS_CPU) -> CpuInfo:
    """The CPU as ``/proc/cpuinfo``'s text describes it, counting the physical cores (distinct
    physical id and core id: hyperthreads share their core's FMA units) among the logical CPUs
    in ``usable`` (default: this process's affinity)."""
    usable = set(os.sched_getaffinity(0)) if usable is None else usable
    blocks = [dict((k.strip(), v.strip()) for k, _, v in (line.partition(":") for line in block.splitlines()))
              for block in cpuinfo.split("\n\n") if block.strip()]
    processors = [b for b in blocks if _int(b.get("processor")) in usable]
    if not processors:
        raise ValueError(f"/proc/cpuinfo lists none of the logical CPUs this process may use ({sorted(usable)})")
    first = processors[0]
    cores = {(b.get("physical id"), b.get("core id")) if "core id" in b else b["processor"]
             for b in processors}
    clocks = []
    for b in processors:
        max_freq = sys_cpu / f"cpu{b['processor']}" / "cpufreq" / "cpuinfo_max_freq"
        if max_freq.is_file():
            clocks.append(int(max_freq.read_text().strip()) / 1e6)  # kHz -> GHz
    return CpuInfo(vendor=first.get("vendor_id", ""), family=_int(first.get("cpu family")),
                   model=_int(first.get("model")), model_name=first.get("model name", "unknown CPU"),
                   flags=frozenset(first.get("flags", "").split()), cores=len(cores),
                   max_ghz=max(clocks) if clocks else None)


def _this_cpu() -> CpuInfo:
    try:
        text = PROC_CPUINFO.read_text()
    except OSError as error:
        raise ValueError(f"cannot read {PROC_CPUINFO} ({error})") from None
    return read_cpu(text)


@dataclass(frozen=True)
class MeasuredClock:
    """The clock one core holds under an FMA-bound load, and how it was found."""

    ghz: float
    source: str


def computed_cpu_peak(precision: str, cpu: CpuInfo, table: Path = TABLE,
                      measure: Callable[[], MeasuredClock | None] | None = None) -> Peak:
    """The dense peak of ``cpu`` at ``precision`` ('fp32', 'bf16', 'fp16'): physical cores x
    highest clock x FLOP/cycle/core of the first row of ``table`` that matches it. The clock is
    cpufreq's, else the row's max_ghz, else what ``measure()`` finds."""
    device = f"{cpu.model_name} ({cpu.cores} core{'s' if cpu.cores != 1 else ''})"
    rows = [r for r in load_table(table)[0] if precision in r.flops_per_cycle and r.matches(cpu)]
    if not rows:
        return Peak(device, precision, None,
                    f"{table.name} has no [[cpu]] row for {precision} on {cpu.vendor} family "
                    f"{cpu.family} model {cpu.model} with these ISA flags")
    row = rows[0]
    if cpu.max_ghz is not None:
        ghz, clock = cpu.max_ghz, "cpufreq cpuinfo_max_freq"
    elif row.max_ghz is not None:
        ghz, clock = row.max_ghz, row.max_ghz_source
    elif measure is not None and (measured := measure()) is not None:
        ghz, clock = measured.ghz, measured.source
    else:
        return Peak(device, precision, None,
                    f"the highest clock of this CPU is unknown: Linux exposes no cpufreq here, "
                    f"{table.name}'s row {row.name!r} declares no max_ghz and none was measured")
    per_cycle = row.flops_per_cycle[precision]
    return Peak(device, precision, cpu.cores * ghz * per_cycle,
                f"{cpu.cores} core(s) x {ghz:g} GHz ({clock}) x {per_cycle:g} {precision} "
                f"FLOP/cycle/core ({row.name}: {' '.join(row.source.split())})")


def cpu_peak(precision: str, cache_dir: Path | None = None, table: Path = TABLE) -> Peak:
    """This machine's CPU peak (:func:`computed_cpu_peak` of /proc/cpuinfo, its clock measured
    where unknown) and memory bandwidth (harness/roofline.py). The fp32 figure is checked against
    ONNX Runtime's MatMul measured here (:func:`measured_matmul_gflops`, cached under
    ``cache_dir``): a table row that puts the peak below a measurement is wrong for this CPU, and
    the peak says so instead of giving fractions above 1."""
    from harness.roofline import cpu_bandwidth

    bandwidth = cpu_bandwidth(cache_dir)
    return replace(_cpu_flops_peak(precision, cache_dir, table), bandwidth_gbs=bandwidth.gbs,
                   bandwidth_source=bandwidth.source)


def _cpu_flops_peak(precision: str, cache_dir: Path | None, table: Path) -> Peak:
    try:
        cpu = _this_cpu()
    except ValueError as error:
        return Peak("cpu", precision, None, f"no CPU description: {error}")
    peak = computed_cpu_peak(precision, cpu, table, lambda: measured_clock(cpu, table, cache_dir))
    if precision == "fp32" and peak.gflops is not None:
        measured = _matmul_floor(None if cache_dir is None else Path(cache_dir))
        if measured > peak.gflops:
            return Peak(peak.device, precision, None,
                        f"ONNX Runtime's fp32 MatMul reached {measured:.1f} GFLOP/s here, above the "
                        f"{peak.gflops:.1f} computed as {peak.source}: that row is wrong for this CPU")
    return peak


def measured_clock(cpu: CpuInfo, table: Path = TABLE, cache_dir: Path | None = None) -> MeasuredClock | None:
    """The clock implied by the FMA-bound kernel's rate on one core over the FLOP/cycle of the
    table's fp32 row for ``cpu``; None (the peak then says why) where no row or no kernel."""
    from harness.kernels import KernelUnavailable

    rows = [r for r in load_table(table)[0] if "fp32" in r.flops_per_cycle and r.matches(cpu)]
    if not rows:
        return None
    try:
        per_core = _fma_per_core(None if cache_dir is None else Path(cache_dir))
    except KernelUnavailable:
        return None
    per_cycle = rows[0].flops_per_cycle["fp32"]
    return MeasuredClock(per_core / per_cycle, (
        f"measured here: an FMA-bound kernel (harness/kernels.py) did {per_core:.1f} fp32 GFLOP/s on one "
        f"core, which at {per_cycle:g} FLOP/cycle ({rows[0].name}) is {per_core / per_cycle:.2f} GHz"))


@lru_cache(maxsize=None)
def _fma_per_core(cache_dir: Path | None) -> float:
    """The FMA kernel's GFLOP/s on one core, measured (or read from ``cache_dir``) once per process."""
    from harness import cache, kernels

    if cache_dir is None:
        return kernels.fma_gflops_per_core()
    key = {**_machine_key(), "method": "FMA-bound kernel, one core, best round",
           "kernel": cache.content_key({"source": kernels.SOURCE, "flags": kernels.FLAGS})}
    path = cache.build_once(cache_dir, "peak", key, lambda out: out.write_text(
        json.dumps({"fma_gflops_per_core": kernels.fma_gflops_per_core()})), ".json")
    return float(json.loads(path.read_text())["fma_gflops_per_core"])


@lru_cache(maxsize=None)
def _matmul_floor(cache_dir: Path | None) -> float:
    """The measured MatMul, taken (or read from ``cache_dir``) once per process: every perf row
    asks for its device's peak."""
    return measured_matmul_gflops(cache_dir)


def accelerator_peak(device: str, math: str, precision: str, table: Path = TABLE) -> Peak:
    """The documented dense peak of the accelerator named ``device`` (as nvidia-smi, torch or
    ATC's --soc_version names it) for the ``math`` it ran ('fp32', 'tf32', 'fp16', 'bf16');
    ``precision`` is the harness's name for it, recorded with the figure."""
    for row in load_table(table)[1]:
        if re.search(row.match, device):
            if math not in row.tflops:
                return Peak(device, precision, None,
                            f"{row.name}: no dense {math} peak is documented ({row.source})")
            return Peak(device, precision, row.tflops[math] * 1000.0,
                        f"{row.name} dense {math} peak {row.tflops[math]:g} TFLOPS ({row.source})")
    return Peak(device, precision, None, f"{device!r} is not in {table.name}: no documented peak")


# Square fp32 matmuls big enough for MLAS to run near its FMA peak, short enough (~0.1-10 ms)
# that the best of many rounds finds the cores free on a shared machine. Measured once per
# machine (cached), so the rounds can be many.
MATMUL_SIZES = (256, 512, 768, 1024)
MATMUL_ROUNDS = 50


def _machine_key() -> dict:
    """What decides the measured MatMul: the CPU (model, ISA flags, cores visible) and the runtime."""
    import hashlib

    import onnxruntime

    try:
        cpu = _this_cpu()
        model, flags, cores = cpu.model_name, " ".join(sorted(cpu.flags)), cpu.cores
    except ValueError:
        model, flags, cores = "unknown", "", os.cpu_count()
    return {"cpu": model, "isa_flags": hashlib.sha256(flags.encode()).hexdigest()[:16],
            "cores": cores, "logical_cpus": len(os.sched_getaffinity(0)),
            "onnxruntime": onnxruntime.__version__, "method": "onnxruntime MatMul fp32, best round"}


def _measure_ort_matmul(n: int, rounds: int) -> float:
    """GFLOP/s of ONNX Runtime's fp32 MatMul (MLAS) on all its intra-op threads, best round."""
    import onnxruntime as ort
    from onnx import TensorProto, helper

    graph = helper.make_graph(
        [helper.make_node("MatMul", ["a", "b"], ["c"])], "peak",
        [helper.make_tensor_value_info(x, TensorProto.FLOAT, [n, n]) for x in ("a", "b")],
        [helper.make_tensor_value_info("c", TensorProto.FLOAT, [n, n])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    # threads spinning between rounds (ORT's default) is what a runtime's peak throughput gets
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    rng = np.random.default_rng(0)
    feeds = {x: rng.random((n, n), dtype=np.float32) for x in ("a", "b")}
    session.run(None, feeds)  # warm-up: thread pool and packed buffers
    best = 0.0
    for _ in range(rounds):
        start = time.perf_counter()
        session.run(None, feeds)
        best = max(best, 2.0 * n ** 3 / (time.perf_counter() - start) / 1e9)
    return best


def measured_matmul_gflops(cache_dir: Path | None = None, sizes: tuple[int, ...] = MATMUL_SIZES,
                           rounds: int = MATMUL_ROUNDS) -> float:
    """ONNX Runtime's best fp32 MatMul round here in GFLOP/s: what a tuned kernel reaches, a
    lower bound the computed peak must not fall below. Stored in ``cache_dir/peak/`` per machine
    key (CPU model, ISA flags, cores, onnxruntime version), so a run reads it instead of
    spending ~1 s on it."""
    from harness import cache

    def measure() -> float:
        return max(_measure_ort_matmul(n, rounds) for n in sizes)

    if cache_dir is None:
        return measure()
    key = {**_machine_key(), "sizes": list(sizes), "rounds": rounds}
    path = cache.build_once(cache_dir, "peak", key,
                            lambda out: out.write_text(json.dumps({"matmul_gflops": measure()})), ".json")
    return float(json.loads(path.read_text())["matmul_gflops"])
