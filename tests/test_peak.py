"""The device's peak: harness/peaks.toml read right, a CPU's figure computed from /proc/cpuinfo,
an accelerator's looked up by the name its tools report, and no runtime here above its peak."""
from __future__ import annotations

import time

import pytest

from harness import export, flops, peak, registry, stages
from harness.backends.onnxruntime import OnnxRuntimeBackend
from harness.backends.openvino import OpenVinoBackend


def test_every_row_of_the_table_has_figures_and_a_source():
    cpus, accelerators = peak.load_table()
    assert cpus and accelerators
    for row in [*cpus, *accelerators]:
        assert row.source.strip(), row.name
    zen4 = next(r for r in cpus if r.name.startswith("AMD Zen 4"))
    assert zen4.flops_per_cycle == {"fp32": 32, "bf16": 64, "fp16": 32}
    assert (zen4.vendor, zen4.family, zen4.models, zen4.max_ghz) == ("AuthenticAMD", 25, ((0x10, 0x1f),), 4.4)
    avx2 = next(r for r in cpus if r.name == "AVX2 + FMA")
    assert avx2.flags == {"avx2", "fma"} and avx2.flops_per_cycle["fp32"] == 32


@pytest.mark.parametrize("device, math, gflops", [
    ("Tesla T4", "fp16", 65_000), ("Tesla T4", "fp32", 8_100),
    ("NVIDIA A100-SXM4-80GB", "tf32", 156_000), ("NVIDIA A100 80GB PCIe", "bf16", 312_000),
    ("NVIDIA H100 80GB HBM3", "fp16", 989_500), ("NVIDIA H100 PCIe", "fp16", 756_500),
    ("NVIDIA H100 NVL", "fp32", 60_000), ("NVIDIA H200", "fp16", 989_500),
    ("NVIDIA H200 NVL", "fp16", 835_500), ("NVIDIA A10", "fp32", 31_200),
    ("Ascend310P3", "fp16", 70_000), ("Ascend310", "fp16", 8_000),
])
def test_accelerators_by_the_name_their_tools_report(device, math, gflops):
    found = peak.accelerator_peak(device, math, math)
    assert found.gflops == pytest.approx(gflops) and found.device == device and found.precision == math
    assert f"dense {math} peak" in found.source


@pytest.mark.parametrize("device, math, reason", [
    ("Ascend310P3", "fp32", "Huawei Ascend 310P3: no dense fp32 peak is documented"),
    ("Tesla T4", "bf16", "NVIDIA Tesla T4: no dense bf16 peak is documented"),
    ("NVIDIA GeForce RTX 9090", "fp16", "'NVIDIA GeForce RTX 9090' is not in peaks.toml: no documented peak"),
])
def test_an_undocumented_device_or_precision_has_no_peak_and_says_why(device, math, reason):
    found = peak.accelerator_peak(device, math, math)
    assert found.gflops is None and found.source.startswith(reason)
    assert found.fraction(123.0) is None


@pytest.mark.parametrize("entry, message", [
    ('name = "x"\nflags = ["avx"]\nfp32 = 16', "expected a source"),
    ('name = "x"\nflags = ["avx"]\nfp32 = -16\nsource = "s"', "fp32: expected a positive number, got -16"),
    ('name = "x"\nflags = ["avx"]\nfp64 = 16\nsource = "s"', "unknown keys: fp64"),
    ('name = "x"\nflags = ["avx"]\nfp32 = 16\nmax_ghz = 3.0\nsource = "s"', "max_ghz needs a max_ghz_source"),
    ('name = "x"\nmodels = [17]\nfp32 = 16\nsource = "s"', "models: expected \\[\\[first, last\\], ...\\]"),
])
def test_a_bad_cpu_row_is_refused_naming_it(tmp_path, entry, message):
    table = tmp_path / "peaks.toml"
    table.write_text(f"[[cpu]]\n{entry}\n")
    with pytest.raises(ValueError, match=f"peaks.toml: \\[\\[cpu\\]\\] 'x'.*{message}"):
        peak.load_table(table)


def test_a_bad_accelerator_row_or_file_is_refused_naming_it(tmp_path):
    table = tmp_path / "peaks.toml"
    table.write_text('[[accelerator]]\nname = "y"\nmatch = "(T4"\nfp16 = 65.0\nsource = "s"\n')
    with pytest.raises(ValueError, match="peaks.toml: \\[\\[accelerator\\]\\] 'y': match '\\(T4' is not a regular"):
        peak.load_table(table)
    table.write_text("[[cpu]\n")
    with pytest.raises(ValueError, match="peaks.toml: not valid TOML"):
        peak.load_table(table)


def _cpuinfo(processors, vendor, family, model, name, flags) -> str:
    """/proc/cpuinfo's text for (processor, physical id, core id) triples."""
    return "\n\n".join(
        f"processor\t: {p}\nvendor_id\t: {vendor}\ncpu family\t: {family}\nmodel\t\t: {model}\n"
        f"model name\t: {name}\nphysical id\t: {socket}\ncore id\t\t: {core}\ncpu MHz\t\t: 2100.000\n"
        f"flags\t\t: {flags}" for p, socket, core in processors) + "\n"


XEON_FLAGS = "fpu sse sse2 avx avx2 fma avx512f avx512_bf16 avx512_fp16 amx_bf16 amx_tile"
# two sockets of two cores, each core two hyperthreads: logical CPUs 0-7
XEON = [(0, 0, 0), (1, 0, 1), (2, 1, 0), (3, 1, 1), (4, 0, 0), (5, 0, 1), (6, 1, 0), (7, 1, 1)]


def _cpufreq(root, processors, khz):
    for p in processors:
        folder = root / f"cpu{p}" / "cpufreq"
        folder.mkdir(parents=True)
        (folder / "cpuinfo_max_freq").write_text(f"{khz}\n")
    return root


def test_a_cpu_peak_is_physical_cores_times_highest_clock_times_flops_per_cycle(tmp_path):
    text = _cpuinfo(XEON, "GenuineIntel", 6, 143, "Intel(R) Xeon(R) Platinum 8480+", XEON_FLAGS)
    cpu = peak.read_cpu(text, usable=set(range(8)), sys_cpu=_cpufreq(tmp_path, range(8), 3_800_000))
    assert (cpu.cores, cpu.max_ghz) == (4, 3.8)  # hyperthreads share their core's FMA units
    assert peak.computed_cpu_peak("fp32", cpu).gflops == pytest.approx(4 * 3.8 * 64)  # AVX-512F
    assert peak.computed_cpu_peak("bf16", cpu).gflops == pytest.approx(4 * 3.8 * 1024)  # AMX
    assert peak.computed_cpu_peak("fp16", cpu).gflops == pytest.approx(4 * 3.8 * 128)  # AVX512-FP16
    assert "cpufreq cpuinfo_max_freq" in peak.computed_cpu_peak("fp32", cpu).source
    # a process pinned to two hyperthreads of one core has one core's FMA units
    pinned = peak.read_cpu(text, usable={0, 4}, sys_cpu=tmp_path)
    assert pinned.cores == 1
    assert peak.computed_cpu_peak("fp32", pinned).gflops == pytest.approx(3.8 * 64)


def test_a_hidden_clock_is_bounded_by_its_generation(tmp_path):
    """A VM that hides the SKU and cpufreq: the highest boost of the generation the row matches."""
    flags = "fpu sse avx avx2 fma avx512f avx512_bf16 hypervisor"
    epyc = peak.read_cpu(_cpuinfo([(0, 0, 0), (1, 0, 1)], "AuthenticAMD", 25, 17, "AMD EPYC", flags),
                         usable={0, 1}, sys_cpu=tmp_path)
    found = peak.computed_cpu_peak("fp32", epyc)
    assert found.gflops == pytest.approx(2 * 4.4 * 32) and "EPYC 9174F" in found.source
    assert peak.computed_cpu_peak("bf16", epyc).gflops == pytest.approx(2 * 4.4 * 64)
    xeon_vm = peak.read_cpu(_cpuinfo(XEON[:2], "GenuineIntel", 6, 143, "Intel Xeon Processor (SapphireRapids)",
                                     XEON_FLAGS), usable={0, 1}, sys_cpu=tmp_path)
    found = peak.computed_cpu_peak("fp32", xeon_vm)
    assert found.gflops == pytest.approx(2 * 4.8 * 64) and "Xeon w9-3495X, 4.8 GHz" in found.source
    assert peak.computed_cpu_peak("bf16", xeon_vm).gflops == pytest.approx(2 * 4.8 * 1024)  # AMX


def _unknown_xeon(tmp_path):
    """An Intel CPU of a model no row bounds, behind a hypervisor that hides cpufreq."""
    return peak.read_cpu(_cpuinfo(XEON[:2], "GenuineIntel", 6, 250, "Intel Xeon Processor (Future)", XEON_FLAGS),
                         usable={0, 1}, sys_cpu=tmp_path)


def test_an_unknown_clock_is_measured_by_an_fma_bound_kernel_and_says_so(tmp_path, monkeypatch):
    cpu = _unknown_xeon(tmp_path)
    assert peak.computed_cpu_peak("fp32", cpu).source.startswith("the highest clock of this CPU is unknown")
    monkeypatch.setattr(peak, "_this_cpu", lambda: cpu)
    monkeypatch.setattr(peak, "_fma_per_core", lambda cache_dir: 200.0)  # 64 FLOP/cycle: 3.125 GHz
    monkeypatch.setattr(peak, "_matmul_floor", lambda cache_dir: 100.0)
    fp32, bf16 = peak.cpu_peak("fp32"), peak.cpu_peak("bf16")
    assert fp32.gflops == pytest.approx(2 * 200.0) and bf16.gflops == pytest.approx(2 * 3.125 * 1024)  # AMX
    assert fp32.source.startswith("2 core(s) x 3.125 GHz (measured here: an FMA-bound kernel "
                                  "(harness/kernels.py) did 200.0 fp32 GFLOP/s on one core")


def test_without_a_compiler_an_unknown_clock_gives_no_peak(tmp_path, monkeypatch):
    from harness import kernels

    def no_compiler(cache_dir):
        raise kernels.KernelUnavailable("no C compiler")

    monkeypatch.setattr(peak, "_this_cpu", lambda: _unknown_xeon(tmp_path))
    monkeypatch.setattr(peak, "_fma_per_core", no_compiler)
    found = peak.cpu_peak("fp32")
    assert found.gflops is None and "declares no max_ghz and none was measured" in found.source


def test_the_fma_kernel_measures_this_core_once_per_machine(tmp_path, monkeypatch):
    """The kernel really runs here (a core does at least a few fp32 FLOP per cycle at 1 GHz and no
    more than AVX-512's 64 at 6 GHz), and the second call reads the cache."""
    from harness import kernels

    peak._fma_per_core.cache_clear()
    first = peak._fma_per_core(tmp_path)
    assert 4 < first < 64 * 6
    monkeypatch.setattr(kernels, "fma_gflops_per_core", lambda: pytest.fail("measured again"))
    peak._fma_per_core.cache_clear()
    assert peak._fma_per_core(tmp_path) == first
    peak._fma_per_core.cache_clear()


def test_a_cpu_without_a_row_has_no_peak(tmp_path):
    old = peak.read_cpu(_cpuinfo([(0, 0, 0)], "GenuineIntel", 6, 15, "Intel(R) Core(TM)2", "fpu sse sse2"),
                        usable={0}, sys_cpu=_cpufreq(tmp_path, [0], 2_000_000))
    found = peak.computed_cpu_peak("fp32", old)
    assert found.gflops is None and "peaks.toml has no [[cpu]] row for fp32 on GenuineIntel family 6 model 15" in found.source


def test_a_row_below_what_is_measured_here_gives_no_peak(monkeypatch):
    computed = peak.computed_cpu_peak("fp32", peak._this_cpu())
    if computed.gflops is None:
        pytest.skip(f"this CPU has no peak: {computed.source}")
    monkeypatch.setattr(peak, "_matmul_floor", lambda cache_dir: 1e9)
    refused = peak.cpu_peak("fp32")
    assert refused.gflops is None and refused.source.startswith(
        "ONNX Runtime's fp32 MatMul reached 1000000000.0 GFLOP/s here, above the")
    assert refused.source.endswith("that row is wrong for this CPU")


def test_the_measured_matmul_is_cached_per_machine_and_runtime(tmp_path, monkeypatch):
    first = peak.measured_matmul_gflops(tmp_path, sizes=(256,), rounds=2)
    assert first > 0

    def no_second_measurement(n, rounds):
        raise AssertionError("the measurement must be read from the cache, not taken again")

    monkeypatch.setattr(peak, "_measure_ort_matmul", no_second_measurement)
    assert peak.measured_matmul_gflops(tmp_path, sizes=(256,), rounds=2) == first
    key = peak._machine_key()
    monkeypatch.setattr(peak, "_machine_key", lambda: {**key, "onnxruntime": "other"})
    with pytest.raises(AssertionError, match="read from the cache"):
        peak.measured_matmul_gflops(tmp_path, sizes=(256,), rounds=2)


RUNTIMES = [("onnxruntime", OnnxRuntimeBackend, "fp32"), ("openvino", OpenVinoBackend, "fp32"),
            ("openvino", OpenVinoBackend, "default")]
ROUNDS = 8
BATCH_SIZE = 2


@pytest.mark.parametrize("model", ["efficient3dcnn", "flavr"])
@pytest.mark.parametrize("name, backend_type, requested", RUNTIMES, ids=[f"{n}-{p}" for n, _, p in RUNTIMES])
def test_no_runtime_here_reads_above_the_cpu_peak(suite_cache, model, name, backend_type, requested):
    """The best round of each CPU runtime on the smoke graphs stays below this CPU's peak at the
    precision it ran. A bound, not a speed assertion: a slow or busy machine only lowers the rate."""
    spec = registry.get(model)
    backend = backend_type(requested)
    onnx_path = stages.onnx_for(spec, "smoke", suite_cache)
    artifact = stages.compiled_model(backend, spec, "smoke", BATCH_SIZE, onnx_path, suite_cache)
    session = stages.open_session(backend, artifact, spec, "smoke", BATCH_SIZE)
    feeds = export.random_feeds(spec, "smoke", BATCH_SIZE)
    try:
        session.run(feeds)
        best = min(_seconds(session, feeds) for _ in range(ROUNDS))
    finally:
        session.close()
    rate = flops.gflops_per_sample(onnx_path, spec.profile("smoke").inputs) * BATCH_SIZE / best
    found = backend.peak(backend.precision, suite_cache)
    if found.gflops is None:
        pytest.skip(f"no {backend.precision} peak for this CPU: {found.source}")
    print(f"{model} {name} {backend.precision} bs{BATCH_SIZE}: {rate:.1f} GFLOP/s of "
          f"{found.gflops:.1f} peak = {found.fraction(rate):.2f}")
    assert found.fraction(rate) <= 1.0, f"{rate:.1f} GFLOP/s above the peak {found.gflops:.1f} ({found.source})"


def _seconds(session, feeds) -> float:
    start = time.perf_counter()
    session.run(feeds)
    return time.perf_counter() - start
