"""The suite's FPS against each runtime's own way of measuring it, in one process, alternating
(run by hand, not a test; its table goes in the notes of the change that moves a runtime option):

    python benchmarks/bench_runtimes.py --models efficient3dcnn,flavr --profile smoke --cycles 5 --rounds 10
    python benchmarks/bench_runtimes.py --models gma --profile smoke --layers   # where OpenVINO spends its time

- ONNX Runtime: the suite's session (harness/backends/onnxruntime.py) against a bare
  ``InferenceSession`` with default options on the same graph and batch.
- OpenVINO: the suite's compiled model against ``benchmark_app -hint latency -api sync`` on the
  same IR (its median latency).

Each cycle times ``--rounds`` runs of each side, one side after the other (ONNX Runtime's in
turn first), so both share the machine's load; FPS = 1000 / median ms over all cycles, batch 1.
"""
from __future__ import annotations

import argparse
import re
import statistics
import subprocess
import sys
import time
from collections import defaultdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from harness import export, registry, stages  # noqa: E402
from harness.backends.onnxruntime import OnnxRuntimeBackend  # noqa: E402
from harness.backends.openvino import IR_XML, OpenVinoBackend  # noqa: E402


def _timed_ms(run, feeds, rounds: int) -> list[float]:
    run(feeds)  # warm-up
    times = []
    for _ in range(rounds):
        start = time.perf_counter()
        run(feeds)
        times.append((time.perf_counter() - start) * 1000.0)
    return times


def _suite_session(backend, spec, profile: str, cache: Path):
    onnx_path = stages.onnx_for(spec, profile, cache)
    artifact = stages.compiled_model(backend, spec, profile, 1, onnx_path, cache)
    return artifact, stages.open_session(backend, artifact, spec, profile, 1)


def onnxruntime_pair(spec, profile: str, cache: Path, cycles: int, rounds: int) -> tuple[float, float]:
    import onnxruntime as ort

    artifact, suite = _suite_session(OnnxRuntimeBackend("fp32"), spec, profile, cache)
    bare = ort.InferenceSession(str(artifact), providers=["CPUExecutionProvider"])
    feeds = export.random_feeds(spec, profile, 1)
    sides = [(suite.run, []), (lambda f: bare.run(None, f), [])]
    for cycle in range(cycles):
        for run, times in sides[::-1] if cycle % 2 else sides:  # each side first on every other cycle
            times += _timed_ms(run, feeds, rounds)
    return tuple(1000.0 / statistics.median(times) for _, times in sides)


def openvino_pair(spec, profile: str, cache: Path, cycles: int, rounds: int) -> tuple[float, float]:
    artifact, suite = _suite_session(OpenVinoBackend("fp32"), spec, profile, cache)
    feeds = export.random_feeds(spec, profile, 1)
    ours, theirs = [], []
    for _ in range(cycles):
        ours += _timed_ms(suite.run, feeds, rounds)
        theirs.append(_benchmark_app_median_ms(Path(artifact) / IR_XML, rounds))
    return 1000.0 / statistics.median(ours), 1000.0 / statistics.median(theirs)


def _benchmark_app_median_ms(xml: Path, rounds: int) -> float:
    done = subprocess.run([str(Path(sys.executable).with_name("benchmark_app")), "-m", str(xml), "-d", "CPU",
                           "-hint", "latency", "-api", "sync", "-infer_precision", "f32", "-niter", str(rounds)],
                          capture_output=True, text=True, check=True)
    found = re.search(r"Median:\s+([0-9.]+) ms", done.stdout)
    if found is None:
        raise RuntimeError(f"benchmark_app printed no median latency:\n{done.stdout[-2000:]}")
    return float(found.group(1))


def layers(spec, profile: str, cache: Path, top: int = 12) -> None:
    """Where each runtime spends one fp32 run: OpenVINO's per-layer counters and ONNX Runtime's
    profile, summed by layer type (the kernel OpenVINO chose in brackets)."""
    import onnxruntime as ort
    import openvino as ov

    feeds = export.random_feeds(spec, profile, 1)
    artifact, _ = _suite_session(OpenVinoBackend("fp32"), spec, profile, cache)
    core = ov.Core()
    config = {"PERFORMANCE_HINT": "LATENCY", "INFERENCE_PRECISION_HINT": "f32", "PERF_COUNT": "YES"}
    compiled = core.compile_model(core.read_model(str(Path(artifact) / IR_XML)), "CPU", config)
    request = compiled.create_infer_request()
    request.infer(feeds)
    request.infer(feeds)
    by_type = defaultdict(float)
    for info in request.profiling_info:
        by_type[f"{info.node_type} [{info.exec_type}]"] += info.real_time.total_seconds() * 1000.0
    _print_top("OpenVINO", by_type, top)
    options = ort.SessionOptions()
    options.enable_profiling = True
    options.profile_file_prefix = "/tmp/bench_runtimes"
    onnx_path = stages.onnx_for(spec, profile, cache)
    session = ort.InferenceSession(str(onnx_path), options, providers=["CPUExecutionProvider"])
    session.run(None, feeds)
    session.run(None, feeds)
    import json

    events = json.loads(Path(session.end_profiling()).read_text())
    by_op = defaultdict(float)
    runs = [e for e in events if e.get("cat") == "Node" and e["name"].endswith("_kernel_time")]
    for e in runs[len(runs) // 2:]:  # the second run
        by_op[e["args"]["op_name"]] += e["dur"] / 1000.0
    _print_top("ONNX Runtime", by_op, top)


def _print_top(runtime: str, ms: dict[str, float], top: int) -> None:
    total = sum(ms.values())
    print(f"\n{runtime}: {total:.1f} ms in layers")
    for name, spent in sorted(ms.items(), key=lambda kv: -kv[1])[:top]:
        print(f"  {spent:9.2f} ms {spent / total:6.1%}  {name}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", default="efficient3dcnn")
    parser.add_argument("--profile", default="smoke")
    parser.add_argument("--cycles", type=int, default=5)
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--cache-dir", type=Path, default=Path(".cache"))
    parser.add_argument("--layers", action="store_true", help="per-layer-type time of OpenVINO and ORT instead")
    args = parser.parse_args()
    print("| model | profile | runtime | suite FPS | own tool FPS | ratio |\n|---|---|---|---|---|---|")
    for name in args.models.split(","):
        spec = registry.get(name)
        if args.layers:
            layers(spec, args.profile, args.cache_dir.resolve())
            continue
        for runtime, pair in (("onnxruntime (bare default session)", onnxruntime_pair),
                              ("openvino (benchmark_app latency)", openvino_pair)):
            ours, theirs = pair(spec, args.profile, args.cache_dir.resolve(), args.cycles, args.rounds)
            print(f"| {name} | {args.profile} | {runtime} | {ours:.3f} | {theirs:.3f} | {ours / theirs:.3f} |",
                  flush=True)


if __name__ == "__main__":
    main()
