"""Deployed-runtime backends: OpenVINO against ONNX Runtime on a tiny model, the ATC command lines
against the seeds' own, and what Ascend and TensorRT say when they cannot run here."""
from __future__ import annotations

import os
import re
import shlex
import stat
import sys
import types
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from harness.backends.ascend import KEEP_DTYPE_CFG, AscendBackend, atc_command, static_input_shapes
from harness.backends.base import BackendUnavailable
from harness.backends.onnxruntime import OnnxRuntimeBackend
from harness.backends.openvino import IR_XML, OpenVinoBackend
from harness.backends.tensorrt import TensorRtBackend

SEEDS = Path(__file__).resolve().parents[2] / "shared" / "seeds"

TINY_INPUTS = {"clip": (3, 4, 8, 8), "gain": (1, 4, 8, 8)}
TINY_PARAMETERS = 4 * 3 * 3 * 3 * 3 + 4  # Conv3d(3, 4, 3) weight + bias


@pytest.fixture(scope="module")
def tiny_onnx(tmp_path_factory) -> Path:
    """Conv3d + ReLU scaled by a second input, exported like the harness does (dynamic batch)."""
    torch = pytest.importorskip("torch")
    torch.manual_seed(0)

    class Tiny(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = torch.nn.Conv3d(3, 4, 3, padding=1)

        def forward(self, clip, gain):
            return torch.relu(self.conv(clip)) * gain

    path = tmp_path_factory.mktemp("tiny") / "tiny.onnx"
    args = tuple(torch.randn(1, *shape) for shape in TINY_INPUTS.values())
    axes = {name: {0: "batch"} for name in (*TINY_INPUTS, "features")}
    torch.onnx.export(Tiny().eval(), args, str(path), dynamo=False, opset_version=11,
                      input_names=list(TINY_INPUTS), output_names=["features"], dynamic_axes=axes)
    return path


def _feeds(batch_size: int, seed: int = 1) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {name: rng.standard_normal((batch_size, *shape)).astype(np.float32)
            for name, shape in TINY_INPUTS.items()}


def _shapes(batch_size: int) -> dict[str, tuple[int, ...]]:
    return {name: (batch_size, *shape) for name, shape in TINY_INPUTS.items()}


def _reference(onnx_path: Path, feeds) -> np.ndarray:
    session = OnnxRuntimeBackend("fp32").open(onnx_path, {})
    return session.run(feeds)["features"]


def _run_openvino(backend, onnx_path, artifact, batch_size):
    compiled = backend.compile(onnx_path, _shapes(batch_size), artifact, spec=None)
    session = backend.open(compiled, _shapes(batch_size))
    try:
        return compiled, session.run(_feeds(batch_size))
    finally:
        session.close()


@pytest.mark.parametrize("batch_size", [1, 3])
def test_openvino_fp32_matches_onnxruntime_per_batch_size(tiny_onnx, tmp_path, batch_size):
    ov = pytest.importorskip("openvino")
    backend = OpenVinoBackend("fp32")
    artifact = tmp_path / f"tiny_bs{batch_size}{backend.artifact_suffix}"
    compiled, outputs = _run_openvino(backend, tiny_onnx, artifact, batch_size)

    assert compiled == artifact and sorted(p.name for p in artifact.iterdir()) == [
        "model.bin", "model.xml"]
    # weights stay fp32 in the IR (save_model would compress them to fp16 by default)
    assert (artifact / "model.bin").stat().st_size >= 4 * TINY_PARAMETERS
    model = ov.Core().read_model(str(artifact / IR_XML))
    assert {p.get_any_name(): tuple(p.get_shape()) for p in model.inputs} == _shapes(batch_size)

    expected = _reference(tiny_onnx, _feeds(batch_size))
    assert outputs["features"].shape == expected.shape == (batch_size, 4, 4, 8, 8)
    np.testing.assert_allclose(outputs["features"], expected, rtol=1e-5, atol=1e-5)
    assert backend.precision == "fp32"


def test_openvino_default_precision_is_what_the_cpu_runs(tiny_onnx, tmp_path):
    ov = pytest.importorskip("openvino")
    backend = OpenVinoBackend("default")
    plugin_default = backend.precision  # before open: what the CPU plugin would choose
    _, outputs = _run_openvino(backend, tiny_onnx, tmp_path / "tiny.ovir", 2)
    assert backend.precision == plugin_default
    capabilities = ov.Core().get_property("CPU", "OPTIMIZATION_CAPABILITIES")
    if backend.precision == "bf16":
        assert "BF16" in capabilities

    expected = _reference(tiny_onnx, _feeds(2))
    error = np.abs(outputs["features"] - expected).max() / np.abs(expected).max()
    if backend.precision == "fp32":
        assert error < 1e-5
    else:  # a reduced precision really is in use, and only that much
        assert 1e-5 < error < 3e-2


# --- Ascend ATC command lines against the seeds' -------------------------------------------

def _spec(inputs: dict, input_format, keep_fp32=()):
    return SimpleNamespace(input_names=tuple(inputs), atc_input_format=input_format,
                           profiles={"full": SimpleNamespace(inputs=inputs)},
                           atc_extra_args=(), atc_keep_fp32=tuple(keep_fp32))


# model -> (seed file, fake spec with the fields atc_command reads, seed's --model value)
ATC_CASES = {
    "FLAVR": ("000_07eed2562048abd1.txt",
              _spec({f"input_{i}": (3, 224, 224) for i in range(4)}, None), "./FLAVR_4x.onnx"),
    "FlowNet2": ("001_75cf22664f8ec91a.txt",
                 _spec({"x1": (3, 448, 1024), "x2": (3, 448, 1024)}, "NCHW"),
                 "flownet2_bs{bs}_sim_fix.onnx"),
    "GMA": ("002_eff5ad236b661a98.txt",
            _spec({"image1": (3, 440, 1024), "image2": (3, 440, 1024)}, None,
                  keep_fp32=("OpType::ReduceSum",)), "GMA_m_{bs}.onnx"),
    "Efficient-3DCNNs": ("003_69dee1ba7dc8d5ad.txt",
                         _spec({"image": (3, 16, 112, 112)}, "NCDHW"),
                         "Efficient-3DCNNs_sim.onnx"),
    "SlowFast": ("004_7fa59a3c6cea3be8.txt",
                 _spec({"video": (1, 3, 32, 224, 224)}, "ND"), "slowfast_sim.onnx"),
}


def _seed_atc_commands(text: str, batch_size: int) -> list[list[str]]:
    """Each ``atc`` invocation in a seed, continuation lines joined, shell variables filled in
    with the seeds' own example values (chip_name=310P3)."""
    commands, current = [], None
    for line in text.splitlines():
        stripped = line.strip()
        if current is None and re.match(r"atc(\s|\\|$)", stripped):
            current = []
        if current is None:
            continue
        if stripped.startswith("```"):
            commands.append(current)
            current = None
            continue
        current.append(stripped.rstrip("\\").strip())
        if not stripped.endswith("\\"):
            commands.append(current)
            current = None
    filled = []
    for parts in commands:
        line = " ".join(parts).replace("${bs}", str(batch_size)).replace("${chip_name}", "310P3")
        filled.append(shlex.split(line))
    return filled


def _seed_flags(model: str, batch_size: int) -> set[str]:
    seed_file = SEEDS / ATC_CASES[model][0]
    if not seed_file.exists():
        pytest.skip(f"seed {seed_file} is not here")
    for command in _seed_atc_commands(seed_file.read_text(), batch_size):
        flags = {token for token in command[1:] if token.startswith("--")}
        # Efficient-3DCNNs writes one literal command per batch size; pick by its output name
        if any(flag.startswith("--output=") and flag.endswith(f"bs{batch_size}")
               for flag in flags):
            return flags
    raise AssertionError(f"no atc command for bs {batch_size} in {seed_file.name}")


def _deliberate(model: str, flags: set[str]) -> set[str]:
    """The seeds' commands with the harness's deliberate differences applied."""
    flags = set(flags)
    if model == "FLAVR":  # the seed's '--input-shape' is a typo: ATC's flag is --input_shape
        flags = {f.replace("--input-shape=", "--input_shape=", 1) for f in flags}
    if model == "FlowNet2":  # debug logging is for troubleshooting, not for runs
        flags = (flags - {"--log=debug"}) | {"--log=error"}
    if model == "GMA":  # every command logs errors only; the seed just leaves --log out
        flags |= {"--log=error"}
    if model == "Efficient-3DCNNs":  # soc_version needs the 'Ascend' prefix the seed dropped
        flags = (flags - {"--soc_version=310P3"}) | {"--soc_version=Ascend310P3"}
    return flags


@pytest.mark.parametrize("batch_size", [1, 4])
@pytest.mark.parametrize("seed_model", list(ATC_CASES))
def test_atc_command_matches_seed(seed_model, batch_size):
    model = seed_model
    seed_flags = _seed_flags(model, batch_size)
    _, spec, onnx = ATC_CASES[model]
    stem = next(f for f in seed_flags if f.startswith("--output="))[len("--output="):]
    shapes = static_input_shapes(spec, "full", batch_size)
    command = atc_command(spec, onnx.format(bs=batch_size), shapes, "Ascend310P3", stem,
                          keep_dtype_cfg="keep.cfg")  # the seed's name for GMA's config
    assert command[0] == "atc"
    assert len(set(command[1:])) == len(command) - 1
    assert set(command[1:]) == _deliberate(model, seed_flags)


def test_atc_precision_flags():
    _, spec, _ = ATC_CASES["SlowFast"]
    shapes = static_input_shapes(spec, "full", 1)
    assert "--precision_mode=force_fp32" in atc_command(spec, "m.onnx", shapes, "Ascend310P3",
                                                        "out", precision="fp32")
    default = atc_command(spec, "m.onnx", shapes, "Ascend310P3", "out", precision="default")
    assert not any(flag.startswith("--precision_mode") for flag in default)
    assert AscendBackend("fp32").precision == "fp32"
    assert AscendBackend("default").precision == "fp16"  # ATC's default on inference SoCs
    assert AscendBackend("default", soc="Ascend310P3").versions()["soc"] == "Ascend310P3"
    assert AscendBackend("default", soc=None).soc == "Ascend310P3"  # --soc not given


def test_ascend_availability_names_what_is_missing(monkeypatch, tmp_path):
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.setitem(sys.modules, "ais_bench", None)
    ok, why = AscendBackend.availability()
    assert not ok
    assert "atc" in why and "source /usr/local/Ascend/ascend-toolkit/set_env.sh" in why
    assert "ais_bench" in why and "ais-bench_workload" in why
    with pytest.raises(BackendUnavailable, match="set_env.sh"):
        AscendBackend("fp32").compile(Path("m.onnx"), {}, tmp_path / "m.om", spec=None)


def _fake_atc(directory: Path, body: str) -> None:
    """An ``atc`` on PATH that records its arguments and working directory, then runs body."""
    script = directory / "atc"
    script.write_text("#!/bin/sh\n"
                      f'printf "%s\\n" "$PWD" "$@" > "{directory}/atc_args"\n' + body)
    script.chmod(script.stat().st_mode | stat.S_IEXEC)


@pytest.fixture
def ascend_here(monkeypatch, tmp_path):
    """A fake ATC on PATH and availability forced on, to drive compile() without CANN."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setattr(AscendBackend, "availability", classmethod(lambda cls: (True, "")))
    return bin_dir


def test_ascend_compile_runs_atc_and_writes_keep_dtype(ascend_here, tmp_path):
    _fake_atc(ascend_here, f'cp {KEEP_DTYPE_CFG} "{ascend_here}/seen.cfg"\n'
                           'for a; do case "$a" in --output=*) touch "${a#--output=}.om";; '
                           'esac; done\n')
    _, spec, _ = ATC_CASES["GMA"]
    out = tmp_path / "cache" / "gma_bs2.om"
    out.parent.mkdir()
    shapes = static_input_shapes(spec, "full", 2)
    assert AscendBackend("fp32").compile(tmp_path / "gma.onnx", shapes, out, spec) == out
    assert out.exists()
    recorded = (ascend_here / "atc_args").read_text().splitlines()
    workdir, args = recorded[0], recorded[1:]
    assert Path(workdir).resolve() != Path.cwd().resolve()  # ATC's litter stays out of the cwd
    assert not Path(workdir).exists()
    assert f"--keep_dtype={KEEP_DTYPE_CFG}" in args and "--precision_mode=force_fp32" in args
    assert f"--output={out.with_suffix('')}" in args
    assert (ascend_here / "seen.cfg").read_text().splitlines() == list(spec.atc_keep_fp32)
    assert sorted(p.name for p in out.parent.iterdir()) == [out.name]  # the cache moves only it


def test_ascend_compile_failures(ascend_here, tmp_path):
    _, spec, _ = ATC_CASES["FlowNet2"]
    shapes = static_input_shapes(spec, "full", 8)
    onnx = tmp_path / "flownet2.onnx"
    _fake_atc(ascend_here, 'echo "E19999: Inner Error! rtMalloc failed, out of memory" >&2\n'
                           "exit 1\n")
    with pytest.raises(MemoryError, match="out of memory"):
        AscendBackend().compile(onnx, shapes, tmp_path / "f.om", spec)
    _fake_atc(ascend_here, 'echo "E10001: Value [x3] for parameter [--input_shape] is invalid" '
                           ">&2\nexit 1\n")
    with pytest.raises(RuntimeError, match=re.escape(str(onnx))) as failure:
        AscendBackend().compile(onnx, shapes, tmp_path / "f.om", spec)
    assert "E10001" in str(failure.value) and not isinstance(failure.value, MemoryError)


def test_ascend_session_wraps_ais_bench(ascend_here, monkeypatch):
    calls = {}

    class FakeInferSession:  # the slice of ais_bench's InferSession the backend uses
        def __init__(self, device_id, model_path):
            calls["init"] = (device_id, model_path)
            self.times = []

        def get_outputs(self):
            return [SimpleNamespace(name="flow"), SimpleNamespace(name="mask")]

        def infer(self, feeds, mode):
            calls["infer"] = ([f.shape for f in feeds], mode)
            self.times.append((10.0, 12.5))
            return [feeds[0] * 2, feeds[1][:, :1]]

        def summary(self):
            return SimpleNamespace(exec_time_list=self.times)

        def free_resource(self):
            calls["freed"] = True

    interface = types.ModuleType("ais_bench.infer.interface")
    interface.InferSession = FakeInferSession
    monkeypatch.setitem(sys.modules, "ais_bench.infer.interface", interface)

    shapes = {"x1": (2, 3, 4, 4), "x2": (2, 5, 4, 4)}
    session = AscendBackend("default", device=3).open(Path("f.om"), shapes)
    assert calls["init"] == (3, "f.om") and session.last_compute_ms() is None
    feeds = {"x2": np.ones(shapes["x2"], np.float32), "x1": np.ones(shapes["x1"], np.float32)}
    outputs = session.run(feeds)
    assert calls["infer"] == ([shapes["x1"], shapes["x2"]], "static")
    assert list(outputs) == ["flow", "mask"] and outputs["flow"].shape == shapes["x1"]
    assert session.last_compute_ms() == pytest.approx(2.5)
    session.close()
    assert calls["freed"]


def test_tensorrt_availability_says_what_is_missing():
    ok, why = TensorRtBackend.availability()
    if ok:
        pytest.skip("TensorRT and a CUDA GPU are here")
    assert why and ("tensorrt" in why or "CUDA" in why)
    with pytest.raises(BackendUnavailable):
        TensorRtBackend("fp32").compile(Path("m.onnx"), {}, Path("m.engine"), spec=None)
