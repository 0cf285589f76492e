"""Benchmark of the data path: the compact sample cache, its budget, decoding ahead on every core.

    python -m harness.bench_data [--models a,b] [--profile full] [--warm-model efficient3dcnn]
        [--warm-items 40] [--over-model slowfast] [--over-items 200] [--over-profile smoke]

Any registered model: each model's generator writes its own dataset in its real layout, with as
many items as asked (``Profile.generated_samples``); nothing here knows a dataset's index. It
reports, as ratios measured in this one process:

* bytes per item and per sample, stored (the last integer stage, float targets compressed)
  against the float32 tensors the cache stored before, for every model at ``--profile`` (on
  generated items, and on the real files under ``--data-root`` where they are), and
  the extrapolation to the model's full evaluation set (``published_items``, or the data
  module's ``FULL_SET_SAMPLES`` where an item holds several samples);
* a warm accuracy-style pass (dataset -> batches -> ONNX Runtime) of ``--warm-model``: its wall
  time against the inference alone, i.e. the share of the wall the data costs; and the peak
  RSS of a warm pass over a quarter and over all of its items (each in its own subprocess);
* a cold pass over ``--over-items`` items of ``--over-model`` with a budget of a tenth of what
  they take stored, with 1 worker and with every core: throughput, what was kept and decoded,
  the budget held, the samples the same as without a cache; then a second pass.

Not part of the test run: it takes minutes and builds the warm model's ONNX at the profile.
"""
from __future__ import annotations

import argparse
import dataclasses
import importlib
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from harness import cache_budget, stages
from harness.registry import all_specs, get
from harness.runstate import RunState
from harness.samples_cache import SampleCache


def build_dataset(model: str, profile: str, where: Path, items: int) -> Path:
    """The model's generated dataset with ``items`` items, in its real layout (once per folder)."""
    spec = get(model)
    root = where / f"{model}-{profile}-{items}"
    if not root.exists():
        shapes = dataclasses.replace(spec.profile(profile), generated_samples=items)
        spec.generate_dataset(root, shapes, spec.protocol_for(profile))
    return root


def open_cached(model: str, profile: str, root: Path, cache_dir: Path | None, workers: int,
                limit: int | None = None, state: RunState | None = None):
    spec = get(model)
    dataset = spec.open_dataset(root, spec.profile(profile), spec.protocol_for(profile), limit, True)
    cache = None
    if cache_dir is not None:
        cache = SampleCache(cache_dir / "samples" / model, stages.sample_cache_key(spec, profile), cache_dir)
    return dataset.preprocessed(cache, workers, state)


def _float32_bytes(sample) -> int:
    """What the float32 cache stored for a sample: its inputs and an array target, raw."""
    return sum(a.nbytes for a in [*sample.inputs.values(), sample.target] if isinstance(a, np.ndarray))


def bytes_per_item(model: str, profile: str, work: Path, items: int, data_root: Path | None = None) -> dict:
    """Stored against float32 bytes, on generated items, or on the real files under ``data_root``."""
    spec = get(model)
    root = data_root / spec.dataset_dir if data_root else build_dataset(model, profile, work / "data", items)
    cache_dir = work / f"bytes_{model}_{'real' if data_root else 'generated'}"
    shutil.rmtree(cache_dir, ignore_errors=True)
    dataset = open_cached(model, profile, root, cache_dir, 0)
    before = sum(_float32_bytes(s) for s in dataset)
    after = sum(cache_budget.scan(cache_dir).entries.values())
    data_module = importlib.import_module(f"{stages.model_package(spec).__name__}.data")
    full_samples = getattr(data_module, "FULL_SET_SAMPLES", None)
    per_sample_after = after / dataset.samples
    if full_samples is None and spec.published_items:
        full_samples = spec.published_items * dataset.samples / dataset.read
    return {"items": dataset.read, "samples": dataset.samples,
            "float32_bytes_per_sample": before / dataset.samples, "stored_bytes_per_sample": per_sample_after,
            "ratio": after / before, "full_set_samples": full_samples,
            "full_set_float32_gb": full_samples and full_samples * before / dataset.samples / 1e9,
            "full_set_stored_gb": full_samples and full_samples * per_sample_after / 1e9}


def timed_pass(dataset) -> tuple[float, int, list[str]]:
    start = time.perf_counter()
    ids = [s.id for s in dataset]
    return time.perf_counter() - start, len(ids), ids


def warm_accuracy_pass(model: str, profile: str, root: Path, cache_dir: Path, onnx_path: Path,
                       batch_size: int, workers: int) -> dict:
    """dataset -> batches -> ONNX Runtime over the stored samples: wall vs inference alone."""
    from harness.backends.onnxruntime import OnnxRuntimeBackend
    from harness.outputs import batches

    spec = get(model)
    session = OnnxRuntimeBackend("fp32").open(onnx_path, stages.input_shapes(spec, profile, batch_size))
    list(open_cached(model, profile, root, cache_dir, workers))  # the cold pass stores every item
    dataset = open_cached(model, profile, root, cache_dir, workers)
    inference = 0.0
    start = time.perf_counter()
    for _, feeds in batches(dataset, batch_size, spec.input_names):
        t = time.perf_counter()
        session.run(feeds)
        inference += time.perf_counter() - t
    wall = time.perf_counter() - start
    return {"model": model, "batch_size": batch_size, "samples": dataset.samples,
            "decoded": dataset.this_pass.decoded, "from_cache": dataset.this_pass.from_cache,
            "wall_s": wall, "inference_s": inference, "data_share_of_wall": (wall - inference) / wall}


def over_budget_pass(model: str, profile: str, root: Path, work: Path, workers: int, share: float) -> dict:
    """A cold pass, then a second one, with a budget of ``share`` of what the items take stored."""
    probe = work / "over_probe"
    if not probe.exists():  # the stored size of every item, once
        list(open_cached(model, profile, root, probe, 0))
    stored = sum(cache_budget.scan(probe).entries.values())
    cache_dir = work / f"over_{workers}"
    shutil.rmtree(cache_dir, ignore_errors=True)
    list(open_cached(model, profile, root, None, workers, limit=workers))  # the pool started, not timed
    state = RunState.start(cache_dir, int(share * stored))
    budget = state.budget
    dataset = open_cached(model, profile, root, cache_dir, workers, state=state)
    seconds, samples, ids = timed_pass(dataset)
    cold = dataset.this_pass.as_dict()
    warm_seconds, _, warm_ids = timed_pass(dataset)
    expected = [s.id for s in open_cached(model, profile, root, None, workers)]
    return {"workers": workers, "items": dataset.read, "stored_bytes_all_items": stored,
            "budget_bytes": budget.budget, "cache_bytes_after": cache_budget.scan(cache_dir).total,
            "cold": {**cold, "seconds": seconds, "items_per_s": dataset.read / seconds},
            "second": {**dataset.this_pass.as_dict(), "seconds": warm_seconds, "items_per_s": dataset.read / warm_seconds},
            "same_samples_in_order": ids == warm_ids == expected}


def _rss_child(args) -> None:
    from harness.outputs import batches

    dataset = open_cached(args.model, args.profile, Path(args.root), Path(args.cache), 0, args.limit)
    for _ in batches(dataset, 4, get(args.model).input_names):
        pass
    print(json.dumps({"limit": args.limit, "samples": dataset.samples, "decoded": dataset.this_pass.decoded,
                      "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))


def peak_rss(model: str, profile: str, root: Path, cache_dir: Path, limit: int) -> dict:
    out = subprocess.run(
        [sys.executable, "-m", "harness.bench_data", "--rss-child", "--model", model, "--profile", profile,
         "--root", str(root), "--cache", str(cache_dir), "--limit", str(limit)],
        check=True, capture_output=True, text=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def _arguments(argv):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", default=None, help="comma-separated; default: every registered model")
    parser.add_argument("--profile", default="full", choices=("smoke", "full"))
    parser.add_argument("--bytes-items", type=int, default=2, help="items per model for the bytes per item")
    parser.add_argument("--data-root", type=Path, default=None,
                        help="also measure the bytes per item on the real files there (e.g. ../shared/data)")
    parser.add_argument("--warm-model", default="efficient3dcnn")
    parser.add_argument("--warm-items", type=int, default=40)
    parser.add_argument("--over-model", default="slowfast")
    parser.add_argument("--over-items", type=int, default=200)
    parser.add_argument("--over-profile", default="smoke", choices=("smoke", "full"))
    parser.add_argument("--over-share", type=float, default=0.1, help="the budget, as a share of the stored items")
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--work-dir", type=Path, default=None, help="default: a temporary folder")
    parser.add_argument("--rss-child", action="store_true", help=argparse.SUPPRESS)
    for hidden in ("--model", "--root", "--cache"):
        parser.add_argument(hidden, help=argparse.SUPPRESS)
    parser.add_argument("--limit", type=int, help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def main(argv=None) -> None:
    args = _arguments(argv)
    if args.rss_child:
        return _rss_child(args)
    work = args.work_dir or Path(tempfile.mkdtemp(prefix="bench_data_"))
    models = args.models.split(",") if args.models else [s.name for s in all_specs()]
    report: dict = {"profile": args.profile, "cores": os.cpu_count(), "workers": args.workers}

    def emit(name: str, value) -> None:
        report[name] = value
        print(json.dumps({name: value}, indent=1), flush=True)

    emit("bytes", {m: bytes_per_item(m, args.profile, work, args.bytes_items) for m in models})
    if args.data_root:
        emit("bytes_real_files", {m: bytes_per_item(m, args.profile, work, 0, args.data_root) for m in models
                                  if (args.data_root / get(m).dataset_dir).is_dir()})
    root = build_dataset(args.warm_model, args.profile, work / "data", args.warm_items)
    onnx_path = stages.onnx_for(get(args.warm_model), args.profile, work / "artifacts")
    warm_cache = work / "warm_cache"
    emit("warm_accuracy_pass", warm_accuracy_pass(args.warm_model, args.profile, root, warm_cache, onnx_path,
                                                  args.batch_size, args.workers))
    emit("peak_rss", [peak_rss(args.warm_model, args.profile, root, warm_cache, n)
                      for n in (max(1, args.warm_items // 4), args.warm_items)])
    over_root = build_dataset(args.over_model, args.over_profile, work / "data", args.over_items)
    runs = [over_budget_pass(args.over_model, args.over_profile, over_root, work, w, args.over_share)
            for w in sorted({1, args.workers})]
    emit("over_budget", {"model": args.over_model, "profile": args.over_profile, "runs": runs,
                         "cold_speedup_all_vs_1": runs[-1]["cold"]["items_per_s"] / runs[0]["cold"]["items_per_s"]})
    (work / "bench_data.json").write_text(json.dumps(report, indent=1))
    print(f"written {work / 'bench_data.json'}")


if __name__ == "__main__":
    main()
