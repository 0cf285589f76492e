"""Benchmark of the data path: preprocessing once, on every core, ahead of inference.

    python -m harness.bench_data --profile full [--videos 120] [--slowfast-videos 24] [--workers N]

On a generated dataset of realistic length (the models' ``data.generate`` output, its videos
copied under new names until the index lists ``--videos`` Efficient-3DCNNs videos and
``--slowfast-videos`` SlowFast videos), at the profile's shapes, it reports:

* cold preprocessing throughput (items/s, samples/s) with 1 worker process and with N;
* a warm accuracy-style pass (dataset -> batches -> ONNX Runtime) of Efficient-3DCNNs: its wall
  time against the inference time alone, i.e. the share of the wall the data costs;
* items decoded per pass: cold (goal: the unique count) and warm (goal: 0);
* peak RSS of a warm pass over two dataset lengths, each in its own subprocess (goal: equal).

Not part of the test run: it takes minutes and builds the full-profile ONNX.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from harness import stages
from harness.registry import get
from harness.samples_cache import SampleCache
from harness.stages import sample_cache_key


def _replicate_e3d(root: Path, protocol: dict, videos: int) -> None:
    """Copy the generated videos under new ids until the split json lists ``videos`` of them."""
    annotation = root / protocol["annotation"]
    index = json.loads(annotation.read_text())
    originals = [(vid, e) for vid, e in index["database"].items() if e["subset"] == protocol["subset"]]
    for n in range(videos - len(originals)):
        vid, entry = originals[n % len(originals)]
        label = entry["annotations"]["label"]
        copy_id = f"{vid}_copy{n:04d}"
        source = root / protocol["frames_dir"] / label / vid
        shutil.copytree(source, source.parent / copy_id)
        index["database"][copy_id] = entry
    annotation.write_text(json.dumps(index))


def _replicate_slowfast(root: Path, protocol: dict, videos: int) -> None:
    list_file = root / protocol["list_file"]
    lines = list_file.read_text().split("\n")
    originals = [line for line in lines if line.strip()]
    for n in range(videos - len(originals)):
        rel, label = originals[n % len(originals)].rsplit(None, 1)
        copy_rel = rel.replace(".mp4", f"_copy{n:04d}.mp4")
        shutil.copy(root / protocol["videos_dir"] / rel, root / protocol["videos_dir"] / copy_rel)
        originals.append(f"{copy_rel} {label}")
    list_file.write_text("\n".join(originals) + "\n")


def build_dataset(model: str, profile: str, where: Path, videos: int) -> Path:
    spec = get(model)
    root = where / model
    if not root.exists():
        protocol = spec.protocol_for(profile)
        spec.generate_dataset(root, spec.profile(profile), protocol)
        (_replicate_e3d if model == "efficient3dcnn" else _replicate_slowfast)(root, protocol, videos)
    return root


def open_cached(model: str, profile: str, root: Path, cache_dir: Path | None, workers: int,
                limit: int | None = None):
    spec = get(model)
    dataset = spec.open_dataset(root, spec.profile(profile), spec.protocol_for(profile), limit, True)
    cache = None
    if cache_dir is not None:
        cache = SampleCache(cache_dir, sample_cache_key(spec, profile))
    return dataset.preprocessed(cache, workers)


def timed_pass(dataset) -> tuple[float, int]:
    start = time.perf_counter()
    samples = sum(1 for _ in dataset)
    return time.perf_counter() - start, samples


def cold_throughput(model: str, profile: str, root: Path, work: Path, workers: int) -> dict:
    cache_dir = work / f"cold_{model}_{workers}"
    shutil.rmtree(cache_dir, ignore_errors=True)
    dataset = open_cached(model, profile, root, cache_dir, workers)
    seconds, samples = timed_pass(dataset)
    return {"workers": workers, "seconds": seconds, "items": dataset.read, "samples": samples,
            "decoded": dataset.decoded, "items_per_s": dataset.read / seconds,
            "samples_per_s": samples / seconds}


def warm_accuracy_pass(profile: str, root: Path, cache_dir: Path, onnx_path: Path, batch_size: int) -> dict:
    """dataset -> batches -> ONNX Runtime over the stored samples: wall vs inference alone."""
    from harness.backends.onnxruntime import OnnxRuntimeBackend
    from harness.outputs import batches

    spec = get("efficient3dcnn")
    session = OnnxRuntimeBackend("fp32").open(onnx_path, stages.input_shapes(spec, profile, batch_size))
    dataset = open_cached("efficient3dcnn", profile, root, cache_dir, os.cpu_count() or 1)
    inference = 0.0
    start = time.perf_counter()
    for _, feeds in batches(dataset, batch_size, spec.input_names):
        t = time.perf_counter()
        session.run(feeds)
        inference += time.perf_counter() - t
    wall = time.perf_counter() - start
    return {"batch_size": batch_size, "samples": dataset.samples, "decoded": dataset.decoded,
            "wall_s": wall, "inference_s": inference, "data_share_of_wall": (wall - inference) / wall}


def _rss_child(args) -> None:
    dataset = open_cached(args.model, args.profile, Path(args.root), Path(args.cache), 0, args.limit)
    from harness.outputs import batches

    spec = get(args.model)
    for _ in batches(dataset, 4, spec.input_names):
        pass
    print(json.dumps({"limit": args.limit, "samples": dataset.samples, "decoded": dataset.decoded,
                      "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))


def peak_rss(model: str, profile: str, root: Path, cache_dir: Path, limit: int) -> dict:
    out = subprocess.run(
        [sys.executable, "-m", "harness.bench_data", "--rss-child", "--model", model, "--profile", profile,
         "--root", str(root), "--cache", str(cache_dir), "--limit", str(limit)],
        check=True, capture_output=True, text=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--profile", default="full", choices=("smoke", "full"))
    parser.add_argument("--videos", type=int, default=120, help="Efficient-3DCNNs videos")
    parser.add_argument("--slowfast-videos", type=int, default=24)
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--work-dir", type=Path, default=None, help="default: a temporary folder")
    parser.add_argument("--rss-child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--model", help=argparse.SUPPRESS)
    parser.add_argument("--root", help=argparse.SUPPRESS)
    parser.add_argument("--cache", help=argparse.SUPPRESS)
    parser.add_argument("--limit", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.rss_child:
        return _rss_child(args)

    work = args.work_dir or Path(tempfile.mkdtemp(prefix="bench_data_"))
    report: dict = {"profile": args.profile, "cores": os.cpu_count(), "workers": args.workers}
    for model, videos in (("efficient3dcnn", args.videos), ("slowfast", args.slowfast_videos)):
        root = build_dataset(model, args.profile, work / "data", videos)
        runs = [cold_throughput(model, args.profile, root, work, w) for w in sorted({1, args.workers})]
        warm = open_cached(model, args.profile, root, work / f"cold_{model}_{args.workers}", args.workers)
        warm_seconds, _ = timed_pass(warm)
        report[model] = {"videos": len(warm.items), "cold": runs,
                         "speedup_n_vs_1": runs[-1]["items_per_s"] / runs[0]["items_per_s"],
                         "warm_pass": {"seconds": warm_seconds, "decoded": warm.decoded,
                                       "samples_per_s": warm.samples / warm_seconds}}
        print(json.dumps({model: report[model]}, indent=1), flush=True)

    e3d_root, e3d_cache = work / "data" / "efficient3dcnn", work / f"cold_efficient3dcnn_{args.workers}"
    onnx_path = stages.onnx_for(get("efficient3dcnn"), args.profile, work / "artifacts")
    report["warm_accuracy_pass"] = warm_accuracy_pass(args.profile, e3d_root, e3d_cache, onnx_path,
                                                      args.batch_size)
    print(json.dumps({"warm_accuracy_pass": report["warm_accuracy_pass"]}, indent=1), flush=True)
    videos = report["efficient3dcnn"]["videos"]
    report["peak_rss"] = [peak_rss("efficient3dcnn", args.profile, e3d_root, e3d_cache, n)
                          for n in (max(1, videos // 4), videos)]
    print(json.dumps({"peak_rss": report["peak_rss"]}, indent=1), flush=True)
    (work / "bench_data.json").write_text(json.dumps(report, indent=1))
    print(f"written {work / 'bench_data.json'}")


if __name__ == "__main__":
    main()
