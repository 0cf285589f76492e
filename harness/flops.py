"""GFLOPs per sample counted from an ONNX graph, and the machine's measured matmul peak."""
from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import onnx
from onnx import shape_inference


def _shape(value_info) -> list[int]:
    return [d.dim_value for d in value_info.type.tensor_type.shape.dim]


def gflops_per_sample(onnx_path: Path, input_shapes: dict[str, tuple[int, ...]]) -> float:
    """2 x multiply-adds of Conv, ConvTranspose, MatMul and Gemm at batch size 1.

    Other ops (activations, pooling, resampling) are memory-bound and left out, as FLOP counts
    in papers and ModelZoo tables usually do.
    """
    model = onnx.load(str(onnx_path))
    for value in model.graph.input:
        if value.name in input_shapes:
            dims = value.type.tensor_type.shape.dim
            for d, size in zip(dims, (1, *input_shapes[value.name])):
                d.ClearField("dim_param")
                d.dim_value = size
    model = shape_inference.infer_shapes(model)
    shapes = {v.name: _shape(v) for v in [*model.graph.value_info, *model.graph.input, *model.graph.output]}
    shapes.update({i.name: list(i.dims) for i in model.graph.initializer})
    macs = 0
    for node in model.graph.node:
        out = shapes.get(node.output[0])
        if not out or 0 in out:
            continue
        if node.op_type in ("Conv", "ConvTranspose"):
            weight = shapes.get(node.input[1])
            if not weight:
                continue
            kernel = int(np.prod(weight[2:]))
            # the weight shape already carries the per-group channel count
            if node.op_type == "Conv":  # weight [Cout, Cin/g, k...]: every output element
                macs += int(np.prod(out)) * weight[1] * kernel
            else:  # weight [Cin, Cout/g, k...]: every input element scatters to Cout/g * k
                inp = shapes.get(node.input[0])
                if inp:
                    macs += int(np.prod(inp)) * weight[1] * kernel
        elif node.op_type in ("MatMul", "Gemm"):
            a = shapes.get(node.input[0])
            if a:
                k = a[-1] if not (node.op_type == "Gemm" and any(x.name == "transA" and x.i for x in node.attribute)) else a[0]
                macs += int(np.prod(out)) * k
    return 2.0 * macs / 1e9


# Square fp32 matmuls big enough for MLAS to run near its FMA peak, short enough (~0.1-10 ms)
# that the best of many rounds finds the cores free on a shared machine: on this project's 2
# shared cores the best 2048 round reached 88 GFLOP/s, 512 up to 355, about what an ORT conv
# reaches. Measured once per machine (cached), so the rounds can be many.
PEAK_MATMUL_SIZES = (256, 512, 768, 1024)
PEAK_ROUNDS = 50


def _machine_key() -> dict:
    """What decides the peak: the CPU (model, ISA flags, cores visible) and the runtime's version."""
    import hashlib
    import os
    import platform

    import onnxruntime

    model, flags = platform.processor() or "unknown", ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name") and model == (platform.processor() or "unknown"):
                model = line.split(":", 1)[1].strip()
            elif line.startswith(("flags", "Features")) and not flags:
                flags = line.split(":", 1)[1].strip()
    except OSError:
        pass
    return {"cpu": model, "isa_flags": hashlib.sha256(flags.encode()).hexdigest()[:16],
            "cores": os.cpu_count(), "onnxruntime": onnxruntime.__version__,
            "method": "onnxruntime MatMul fp32, best round"}


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


def measure_peak_gflops(cache_dir: Path | None = None, sizes: tuple[int, ...] = PEAK_MATMUL_SIZES,
                        rounds: int = PEAK_ROUNDS) -> float:
    """The machine's fp32 peak in GFLOP/s, as the fastest runtime here computes it.

    Measured with ONNX Runtime's MatMul (MLAS reached 410 GFLOP/s on this project's AVX-512 CPU,
    against 404 for OpenVINO and 200 for torch's MKL): a peak measured with a slower BLAS made
    "fraction of peak" read 1.1-2.5. Stored in ``cache_dir/peak/`` per machine key (CPU model,
    ISA flags, cores, onnxruntime version), so a run reads it instead of spending ~1 s on it.
    A fraction of this peak can still exceed 1 through timing noise; callers clamp it and say so.
    """
    import json
    import os

    from harness.cache import content_key

    key = _machine_key()
    key.update(sizes=list(sizes), rounds=rounds)
    path = None
    if cache_dir is not None:
        path = Path(cache_dir) / "peak" / f"{content_key(key)}.json"
        if path.is_file():
            return float(json.loads(path.read_text())["peak_gflops"])
    peak = max(_measure_ort_matmul(n, rounds) for n in sizes)
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.stem}.{os.getpid()}.tmp")
        tmp.write_text(json.dumps({**key, "peak_gflops": peak}, indent=1))
        os.replace(tmp, path)
    return peak
