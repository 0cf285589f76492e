"""Run reports: records merged per model x backend x precision x batch size, written as
``reports/<run-id>/results.json``, ``summary.md`` and plots, with ``reports/latest`` -> newest.

Each test process appends its partial records to ``parts/<worker>.jsonl`` (safe under xdist);
the controlling process merges them when the session ends.
"""
from __future__ import annotations

import copy
import json
import math
import os
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterable

from harness.spec import OOM

RECORD_KEY = ("model", "backend", "precision", "batch_size")
FULL_PROFILE = "full"  # the seeds' shapes: the only profile whose FPS compares with their tables


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
    results = {**header, "notes": list(notes), "records": records}
    (run_dir / "results.json").write_text(json.dumps(results, indent=1, default=_jsonable))
    plots = write_plots(run_dir, records, header.get("reference_fps", {}), header.get("config", {}).get("soc"))
    (run_dir / "summary.md").write_text(summary_markdown(results, plots, results["notes"]))
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


def out_of_memory(record: dict) -> bool:
    return OOM in (record.get("status"), (record.get("perf") or {}).get("status"))


def expected_oom(record: dict, reference_fps: dict, soc: str | None) -> bool:
    """An out-of-memory row the seed's table records as out of memory for this soc."""
    table = ((reference_fps.get(record["model"]) or {}).get(soc) or {}) if soc else {}
    return out_of_memory(record) and OOM in ((record.get("perf") or {}).get("reference_fps"),
                                             table.get(str(record["batch_size"])))


def _row_status(record: dict, reference_fps: dict, soc: str | None) -> str:
    if expected_oom(record, reference_fps, soc):
        return f"⚠️ bs{record['batch_size']} out of memory, as the seed records on {soc} (expected)"
    if out_of_memory(record):
        return f"❌ bs{record['batch_size']} out of memory (the seed ran it)"
    return f"❌ bs{record['batch_size']} error"


def _comparable_shapes(record: dict) -> bool:
    """Measured at the seeds' shapes, so that its FPS compares with the seed's reference."""
    return record.get("profile") == FULL_PROFILE


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
        lines.append(f"- measured peak: {results['peak_gflops']:.1f} GFLOP/s (ONNX Runtime fp32 MatMul, best round "
                     "over several sizes, measured once per CPU and onnxruntime version)")
    lines.append(f"- artifacts converted in this run: {results.get('artifacts_built', 0)} "
                 "(0 on a warm rerun: every conversion came from the cache)")
    lines.append(f"- started {results.get('started')}, finished {results.get('finished')}")
    lines += [f"- {n}" for n in notes]
    lines.append("")
    reference_fps, soc = results.get("reference_fps") or {}, cfg.get("soc")
    by_model: dict[str, list[dict]] = {}
    for r in results["records"]:
        by_model.setdefault(r["model"], []).append(r)
    lines += ["## Verdicts at a glance", "",
              "| model | backend | weights | data | deployed vs PyTorch | element-wise | published | FPS (bs: measured / reference) |",
              "|---|---|---|---|---|---|---|---|"]
    for model, rows in by_model.items():
        for backend in sorted({r["backend"] for r in rows}):
            lines.append("| " + " | ".join(_glance(model, backend, [r for r in rows if r["backend"] == backend], reference_fps, soc)) + " |")
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
            if r.get("status") == "error" or out_of_memory(r):
                reason = r.get("reason") or (r.get("perf") or {}).get("reason", "")
                lines.append(f"- {r['backend']} {_row_status(r, reference_fps, soc)}: {reason}")
        for r in rows:
            if r.get("failures"):
                lines.append(f"- {r['backend']} bs{r['batch_size']} ❌ FAIL: {'; '.join(r['failures'])}")
        acc_rows = [r for r in rows if r.get("accuracy")]
        reasons = sorted({r["published"]["reason"] for r in acc_rows
                          if (r.get("published") or {}).get("reason") and not r["published"].get("applies")})
        if reasons:
            lines.append(f"- published figures do not apply: {'; '.join(reasons)}")
        if acc_rows:
            lines += ["", "| backend | bs | precision | metric | PyTorch | deployed | delta | tolerance | verdict | published | published verdict |",
                      "|---|---|---|---|---|---|---|---|---|---|---|"]
            for r in acc_rows:
                for name, m in r["accuracy"].items():
                    pub = _published(r, name)
                    why = f" ({pub.get('why')})" if pub.get("verdict") in ("pass", "fail") else ""
                    lines.append(f"| {r['backend']} | {r['batch_size']} | {r['precision']} | {name} | {_fmt(m.get('torch'))} | "
                                 f"{_fmt(m.get('deployed'))} | {_fmt(m.get('delta'), 3)} | {_fmt(m.get('tolerance'))} | "
                                 f"{_mark(m.get('verdict'))} | {_fmt(pub.get('published'))} | "
                                 f"{_mark(pub.get('verdict'))}{why} |")
        agreeing = [r for r in acc_rows if r.get("agreement")]
        if agreeing:
            lines += ["", "Deployed against PyTorch on the same samples, in the task's terms (meaningful with seeded weights):",
                      "", "| backend | bs | precision | statistic | value | limit | verdict | worst sample |",
                      "|---|---|---|---|---|---|---|---|"]
            for r in agreeing:
                picture = r.get("worst_sample_picture")
                # the picture lies in <run>/divergence/<row>/, beside this summary's folder
                shown = f"[picture](divergence/{Path(picture).parent.name}/{Path(picture).name})" if picture else "—"
                for name, a in r["agreement"].items():
                    bound = ">=" if a.get("bound") == "min" else "<="
                    lines.append(f"| {r['backend']} | {r['batch_size']} | {r['precision']} | {name} | "
                                 f"{_fmt(a.get('value'))}{a.get('unit', '')} | {bound} {_fmt(a.get('limit'))} | "
                                 f"{_mark('pass' if a.get('passed') else 'fail')} | {shown} |")
            for r in agreeing:
                if r.get("localisation"):
                    lines.append(f"- {r['backend']} bs{r['batch_size']}: {r['localisation']}")
        perf_rows = [r for r in rows if r.get("perf")]
        if perf_rows:
            lines += ["", "| backend | bs | precision | FPS (median) | p50 / p90 / p99 ms | compute-only FPS | reference FPS | ratio | GFLOP/s | of peak | rounds | audit |",
                      "|---|---|---|---|---|---|---|---|---|---|---|---|"]
            for r in perf_rows:
                p = r["perf"]
                if p.get("status") == OOM:
                    expected = " (expected: the seed records it)" if expected_oom(r, reference_fps, soc) else ""
                    lines.append(f"| {r['backend']} | {r['batch_size']} | {r['precision']} | out of memory{expected}: "
                                 f"{p.get('reason', '')} | | | {_fmt(p.get('reference_fps'))} | | | | | |")
                    continue
                ratio = _fmt(p.get("ratio"), 3) if _comparable_shapes(r) else f"— ({r.get('profile')} shapes)"
                lines.append(
                    f"| {r['backend']} | {r['batch_size']} | {r['precision']} | {_fmt(p.get('fps'))} | "
                    f"{_fmt(p.get('p50_ms'))} / {_fmt(p.get('p90_ms'))} / {_fmt(p.get('p99_ms'))} | "
                    f"{_fmt(p.get('compute_fps'))} | {_fmt(p.get('reference_fps'))} | {ratio} | "
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


def _published(record: dict, metric: str) -> dict:
    """The row's published verdict for one metric: {published, value, verdict, why}, or {}."""
    return ((record.get("published") or {}).get("metrics") or {}).get(metric) or {}


def _summed(values: list) -> str:
    values = [v for v in values if v]
    if not values:
        return "—"
    if "fail" in values:
        return "❌ FAIL"
    return "✅ pass" if "pass" in values else "n/a"


def _glance(model: str, backend: str, rows: list[dict], reference_fps: dict, soc: str | None) -> list[str]:
    errors = [r for r in rows if r.get("status") == "error" or out_of_memory(r)]
    elem = [r["conformance"]["passed"] for r in rows if r.get("conformance")]
    elementwise = "—" if not elem else ("✅ pass" if all(elem) else "❌ FAIL")
    reasons = {r["published"].get("reason") for r in rows if r.get("published") and not r["published"].get("applies")}
    published = _summed([m.get("verdict") for r in rows for m in ((r.get("published") or {}).get("metrics") or {}).values()])
    if published == "n/a" and reasons:  # the short form; the model's section has the full reasons
        short = {part.split(" (")[0] for reason in reasons if reason for part in reason.split("; ")}
        published = "n/a: " + ", ".join(sorted(short))
    fps = []
    for r in sorted((r for r in rows if r.get("perf")), key=lambda r: r["batch_size"]):
        p = r["perf"]
        measured = "oom" if p.get("status") == OOM else _fmt(p.get("fps"), 3)
        fps.append(f"{r['batch_size']}: {measured} / {_fmt(p.get('reference_fps'), 4)}")
    smoke = sorted({r.get("profile") or "?" for r in rows if r.get("perf") and not _comparable_shapes(r)})
    if fps and smoke:
        fps.append(f"measured at {'/'.join(smoke)} shapes: not comparable with the reference (full shapes)")
    w = rows[0].get("weights", {})
    d = rows[0].get("data") or {}
    precisions = ",".join(sorted({r["precision"] for r in rows}))
    # the row's own verdict (data, finiteness, element-wise, agreement, metrics) where recorded
    deployed = _summed([r.get("accuracy_verdict") or _summed([m.get("verdict") for m in r["accuracy"].values()])
                        for r in rows if r.get("accuracy")])
    if errors:
        statuses = [_row_status(r, reference_fps, soc) for r in errors]
        failed = [s for s in statuses if s.startswith("❌")]
        expected = [s for s in statuses if not s.startswith("❌")]
        # failures first; an expected out-of-memory row does not hide the verdict of the rows that ran
        deployed = "; ".join(failed + ([deployed] if deployed != "—" else []) + expected)
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
    """``fps.png`` and ``accuracy.png`` in ``run_dir``; returns the names written."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    written = []
    for name, figure in (("fps.png", fps_figure(plt, records, reference_fps, soc)),
                         ("accuracy.png", accuracy_figure(plt, records))):
        if figure is not None:
            figure.tight_layout()
            figure.savefig(run_dir / name, dpi=110)
            plt.close(figure)
            written.append(name)
    return written


def fps_figure(plt, records: list[dict], reference_fps: dict, soc: str | None):
    """FPS against batch size, one panel per model and profile. The seed's reference curves
    (measured at full shapes) share a panel only with full-profile figures; smoke-shape figures
    get their own panel, titled as not comparable, and the reference is drawn beside them.
    None when no row has an FPS."""
    measured = [r for r in records if finite((r.get("perf") or {}).get("fps"))]
    panels = []  # (model, profile or None for the reference-only panel)
    for model in sorted({r["model"] for r in measured}):
        profiles = sorted({r.get("profile") or "?" for r in measured if r["model"] == model})
        panels += [(model, profile) for profile in profiles]
        if FULL_PROFILE not in profiles and reference_fps.get(model):
            panels.append((model, None))
    if not panels:
        return None
    fig, axes = _panels(plt, len(panels), (4.8, 3.8))
    for ax, (model, profile) in zip(axes, panels):
        if profile is not None:
            rows = [r for r in measured if r["model"] == model and (r.get("profile") or "?") == profile]
            for backend, precision in sorted({(r["backend"], r["precision"]) for r in rows}):
                pts = sorted((r["batch_size"], r["perf"]["fps"]) for r in rows
                             if r["backend"] == backend and r["precision"] == precision)
                ax.plot(*zip(*pts), "o-", label=f"{backend} {precision} (measured)")
        if profile in (FULL_PROFILE, None):
            for table_soc, table in sorted((reference_fps.get(model) or {}).items()):
                pts = sorted((int(bs), v) for bs, v in table.items() if finite(v))
                if pts:
                    ax.plot(*zip(*pts), "s--" if table_soc == soc else ":", alpha=0.8,
                            label=f"{table_soc} (seed reference, full shapes)")
        if profile is None:
            title = f"{model}: seed reference (full shapes)"
        elif profile == FULL_PROFILE:
            title = f"{model} (measured at full shapes)"
        else:
            title = f"{model} (measured at {profile} shapes)\n{profile} shapes: not comparable with the reference"
        ax.set_title(title, fontsize=9, color="black" if profile in (FULL_PROFILE, None) else "tab:red")
        ax.set_xscale("log", base=2)
        ax.xaxis.set_major_formatter(plt.ScalarFormatter())
        ax.set_xticks(sorted({int(x) for line in ax.get_lines() for x in line.get_xdata()}))
        ax.set_ylim(0, 1.15 * max(y for line in ax.get_lines() for y in line.get_ydata()))
        ax.set_xlabel("batch size")
        ax.set_ylabel("samples / s")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=6)
    return fig


def accuracy_figure(plt, records: list[dict]):
    """PyTorch and each deployed row, one panel per model and published metric, at the model's
    smallest batch size (as the seeds publish accuracy); None when no row has one. Every bar carries its value, so a zero shows;
    the published line is drawn only where the published figure applies, and otherwise the
    panel says why not."""
    smallest = {r["model"]: min(x["batch_size"] for x in records if x["model"] == r["model"]) for r in records}
    metrics = sorted({(r["model"], name) for r in records if r["batch_size"] == smallest[r["model"]]
                      for name in (r.get("accuracy") or {}) if _published(r, name).get("published") is not None})
    if not metrics:
        return None
    fig, axes = _panels(plt, len(metrics), (4.2, 3.2))
    for ax, (model, name) in zip(axes, metrics):
        rows = [r for r in records if r["model"] == model and r["batch_size"] == smallest[model]
                and name in (r.get("accuracy") or {})]
        metric = rows[0]["accuracy"][name]
        labels = ["PyTorch"] + [f"{r['backend']}\n{r['precision']}" for r in rows]
        values = [metric.get("torch")] + [r["accuracy"][name].get("deployed") for r in rows]
        heights = [finite(v) or 0.0 for v in values]
        bars = ax.bar(range(len(values)), heights, color=["tab:blue"] + ["tab:orange"] * len(rows))
        ax.bar_label(bars, labels=[_fmt(v) for v in values], fontsize=7, padding=5)
        flat = [i for i, h in enumerate(heights) if h == 0.0]  # a zero (or NaN) bar has no height: mark it
        if flat:
            ax.plot(flat, [0.0] * len(flat), "D", color="tab:red", markersize=6, clip_on=False, zorder=3)
        applies = [r for r in rows if _published(r, name).get("verdict") in ("pass", "fail")]
        published = finite(_published(rows[0], name).get("published"))
        if published is not None and applies:
            ax.axhline(published, color="k", linestyle="--", label=f"published {published:g}")
            ax.legend(fontsize=7)
        elif published is not None:
            reason = _published(rows[0], name).get("why") or "does not apply"
            ax.text(0.02, 0.97, _wrap(f"published {published:g} not drawn: {reason}", 60), transform=ax.transAxes,
                    fontsize=6, va="top", color="0.3")
        top = max([abs(h) for h in heights] + ([published] if published is not None and applies else [])) or 1.0
        ax.set_ylim(min(0.0, min(heights)) * 1.25, top * 1.6)  # room for the labels and the note
        ax.set_xticks(range(len(values)))
        ax.set_xticklabels(labels, fontsize=7)
        better = "higher" if metric.get("higher_is_better", True) else "lower"
        unit = f" [{metric['unit']}]" if metric.get("unit") else ""
        ax.set_title(f"{model} {name}{unit} at bs{smallest[model]} ({better} is better)", fontsize=9)
    return fig


def finite(value) -> float | None:
    """A finite figure, or None (absent, NaN, infinite or not a number)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        return None
    return float(value)


def _wrap(text: str, width: int) -> str:
    import textwrap

    return "\n".join(textwrap.wrap(text, width))


def merge_runs(results_files: list[Path]) -> tuple[dict, list[dict], list[str]]:
    """One night from several invocations' results.json (e.g. accuracy under ``-n`` and perf
    without it): rows merged per key, later files winning where both hold the same field.
    Returns (header, records, notes); the notes name the merged runs and every environment or
    config entry that differs between them, since the rows then did not all run alike."""
    runs = []
    for path in results_files:
        try:
            runs.append(json.loads(Path(path).read_text()))
        except (OSError, ValueError) as err:
            raise ValueError(f"{path}: not a results.json written by this suite ({err})") from err
    if not runs:
        raise ValueError("merge needs at least one results.json")
    first = runs[0]
    merged: dict[tuple, dict] = {}
    reference_fps: dict = {}
    for run in runs:
        for record in run.get("records", []):
            _merge(merged.setdefault(record_key(record), {}), copy.deepcopy(record))
        _merge(reference_fps, copy.deepcopy(run.get("reference_fps") or {}))
    header = {k: v for k, v in first.items() if k not in ("records", "notes")}
    header.update(
        run_id="+".join(r.get("run_id", "?") for r in runs),
        finished=runs[-1].get("finished"),
        exit_status=max(r.get("exit_status", 0) for r in runs),
        artifacts_built=sum(r.get("artifacts_built", 0) for r in runs),
        peak_gflops=max((r["peak_gflops"] for r in runs if r.get("peak_gflops")), default=None),
        reference_fps=reference_fps,
        merged_from=[r.get("run_id") for r in runs])
    notes = [f"merged from {len(runs)} runs: {', '.join(str(r.get('run_id')) for r in runs)}"]
    for section in ("environment", "config"):
        for key in sorted({k for r in runs for k in (r.get(section) or {})}):
            values = [(r.get(section) or {}).get(key) for r in runs]
            if any(v != values[0] for v in values):
                notes.append(f"{section} {key} differs between the merged runs: {values}")
    notes += [f"{r.get('run_id')}: {note}" for r in runs for note in r.get("notes", [])]
    records = sorted(merged.values(), key=lambda r: tuple(r[k] for k in RECORD_KEY))
    return header, records, notes


def main(argv: list[str] | None = None) -> int:
    import argparse

    parser = argparse.ArgumentParser(prog="python -m harness.report",
                                     description="merge the results.json of several invocations into one report")
    parser.add_argument("results", type=Path, nargs="+", help="results.json files of the invocations, in order")
    parser.add_argument("--out", type=Path, required=True, help="the merged run's directory (created)")
    args = parser.parse_args(argv)
    try:
        header, records, notes = merge_runs(args.results)
    except ValueError as err:
        parser.error(str(err))
    args.out.mkdir(parents=True, exist_ok=True)
    print(write_run(args.out, header, records, notes))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
