"""Run reports: records merged per model x backend x precision x batch size, written as
``reports/<run-id>/results.json``, ``summary.md`` and plots, with ``reports/latest`` -> newest.

Each test process appends its partial records to ``parts/<worker>.jsonl`` (safe under xdist);
the controlling process merges them when the session ends.
"""
from __future__ import annotations

import json
import math
import os
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterable

RECORD_KEY = ("model", "backend", "precision", "batch_size")


def new_run_id() -> str:
    return datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ") + f"-{os.getpid()}"


def record_key(record: dict) -> tuple:
    return tuple(record[k] for k in RECORD_KEY)


def _merge(into: dict, update: dict) -> dict:
    for key, value in update.items():
        if isinstance(value, dict) and isinstance(into.get(key), dict):
            _merge(into[key], value)
        else:
            into[key] = value
    return into


class PartWriter:
    """Appends partial records for one process; one JSON object per line."""

    def __init__(self, run_dir: Path, worker: str):
        self.path = run_dir / "parts" / f"{worker}.jsonl"
        self.path.parent.mkdir(parents=True, exist_ok=True)

    def add(self, record: dict) -> None:
        missing = [k for k in RECORD_KEY if k not in record]
        if missing:
            raise ValueError(f"report record lacks {missing}")
        with open(self.path, "a") as f:
            f.write(json.dumps(record, default=_jsonable) + "\n")


def _jsonable(value: Any):
    if hasattr(value, "item"):
        return value.item()
    if isinstance(value, (set, tuple)):
        return list(value)
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


def merge_parts(run_dir: Path) -> list[dict]:
    merged: dict[tuple, dict] = {}
    for part in sorted((run_dir / "parts").glob("*.jsonl")):
        for line in part.read_text().splitlines():
            record = json.loads(line)
            _merge(merged.setdefault(record_key(record), {}), record)
    return sorted(merged.values(), key=lambda r: (r["model"], r["backend"], r["precision"], r["batch_size"]))


def write_run(run_dir: Path, header: dict, records: list[dict], notes: Iterable[str] = ()) -> Path:
    results = {**header, "records": records}
    (run_dir / "results.json").write_text(json.dumps(results, indent=1, default=_jsonable))
    plots = write_plots(run_dir, records, header.get("reference_fps", {}), header.get("config", {}).get("soc"))
    (run_dir / "summary.md").write_text(summary_markdown(results, plots, list(notes)))
    latest = run_dir.parent / "latest"
    tmp = run_dir.parent / f".latest.{os.getpid()}"
    if tmp.is_symlink() or tmp.exists():
        tmp.unlink()
    tmp.symlink_to(run_dir.name)
    os.replace(tmp, latest)
    return run_dir / "summary.md"


def _fmt(value, digits: int = 4) -> str:
    if value is None:
        return "—"
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        return f"{value:.{digits}g}"
    return str(value)


def _mark(verdict: str | None) -> str:
    return {"pass": "✅ pass", "fail": "❌ FAIL", "xfail": "⚠️ expected failure", "n/a": "n/a"}.get(verdict or "", verdict or "—")


def summary_markdown(results: dict, plots: list[str], notes: list[str]) -> str:
    env = results.get("environment", {})
    cfg = results.get("config", {})
    lines = [f"# Run {results['run_id']}", ""]
    lines.append(f"- backends **{', '.join(cfg.get('backends') or [])}** (precision requested {cfg.get('precision')}), "
                 f"profile **{cfg.get('profile')}**, soc {cfg.get('soc') or 'none (perf recorded, not gated)'}")
    lines.append(f"- machine: {env.get('cpu')} ({env.get('cores')} cores), python {env.get('python')}, "
                 f"torch {env.get('torch')}, onnxruntime {env.get('onnxruntime')}, openvino {env.get('openvino')}; "
                 f"commit {results.get('commit', 'unknown')}")
    if results.get("peak_gflops"):
        lines.append(f"- measured peak: {results['peak_gflops']:.1f} GFLOP/s (fp32 2048² matmul in torch, best of 1 s, this process)")
    lines.append(f"- artifacts converted in this run: {results.get('artifacts_built', 0)} "
                 "(0 on a warm rerun: every conversion came from the cache)")
    lines.append(f"- started {results.get('started')}, finished {results.get('finished')}")
    lines += [f"- {n}" for n in notes]
    lines.append("")
    by_model: dict[str, list[dict]] = {}
    for r in results["records"]:
        by_model.setdefault(r["model"], []).append(r)
    lines += ["## Verdicts at a glance", "",
              "| model | backend | weights | data | deployed vs PyTorch | element-wise | published | FPS (bs: measured / reference) |",
              "|---|---|---|---|---|---|---|---|"]
    for model, rows in by_model.items():
        for backend in sorted({r["backend"] for r in rows}):
            lines.append("| " + " | ".join(_glance(model, backend, [r for r in rows if r["backend"] == backend])) + " |")
    lines.append("")
    for model, rows in by_model.items():
        lines += [f"## {model}", ""]
        first = rows[0]
        w = first.get("weights", {})
        lines.append(f"- weights: {w.get('source')} {w.get('sha256', '')[:16]} {w.get('note', '')}".rstrip())
        d = first.get("data") or {}
        if d:
            lines.append(f"- data: {'generated' if d.get('generated') else 'real'} at `{d.get('root')}`, "
                         f"{d.get('read')}/{d.get('listed')} items read, {d.get('samples')} samples, "
                         f"missing {d.get('missing')}, failed {len(d.get('failed') or {})}"
                         + (f" ({', '.join(d['failed'])})" if d.get("failed") else ""))
        for r in rows:
            if r.get("status") in ("error", "oom"):
                lines.append(f"- {r['backend']} bs{r['batch_size']}: {r['status']}: {r.get('reason', '')}")
        acc_rows = [r for r in rows if r.get("accuracy")]
        reasons = sorted({m["published_reason"] for r in acc_rows for m in r["accuracy"].values()
                          if m.get("published_verdict") == "n/a" and m.get("published") is not None})
        if reasons:
            lines.append(f"- published figures do not apply: {'; '.join(reasons)}")
        if acc_rows:
            lines += ["", "| backend | bs | precision | metric | PyTorch | deployed | delta | tolerance | verdict | published | published verdict |",
                      "|---|---|---|---|---|---|---|---|---|---|---|"]
            for r in acc_rows:
                for name, m in r["accuracy"].items():
                    why = f" ({m.get('published_reason')})" if m.get("published_verdict") in ("pass", "fail") else ""
                    lines.append(f"| {r['backend']} | {r['batch_size']} | {r['precision']} | {name} | {_fmt(m.get('torch'))} | "
                                 f"{_fmt(m.get('deployed'))} | {_fmt(m.get('delta'), 3)} | {_fmt(m.get('tolerance'))} | "
                                 f"{_mark(m.get('verdict'))} | {_fmt(m.get('published'))} | "
                                 f"{_mark(m.get('published_verdict'))}{why} |")
        perf_rows = [r for r in rows if r.get("perf")]
        if perf_rows:
            lines += ["", "| backend | bs | precision | FPS (median) | p50 / p90 / p99 ms | compute-only FPS | reference FPS | ratio | GFLOP/s | of peak | rounds | audit |",
                      "|---|---|---|---|---|---|---|---|---|---|---|---|"]
            for r in perf_rows:
                p = r["perf"]
                if p.get("status") == "oom":
                    lines.append(f"| {r['backend']} | {r['batch_size']} | {r['precision']} | out of memory: {p.get('reason', '')} | | | "
                                 f"{_fmt(p.get('reference_fps'))} | | | | | |")
                    continue
                lines.append(
                    f"| {r['backend']} | {r['batch_size']} | {r['precision']} | {_fmt(p.get('fps'))} | "
                    f"{_fmt(p.get('p50_ms'))} / {_fmt(p.get('p90_ms'))} / {_fmt(p.get('p99_ms'))} | "
                    f"{_fmt(p.get('compute_fps'))} | {_fmt(p.get('reference_fps'))} | {_fmt(p.get('ratio'), 3)} | "
                    f"{_fmt(p.get('gflops_per_s'))} | {_fmt(p.get('fraction_of_peak'), 2)} | "
                    f"{p.get('rounds')} (+{p.get('warmup')} warm-up) | {p.get('audit', '—')} |")
        lines.append("")
    if plots:
        lines += ["## Plots", ""] + [f"![{Path(p).stem}]({p})" for p in plots] + [""]
    lines += ["## How figures were measured", "",
              "- FPS = batch size / median wall time of one `session.run` on a prepared batch (inputs already "
              "in memory, outputs returned), after warm-up rounds; latency percentiles over the timed rounds. "
              "Compute-only FPS = 1000 · batch / mean device compute ms, as ais_bench states it, where the runtime reports it.",
              "- GFLOP/s = GFLOPs per sample (Conv/ConvTranspose/MatMul/Gemm multiply-adds × 2, counted once from the "
              "ONNX graph) × FPS; 'of peak' divides by the fp32 matmul peak measured at session start.",
              "- Accuracy: the same samples go through PyTorch and the deployed artifact in lockstep; "
              "'delta' = deployed − PyTorch, judged by the model spec's tolerance for the precision the runtime actually ran at.",
              "- Published figures apply only with the real checkpoint and the complete dataset; otherwise the reason is given.", ""]
    return "\n".join(lines)


def _glance(model: str, backend: str, rows: list[dict]) -> list[str]:
    def verdicts(key: str) -> str:
        values = [m.get(key) for r in rows for m in (r.get("accuracy") or {}).values() if m.get(key)]
        if not values:
            return "—"
        if "fail" in values:
            return "❌ FAIL"
        return "✅ pass" if "pass" in values else "n/a"

    errors = [r for r in rows if r.get("status") in ("error", "oom")]
    elem = [r["conformance"]["passed"] for r in rows if r.get("conformance")]
    elementwise = "—" if not elem else ("✅ pass" if all(elem) else "❌ FAIL")
    reasons = {m.get("published_reason") for r in rows for m in (r.get("accuracy") or {}).values()
               if m.get("published_verdict") == "n/a"}
    published = verdicts("published_verdict")
    if published == "n/a" and reasons:  # the short form; the model's section has the full reasons
        short = {part.split(" (")[0] for reason in reasons if reason for part in reason.split("; ")}
        published = "n/a: " + ", ".join(sorted(short))
    fps = []
    for r in sorted((r for r in rows if r.get("perf")), key=lambda r: r["batch_size"]):
        p = r["perf"]
        measured = "oom" if p.get("status") == "oom" else _fmt(p.get("fps"), 3)
        fps.append(f"{r['batch_size']}: {measured} / {_fmt(p.get('reference_fps'), 4)}")
    w = rows[0].get("weights", {})
    d = rows[0].get("data") or {}
    precisions = ",".join(sorted({r["precision"] for r in rows}))
    deployed = verdicts("verdict")
    if errors:
        deployed = "❌ " + ", ".join(f"bs{r['batch_size']} {r['status']}" for r in errors)
    return [model, f"{backend} ({precisions})", w.get("source", "—"),
            "generated" if d.get("generated") else ("real" if d else "—"),
            deployed, elementwise, published, "; ".join(fps) or "—"]


def _panels(plt, count: int, size: tuple[float, float]):
    """A figure with ``count`` panels, up to three per row; returns (figure, the used axes)."""
    cols = min(3, count)
    rows = -(-count // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(size[0] * cols, size[1] * rows), squeeze=False)
    for ax in axes.flat[count:]:
        ax.set_visible(False)
    return fig, list(axes.flat[:count])


def write_plots(run_dir: Path, records: list[dict], reference_fps: dict, soc: str | None) -> list[str]:
    """FPS vs batch size beside the seed's reference curves; accuracy vs published. PNG files."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    written = []
    models = sorted({r["model"] for r in records})
    perf_models = [m for m in models if any(r.get("perf", {}).get("fps") for r in records if r["model"] == m)]
    if perf_models:
        fig, axes = _panels(plt, len(perf_models), (4.8, 3.8))
        for ax, model in zip(axes, perf_models):
            for (backend, precision) in sorted({(r["backend"], r["precision"]) for r in records if r["model"] == model}):
                pts = sorted((r["batch_size"], r["perf"]["fps"]) for r in records
                             if r["model"] == model and r["backend"] == backend and r["precision"] == precision
                             and r.get("perf", {}).get("fps"))
                if pts:
                    ax.plot(*zip(*pts), "o-", label=f"{backend} {precision} (measured)")
            for table_soc, table in sorted(reference_fps.get(model, {}).items()):
                pts = sorted((int(bs), v) for bs, v in table.items() if isinstance(v, (int, float)))
                style = "s--" if table_soc == soc else ":"
                if pts:
                    ax.plot(*zip(*pts), style, alpha=0.8, label=f"{table_soc} (seed reference)")
            ax.set_xscale("log", base=2)
            ax.set_yscale("log")
            profiles = sorted({r.get("profile", "?") for r in records if r["model"] == model})
            ax.set_title(f"{model} (measured at {'/'.join(profiles)} shapes)", fontsize=9)
            ax.set_xlabel("batch size")
            ax.set_ylabel("samples / s")
            ax.grid(True, which="both", alpha=0.3)
            ax.legend(fontsize=6)
        fig.tight_layout()
        fig.savefig(run_dir / "fps.png", dpi=110)
        plt.close(fig)
        written.append("fps.png")
    # one panel per published metric (units differ: %, dB, px, SSIM), at each model's smallest batch size
    smallest = {m: min(r["batch_size"] for r in records if r["model"] == m) for m in models}
    published = sorted({(r["model"], name) for r in records if r["batch_size"] == smallest[r["model"]]
                        for name, m in (r.get("accuracy") or {}).items() if m.get("published") is not None})
    if published:
        fig, axes = _panels(plt, len(published), (4.2, 3.0))
        for ax, (model, name) in zip(axes, published):
            rows_here = [r for r in records if r["model"] == model and r["batch_size"] == smallest[model]
                         and name in (r.get("accuracy") or {})]
            labels = ["PyTorch"] + [f"{r['backend']}\n{r['precision']}" for r in rows_here]
            values = [rows_here[0]["accuracy"][name]["torch"]] + [r["accuracy"][name]["deployed"] for r in rows_here]
            ax.bar(range(len(values)), values, color=["tab:blue"] + ["tab:orange"] * len(rows_here))
            metric = rows_here[0]["accuracy"][name]
            ax.axhline(metric["published"], color="k", linestyle="--", label=f"published {metric['published']:g}")
            ax.set_xticks(range(len(values)))
            ax.set_xticklabels(labels, fontsize=7)
            better = "higher" if metric.get("higher_is_better", True) else "lower"
            ax.set_title(f"{model} {name} ({better} is better)", fontsize=9)
            ax.legend(fontsize=7)
        fig.tight_layout()
        fig.savefig(run_dir / "accuracy.png", dpi=110)
        plt.close(fig)
        written.append("accuracy.png")
    return written
