"""The run's summary.md and plots, drawn from the records' figures and findings.

Rendering decides nothing: every verdict shown is a figure's or finding's own, and every figure
a result carries appears without an edit here (a table column per figure name, a line per
finding).
"""
from __future__ import annotations

import math
import textwrap
from pathlib import Path

from harness import perfstats
from harness.figures import Figure, FigureKind, FindingKind, Verdict, finite
from harness.records import Row, Status

FULL_PROFILE = "full"
# the figures that say the deployed outputs' element-wise agreement with PyTorch (accuracy rows'
# max_abs_diff, conformance rows' outside_tolerance): the glance table's element-wise column
ELEMENTWISE_FIGURES = ("max_abs_diff", "outside_tolerance")  # the seeds' shapes: the only profile whose FPS compares with their tables
FINDING_MARKS = {FindingKind.FAILURE: "❌ FAIL", FindingKind.EXPECTED_FAILURE: "⚠️ expected failure",
                 FindingKind.NOT_APPLICABLE: "n/a", FindingKind.NOTE: "note"}  # any other kind: its own name
MARKS = {Verdict.PASS: "✅ pass", Verdict.FAIL: "❌ FAIL", Verdict.NOT_APPLICABLE: "n/a"}


def fmt(value, digits: int = 4) -> str:
    if value is None:
        return "—"
    if isinstance(value, float):
        return "nan" if math.isnan(value) else f"{value:.{digits}g}"
    return str(value)


def mark(verdict: Verdict | str | None) -> str:
    return MARKS[Verdict(verdict)] if verdict else "—"


def row_status(row: Row) -> str:
    bs = row.key.batch_size
    if row.status is Status.EXPECTED_FAILURE:
        return f"⚠️ bs{bs} expected failure ({row.details.get('expected_failure')})"
    if row.status is Status.OOM:
        return f"❌ bs{bs} out of memory (the seed ran it)"
    return f"❌ bs{bs} error"


def _comparable_shapes(row: Row) -> bool:
    return row.key.profile == FULL_PROFILE


def _published(row: Row, metric: str) -> dict:
    """The row's published verdict for one metric: {published, value, verdict, why}, or {}."""
    return (row.part("published").get("metrics") or {}).get(metric) or {}


def _judged(row: Row, metric: str) -> bool:
    """Whether the published figure was judged for this metric (it applies to the row)."""
    verdict = _published(row, metric).get("verdict")
    return verdict is not None and Verdict(verdict) is not Verdict.NOT_APPLICABLE


def _summed(values: list) -> str:
    verdicts = {Verdict(v) for v in values if v}
    if not verdicts:
        return "—"
    if Verdict.FAIL in verdicts:
        return MARKS[Verdict.FAIL]
    return MARKS[Verdict.PASS] if Verdict.PASS in verdicts else MARKS[Verdict.NOT_APPLICABLE]


def _ran_out(row: Row) -> bool:
    """Out of memory, as the runtime said or as the seed's table expects."""
    return row.status in (Status.OOM, Status.EXPECTED_FAILURE)


def _reference_fps(row: Row, reference_fps: dict, soc: str | None):
    return ((reference_fps.get(row.key.model) or {}).get(soc) or {}).get(str(row.key.batch_size)) if soc else None


def summary_markdown(results: dict, plots: list[str], notes: list[str]) -> str:
    lines = _header_lines(results, notes)
    reference_fps, soc = results.get("reference_fps") or {}, (results.get("config") or {}).get("soc")
    by_model: dict[str, list[Row]] = {}
    for r in (Row.of(record) for record in results["records"]):
        by_model.setdefault(r.key.model, []).append(r)
    lines += ["## Verdicts at a glance", "",
              "| model | backend | weights | data | deployed vs PyTorch | element-wise | published | FPS (bs: measured / reference) |",
              "|---|---|---|---|---|---|---|---|"]
    for model, rows in by_model.items():
        for backend in sorted({r.key.backend for r in rows}):
            lines.append("| " + " | ".join(_glance(model, backend, [r for r in rows if r.key.backend == backend],
                                                      reference_fps, soc)) + " |")
    lines.append("")
    for model, rows in by_model.items():
        lines += _model_section(model, rows, reference_fps, soc)
    if plots:
        lines += ["## Plots", ""] + [f"![{Path(p).stem}]({p})" for p in plots] + [""]
    lines += HOW_MEASURED
    return "\n".join(lines)


def _header_lines(results: dict, notes: list[str]) -> list[str]:
    env, cfg = results.get("environment", {}), results.get("config", {})
    return [f"# Run {results['run_id']}", "",
            f"- backends **{', '.join(cfg.get('backends') or [])}** ({_precision_asked(cfg)}), "
            f"profile **{cfg.get('profile')}**, soc {cfg.get('soc') or 'none (perf recorded, not gated)'}",
            f"- machine: {env.get('cpu')} ({env.get('cores')} cores), python {env.get('python')}, "
            f"torch {env.get('torch')}, onnxruntime {env.get('onnxruntime')}, openvino {env.get('openvino')}; "
            f"commit {results.get('commit', 'unknown')}",
            f"- {_conversions(results.get('artifacts_built', 0))}",
            f"- started {results.get('started')}, finished {results.get('finished')}",
            *[f"- {n}" for n in notes], ""]


def _precision_asked(config: dict) -> str:
    asked = config.get("precision")
    return f"precision asked: {asked}" if asked else "each backend at its default precision"


def _conversions(built: int) -> str:
    if not built:
        return "artifacts converted in this run: none (every conversion came from the cache)"
    return f"artifacts converted in this run: {built} (the others came from the cache)"


def _model_section(model: str, rows: list[Row], reference_fps: dict, soc: str | None) -> list[str]:
    lines = [f"## {model}", ""]
    w = rows[0].part("weights")
    lines.append("- weights: " + " ".join(str(v) for v in (w.get("source"), (w.get("sha256") or "")[:16], w.get("note")) if v))
    d = next((r.part("data") for r in rows if r.part("data")), {})
    if d:
        lines.append(f"- data: {'generated' if d.get('generated') else 'real'} at `{d.get('root')}`, "
                     f"{d.get('read')}/{d.get('listed')} items read, {d.get('samples')} samples, "
                     f"missing {d.get('missing')}, failed {len(d.get('failed') or {})}"
                     + (f" ({', '.join(d['failed'])})" if d.get("failed") else ""))
    for r in rows:
        if r.error:
            lines.append(f"- {r.key.backend} {row_status(r)}: {r.error}")
    shown = set()  # a finding every row shares (the published figures not applying) once per model
    for r in rows:
        for finding in sorted(r.findings, key=lambda f: list(FindingKind).index(f.kind)):
            said = f"{FINDING_MARKS.get(finding.kind, finding.kind.value)} ({finding.part}) {finding}"
            if finding.kind is FindingKind.NOT_APPLICABLE:
                if said not in shown:
                    lines.append(f"- {said}")
                shown.add(said)
            else:
                lines.append(f"- {r.key.backend} bs{r.key.batch_size} {said}")
    lines += _accuracy_table(rows) + _checks_table(rows) + _perf_table(rows, reference_fps, soc)
    return lines + [""]


def _accuracy_table(rows: list[Row]) -> list[str]:
    lines = []
    for r in rows:
        k = r.key
        for f in r.figures:
            if f.part == "accuracy" and f.kind is FigureKind.ACCURACY:
                pub = _published(r, f.name)
                why = f" ({pub.get('why')})" if _judged(r, f.name) else ""
                delta = f.value - f.reference if f.value is not None and f.reference is not None else None
                lines.append(f"| {k.backend} | {k.batch_size} | {k.precision} | {f.name} | {fmt(f.reference)} | "
                             f"{fmt(f.value)} | {fmt(delta, 3)} | {fmt(f.tolerance)} | {mark(f.verdict)} | "
                             f"{fmt(pub.get('published'))} | {mark(pub.get('verdict'))}{why} |")
    head = ["", "| backend | bs | precision | metric | PyTorch | deployed | delta | tolerance | verdict | published | "
                "published verdict |", "|---|---|---|---|---|---|---|---|---|---|---|"]
    return head + lines if lines else []


def _checks_table(rows: list[Row]) -> list[str]:
    """Every judged figure besides the metrics (agreement with PyTorch in the task's terms, ...)."""
    lines = []
    for r in rows:
        k, picture = r.key, r.details.get("worst_sample_picture")
        # the picture lies in <run>/divergence/<row>/, beside this summary's folder
        shown = f"[picture](divergence/{Path(picture).parent.name}/{Path(picture).name})" if picture else "—"
        for f in r.figures:
            if f.part in ("accuracy", "conformance") and f.kind is not FigureKind.ACCURACY:
                bound = (">= " if f.higher_is_better else "<= ") + f"{fmt(f.reference)} ({f.reference_name})" \
                    if f.reference is not None else "—"
                lines.append(f"| {k.backend} | {k.batch_size} | {k.precision} | {f.name} | "
                             f"{fmt(f.value)}{f.unit} | {bound} | {mark(f.verdict)} | {shown} |")
    for r in rows:
        if r.details.get("localisation"):
            lines.append(f"- {r.key.backend} bs{r.key.batch_size}: {r.details['localisation']}")
    head = ["", "Deployed against PyTorch on the same samples, in the task's terms (meaningful with seeded weights):",
            "", "| backend | bs | precision | statistic | value | limit | verdict | worst sample |",
            "|---|---|---|---|---|---|---|---|"]
    return head + lines if lines else []


def _perf_table(rows: list[Row], reference_fps: dict, soc: str | None) -> list[str]:
    perf_rows = [r for r in rows if r.part("perf") or _ran_out(r)]
    names: list[str] = []
    for r in perf_rows:
        names += [f.name for f in r.figures if f.part == "perf" and f.name not in names]
    if not perf_rows:
        return []
    lines = ["", "| backend | bs | precision | " + " | ".join(names) + " | reference FPS | rounds | audit |",
             "|---|---|---|" + "---|" * (len(names) + 3)]
    for r in perf_rows:
        reference, k = _reference_fps(r, reference_fps, soc), r.key
        if not r.part("perf"):
            expected = " (expected)" if r.status is Status.EXPECTED_FAILURE else ""
            lines.append(f"| {k.backend} | {k.batch_size} | {k.precision} | {row_status(r)}{expected}: "
                         f"{r.error} |" + " |" * len(names) + f" {fmt(reference)} | | |")
            continue
        shown = {f.name: f for f in r.figures if f.part == "perf"}
        cells = [_perf_cell(shown.get(n), r) for n in names]
        p = r.part("perf")
        lines.append(f"| {k.backend} | {k.batch_size} | {k.precision} | " + " | ".join(cells)
                     + f" | {fmt(reference)} | {p.get('rounds')} (+{p.get('warmup')} warm-up) | {p.get('audit', '—')} |")
    return lines


def _perf_cell(figure: Figure | None, row: Row) -> str:
    if figure is None:
        return "—"
    if figure.name == "reference_ratio" and not _comparable_shapes(row):
        return f"— ({row.key.profile} shapes)"
    rounds = row.part("perf").get("rounds_ms") or []
    if figure.name == "fps" and figure.value is not None and len(rounds) >= 2:
        _, low, high = perfstats.fps_interval(rounds, row.key.batch_size)
        return f"{fmt(figure.value)} [{fmt(low)}–{fmt(high)}]"  # the median round's FPS, its 95 % interval
    return fmt(figure.value)


def _glance(model: str, backend: str, rows: list[Row], reference_fps: dict, soc: str | None) -> list[str]:
    errors = [r for r in rows if r.error]
    elementwise = _summed([f.verdict for r in rows for f in r.figures if f.name in ELEMENTWISE_FIGURES])
    reasons = {r.part("published").get("reason") for r in rows if r.part("published") and not r.part("published").get("applies")}
    published = _summed([m.get("verdict") for r in rows for m in (r.part("published").get("metrics") or {}).values()])
    if published == MARKS[Verdict.NOT_APPLICABLE] and reasons:  # the short form; the model's section has the full reasons
        short = {part.split(" (")[0] for reason in reasons if reason for part in reason.split("; ")}
        published = "n/a: " + ", ".join(sorted(short))
    fps = []
    for r in sorted((r for r in rows if r.part("perf") or _ran_out(r)), key=lambda r: r.key.batch_size):
        measured = r.figure("perf", "fps")
        shown = "oom" if _ran_out(r) else fmt(measured.value if measured else None, 3)
        fps.append(f"{r.key.batch_size}: {shown} / {fmt(_reference_fps(r, reference_fps, soc), 4)}")
    smoke = sorted({r.key.profile or "?" for r in rows if r.part("perf") and not _comparable_shapes(r)})
    if fps and smoke:
        fps.append(f"measured at {'/'.join(smoke)} shapes: not comparable with the reference (full shapes)")
    w = rows[0].part("weights")
    d = next((r.part("data") for r in rows if r.part("data")), {})
    precisions = ",".join(sorted({r.key.precision for r in rows}))
    deployed = _summed([r.part("accuracy").get("verdict") for r in rows if r.part("accuracy")])
    if errors:
        statuses = [row_status(r) for r in errors]
        failed = [s for s in statuses if s.startswith("❌")]
        expected = [s for s in statuses if not s.startswith("❌")]
        # failures first; an expected failure does not hide the verdict of the rows that ran
        deployed = "; ".join(failed + ([deployed] if deployed != "—" else []) + expected)
    return [model, f"{backend} ({precisions})", w.get("source", "—"),
            "generated" if d.get("generated") else ("real" if d else "—"),
            deployed, elementwise, published, "; ".join(fps) or "—"]


HOW_MEASURED = [
    "## How figures were measured", "",
    "- FPS = batch size / median wall time of one `session.run` on a prepared batch (inputs already in memory, "
    "outputs returned), after warm-up rounds, with the 95 % interval of the median in brackets (the rounds go on "
    "until it is within ±1 % or --perf-budget is spent); latency percentiles over the timed rounds. Compute-only FPS = "
    "1000 · batch / mean device compute ms, as ais_bench states it, where the runtime reports it. Every round's "
    "times are checked (finite, positive, compute within the round's wall time) and every round's outputs "
    "audited (the first against PyTorch, the others against the first).",
    "- GFLOP/s = GFLOPs per sample (Conv/ConvTranspose/MatMul/Gemm multiply-adds × 2, every kernel tap, counted "
    "once from the ONNX graph; 'useful' leaves out the taps on zero padding) × FPS; 'fraction_of_peak' divides by "
    "the device's peak at the precision that ran (documented, or measured where the clock is unknown: named in "
    "results.json); 'fraction_of_roofline' by min(peak, arithmetic intensity × measured triad bandwidth), the "
    "intensity counting weights once per batch and every activation written and read once.",
    "- Accuracy: the same samples go through PyTorch and the deployed artifact in lockstep; "
    "'delta' = deployed − PyTorch, judged by the model spec's tolerance for the precision the runtime actually ran at.",
    "- Published figures apply only with the real checkpoint and the complete dataset; otherwise the reason is given.", ""]


def _panels(plt, count: int, size: tuple[float, float]):
    """A figure with ``count`` panels, up to three per row; returns (figure, the used axes)."""
    cols = min(3, count)
    rows = -(-count // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(size[0] * cols, size[1] * rows), squeeze=False)
    for ax in axes.flat[count:]:
        ax.set_visible(False)
    return fig, list(axes.flat[:count])


def write_plots(run_dir: Path, rows: list[Row], reference_fps: dict, soc: str | None) -> list[str]:
    """``fps.png``, ``accuracy.png`` and ``roofline.png`` in ``run_dir``; returns the names written."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from harness.pictures import roofline_figure

    written = []
    for name, figure in (("fps.png", fps_figure(plt, rows, reference_fps, soc)),
                         ("accuracy.png", accuracy_figure(plt, rows)),
                         ("roofline.png", roofline_figure(plt, rows))):
        if figure is not None:
            figure.tight_layout()
            figure.savefig(run_dir / name, dpi=110)
            plt.close(figure)
            written.append(name)
    return written


def _fps(row: Row) -> float | None:
    measured = row.figure("perf", "fps")
    return finite(measured.value) if measured is not None else None


def fps_figure(plt, rows: list[Row], reference_fps: dict, soc: str | None):
    """FPS against batch size, one panel per model and profile. The seed's reference curves
    (measured at full shapes) share a panel only with full-profile figures; smoke-shape figures
    get their own panel, titled as not comparable, and the reference is drawn beside them.
    None when no row has an FPS."""
    measured = [r for r in rows if _fps(r) is not None]
    panels = []  # (model, profile or None for the reference-only panel)
    for model in sorted({r.key.model for r in measured}):
        profiles = sorted({r.key.profile or "?" for r in measured if r.key.model == model})
        panels += [(model, profile) for profile in profiles]
        if FULL_PROFILE not in profiles and reference_fps.get(model):
            panels.append((model, None))
    if not panels:
        return None
    fig, axes = _panels(plt, len(panels), (4.8, 3.8))
    for ax, (model, profile) in zip(axes, panels):
        if profile is not None:
            mine = [r for r in measured if r.key.model == model and (r.key.profile or "?") == profile]
            for backend, precision in sorted({(r.key.backend, r.key.precision) for r in mine}):
                pts = sorted((r.key.batch_size, _fps(r)) for r in mine
                             if r.key.backend == backend and r.key.precision == precision)
                ax.plot(*zip(*pts), "o-", label=f"{backend} {precision} (measured)")
        if profile in (FULL_PROFILE, None):
            for table_soc, table in sorted((reference_fps.get(model) or {}).items()):
                pts = sorted((int(bs), v) for bs, v in table.items() if finite(v))
                if pts:
                    ax.plot(*zip(*pts), "s--" if table_soc == soc else ":", alpha=0.8,
                            label=f"{table_soc} (seed reference, full shapes)")
        _fps_axes(plt, ax, model, profile)
    return fig


def _fps_axes(plt, ax, model: str, profile: str | None) -> None:
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


def accuracy_figure(plt, rows: list[Row]):
    """PyTorch and each deployed row, one panel per model and published metric, at the model's
    smallest batch size (as the seeds publish accuracy); None when no row has one. Every bar
    carries its value, so a zero shows; the published line is drawn only where the published
    figure applies, and otherwise the panel says why not."""
    smallest = {r.key.model: min(x.key.batch_size for x in rows if x.key.model == r.key.model) for r in rows}
    metrics = sorted({(r.key.model, f.name) for r in rows if r.key.batch_size == smallest[r.key.model]
                      for f in r.figures if f.part == "accuracy" and f.kind is FigureKind.ACCURACY
                      and _published(r, f.name).get("published") is not None})
    if not metrics:
        return None
    fig, axes = _panels(plt, len(metrics), (4.2, 3.2))
    for ax, (model, name) in zip(axes, metrics):
        mine = [(r, r.figure("accuracy", name)) for r in rows
                if r.key.model == model and r.key.batch_size == smallest[model] and r.figure("accuracy", name)]
        _accuracy_panel(ax, model, name, smallest[model], mine)
    return fig


def _accuracy_panel(ax, model: str, name: str, bs: int, mine: list[tuple[Row, Figure]]) -> None:
    first = mine[0][1]
    labels = ["PyTorch"] + [f"{r.key.backend}\n{r.key.precision}" for r, _ in mine]
    values = [first.reference] + [f.value for _, f in mine]
    heights = [finite(v) or 0.0 for v in values]
    bars = ax.bar(range(len(values)), heights, color=["tab:blue"] + ["tab:orange"] * len(mine))
    ax.bar_label(bars, labels=[fmt(v) for v in values], fontsize=7, padding=5)
    flat = [i for i, h in enumerate(heights) if h == 0.0]  # a zero (or absent) bar has no height: mark it
    if flat:
        ax.plot(flat, [0.0] * len(flat), "D", color="tab:red", markersize=6, clip_on=False, zorder=3)
    pub = _published(mine[0][0], name)
    applies = [r for r, _ in mine if _judged(r, name)]
    published = finite(pub.get("published"))
    if published is not None and applies:
        ax.axhline(published, color="k", linestyle="--", label=f"published {published:g}")
        ax.legend(fontsize=7)
    elif published is not None:
        reason = pub.get("why") or "does not apply"
        ax.text(0.02, 0.97, "\n".join(textwrap.wrap(f"published {published:g} not drawn: {reason}", 60)),
                transform=ax.transAxes, fontsize=6, va="top", color="0.3")
    top = max([abs(h) for h in heights] + ([published] if published is not None and applies else [])) or 1.0
    ax.set_ylim(min(0.0, min(heights)) * 1.25, top * 1.6)  # room for the labels and the note
    ax.set_xticks(range(len(values)))
    ax.set_xticklabels(labels, fontsize=7)
    unit = f" [{first.unit}]" if first.unit else ""
    ax.set_title(f"{model} {name}{unit} at bs{bs} ({'higher' if first.higher_is_better else 'lower'} is better)",
                 fontsize=9)
