"""The last nights, drawn: each row's gated figures over the nights, with the pinned reference
and its band, the published line, and the nights that failed, so that a drift reads as a picture
that says since when and how much.

    python -m harness.history history/*/results.json night/results.json \\
        --references references/pinned.yaml --out night/history [--last 14] [--fps-regression 0.3]

Writes ``<out>/drift.png`` (every pinned figure of every row against its pin, in units of its
allowance), ``<out>/<row>.png`` (one panel per figure) and ``<out>/history.md`` (a table: pinned,
latest, change, outside the band since; the pictures linked).
"""
from __future__ import annotations

import argparse
import sys
import textwrap
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from harness import gate, records
from harness import references as refs
from harness.references import gated_figures, published_values
from harness.results import finite
from video_model_conformance import DEFAULT_FPS_REGRESSION

FAILED_STATUSES = ("fail", "error")
DRIFT_COLOURS = ["tab:red", "tab:orange", "tab:purple", "tab:brown", "tab:pink", "tab:blue", "tab:olive"]  # no green: the band


@dataclass(frozen=True)
class Night:
    path: Path
    run_id: str
    label: str  # its date, with the time where two of the nights drawn share a date
    records: dict[tuple, dict] = field(repr=False)  # by references.row_key


def _started(data: dict) -> datetime | None:
    try:
        return datetime.fromisoformat(str(data.get("started")))
    except ValueError:
        return None


def load_nights(paths: list[Path], last: int | None = None) -> list[Night]:
    """Each results.json (or a folder holding one) as a night, oldest first, the last ``last`` kept;
    :class:`records.ResultsFormatError` names a file that cannot be read."""
    found = {}
    for path in paths:
        path = Path(path)
        path = path / "results.json" if path.is_dir() else path
        data = records.load_results(path)
        found[str(data.get("run_id") or path.parent.name)] = (path, _started(data), data["records"])
    ordered = sorted(found.items(), key=lambda item: (item[1][1] is not None, item[1][1] or datetime.min, item[0]))
    ordered = ordered[-last:] if last else ordered
    dates = [started.date() for _, (_, started, _) in ordered if started]
    return [Night(path, run_id,
                  started.strftime("%m-%d %H:%M" if dates.count(started.date()) > 1 else "%m-%d") if started else run_id[:16],
                  {refs.row_key(r): r for r in rows})
            for run_id, (path, started, rows) in ordered]


@dataclass
class FigureHistory:
    name: str  # 'part/name'
    unit: str
    kind: str
    higher_is_better: bool
    values: list[float | None]  # per night; None: absent or not finite
    pinned: float | None = None
    band: tuple[float, float] | None = None  # the pinned band (low, high)
    published: float | None = None

    def outside(self, value: float | None) -> bool:
        return value is not None and self.band is not None and not self.band[0] <= value <= self.band[1]

    def since(self) -> int | None:
        """The first night of the unbroken run of nights outside the pinned band that reaches the
        last night (None: the last night is inside, or nothing is pinned)."""
        start = None
        for night, value in enumerate(self.values):
            start = (night if start is None else start) if self.outside(value) else None
        return start

    def change(self) -> str:
        latest = next((v for v in reversed(self.values) if v is not None), None)
        if latest is None or self.pinned is None:
            return ""
        if self.kind == "speed" and self.pinned:
            return f"{latest / self.pinned - 1:+.1%}"
        return f"{latest - self.pinned:+.3g}{self.unit}"


@dataclass
class RowHistory:
    key: tuple
    figures: dict[str, FigureHistory]
    failed: list[str | None]  # per night: why the row failed that night, None where it did not
    present: list[bool]
    pin: refs.Pin | None

    @property
    def slug(self) -> str:
        model, backend, precision, bs, profile, soc = self.key
        return f"{model}-{backend}-{precision}-bs{bs}-{profile}-{soc or 'nosoc'}"


def _band(figure: dict, pinned: float, fps_fraction: float) -> tuple[float, float] | None:
    if figure.get("kind") == "speed":
        return pinned * (1 - fps_fraction), pinned * (1 + fps_fraction)
    tolerance = finite(figure.get("tolerance"))
    return (pinned - tolerance, pinned + tolerance) if tolerance is not None else None


def row_histories(nights: list[Night], references: refs.References | None, fps_fraction: float = DEFAULT_FPS_REGRESSION,
                  soc_fractions: dict[str, float] | None = None) -> list[RowHistory]:
    """Every row seen in any night, its gated figures night by night, and the nights it failed:
    its own verdict did not pass, or the gate against its pin (or, unpinned, the night before) failed."""
    soc_fractions = soc_fractions or {}
    rows = []
    for key in sorted({k for n in nights for k in n.records}, key=lambda k: tuple(str(v) for v in k)):
        fraction = soc_fractions.get(key[5], fps_fraction)
        pin = references.pins.get(key) if references else None
        names = sorted({name for n in nights if key in n.records for name in gated_figures(n.records[key])}
                       | set(pin.figures if pin else ()))
        figures = {}
        for name in names:
            seen = [gated_figures(n.records[key]).get(name) for n in nights if key in n.records] + \
                   ([pin.figures[name]] if pin and name in pin.figures else [])
            first = next(f for f in seen if f)
            history = FigureHistory(name, first.get("unit") or "", first.get("kind"), first.get("higher_is_better", True),
                                    [finite((gated_figures(n.records[key]).get(name) or {}).get("value"))
                                     if key in n.records else None for n in nights])
            if pin and name in pin.figures:
                history.pinned = pin.figures[name]["value"]
                history.band = _band(pin.figures[name], history.pinned, fraction)
            short = name.split("/", 1)[1]
            history.published = next((published_values(n.records[key])[short] for n in reversed(nights)
                                      if key in n.records and short in published_values(n.records[key])), None)
            figures[name] = history
        failed, previous = [], None
        for night in nights:
            record = night.records.get(key)
            if record is None:
                failed.append(None)
                continue
            judged = gate.Baseline(references, records.Run(night.path, {}, {key[:4]: previous} if previous else {}))
            failing = [str(f) for f in judged.judge(key[:4], record, fraction) if f.failing]
            if record.get("status") in FAILED_STATUSES:
                failing.insert(0, f"its own verdict: {record['status']}")
            failed.append("; ".join(failing) or None)
            previous = record
        rows.append(RowHistory(key, figures, failed, [key in n.records for n in nights], pin))
    return rows


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _title(figure: FigureHistory, nights: list[Night]) -> str:
    unit = f" [{figure.unit}]" if figure.unit else ""
    if figure.pinned is None:
        return f"{figure.name}{unit}: no pinned reference"
    since = figure.since()
    if since is None:
        return f"{figure.name}{unit}: inside the pinned band ({figure.change()} vs pinned)"
    return (f"{figure.name}{unit}: {figure.change()} vs pinned, outside the band since {nights[since].label} "
            f"({len(nights) - since} night(s))")


def draw_row(row: RowHistory, nights: list[Night], path: Path) -> Path:
    plt = _plt()
    x = list(range(len(nights)))
    fig, axes = plt.subplots(len(row.figures), 1, figsize=(max(8.0, 0.7 * len(nights) + 3), 2.6 * len(row.figures)),
                             sharex=True, squeeze=False)
    for ax, figure in zip(axes[:, 0], row.figures.values()):
        if figure.band is not None:
            ax.axhspan(*figure.band, color="tab:green", alpha=0.12, label="pinned band")
        if figure.pinned is not None:
            ax.axhline(figure.pinned, color="tab:green", lw=1.5, label=f"pinned {figure.pinned:.4g} (run {row.pin.run})")
        if figure.published is not None:
            ax.axhline(figure.published, color="tab:purple", ls="--", lw=1.2, label=f"published {figure.published:.4g}")
        ax.plot(x, [float("nan") if v is None else v for v in figure.values], "-o", color="tab:blue", ms=4,
                label="night by night")
        out = [(i, v) for i, v in enumerate(figure.values) if figure.outside(v)]
        if out:
            ax.plot(*zip(*out), "o", color="tab:red", ms=6, label="outside the pinned band")
        since = figure.since()
        if since is not None:
            ax.axvline(since - 0.5, color="tab:red", ls=":", lw=1.2)
        for night, why in enumerate(row.failed):
            if why:
                ax.axvspan(night - 0.45, night + 0.45, color="tab:red", alpha=0.08, lw=0)
        for night, present in enumerate(row.present):
            if not present:
                ax.axvspan(night - 0.45, night + 0.45, color="grey", alpha=0.15, lw=0)
        ax.ticklabel_format(axis="y", useOffset=False)
        ax.set_title(textwrap.fill(_title(figure, nights), 100), fontsize=9, loc="left",
                     color="tab:red" if since is not None else "black")
        ax.set_ylabel(figure.unit or figure.name.split("/")[1], fontsize=8)
        ax.tick_params(labelsize=7)
        ax.legend(fontsize=6, loc="best")
    failed = [nights[i].label for i, why in enumerate(row.failed) if why]
    fig.suptitle(refs.row_label(row.key) + (f"\nfailed nights (shaded red): {', '.join(failed)}" if failed else ""),
                 fontsize=10)
    axes[-1, 0].set_xticks(x, [n.label for n in nights], rotation=45, fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def draw_drift(rows: list[RowHistory], nights: list[Night], path: Path) -> Path | None:
    """Every pinned figure of every row against its pin, in units of its allowance: 0 is the pin,
    -1 the band's edge on the worse side. A line below -1 is a drift the gate holds red."""
    lines = []
    for row in rows:
        for figure in row.figures.values():
            if figure.band is None or figure.pinned is None:
                continue
            half = (figure.band[1] - figure.band[0]) / 2 or 1.0
            sign = 1 if figure.higher_is_better else -1
            lines.append((f"{refs.row_label(row.key).split(' (')[0]} {figure.name}",
                          [float("nan") if v is None else sign * (v - figure.pinned) / half for v in figure.values],
                          figure.since() is not None))
    if not lines:
        return None
    plt = _plt()
    fig, ax = plt.subplots(figsize=(max(7.0, 0.7 * len(nights) + 4), 4.5))
    ax.axhspan(-1, 1, color="tab:green", alpha=0.12, label="inside the pinned band")
    ax.axhline(0, color="tab:green", lw=1)
    colours = iter(DRIFT_COLOURS * len(lines))
    for label, values, drifted in lines:
        ax.plot(range(len(nights)), values, "-o", ms=3, lw=2 if drifted else 0.8,
                color=next(colours) if drifted else "grey", alpha=1 if drifted else 0.5, label=label if drifted else None)
    ax.set_xticks(range(len(nights)), [n.label for n in nights], rotation=45, fontsize=7)
    ax.set_ylabel("change vs pinned, in allowances\n(-1: the band's edge on the worse side)")
    ax.set_title(f"{len(lines)} pinned figure(s) over {len(nights)} night(s); outside the band now: "
                 f"{sum(d for _, _, d in lines)} (named)", fontsize=9, loc="left")
    ax.legend(fontsize=6, loc="lower left")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def write_history(nights: list[Night], references: refs.References | None, out: Path, fps_fraction: float = DEFAULT_FPS_REGRESSION,
                  soc_fractions: dict[str, float] | None = None) -> Path:
    """The pictures and ``history.md`` in ``out``; returns the markdown's path."""
    out.mkdir(parents=True, exist_ok=True)
    rows = row_histories(nights, references, fps_fraction, soc_fractions)
    drift = draw_drift(rows, nights, out / "drift.png")
    lines = [f"## History: {len(nights)} night(s), {nights[0].label} to {nights[-1].label}", ""]
    if references is None or not references.pins:
        lines += ["No pinned references: each night is judged against the one before it only.", ""]
    if drift:
        lines += ["![every pinned figure against its pin](drift.png)", ""]
    lines += ["| row | figure | pinned | latest | change | outside the pinned band since | failed nights |",
              "|---|---|---|---|---|---|---|"]
    for row in rows:
        failed = ", ".join(nights[i].label for i, why in enumerate(row.failed) if why) or "none"
        for figure in row.figures.values():
            latest = next((v for v in reversed(figure.values) if v is not None), None)
            since = figure.since()
            lines.append(" | ".join([
                f"| {refs.row_label(row.key)}", figure.name,
                "none" if figure.pinned is None else f"{figure.pinned:.4g}",
                "none" if latest is None else f"{latest:.4g}", figure.change() or "",
                "" if since is None else f"**{nights[since].label}** ({nights[since].run_id})", failed]) + " |")
    lines.append("")
    for row in rows:
        draw_row(row, nights, out / f"{row.slug}.png")
        lines += [f"![{refs.row_label(row.key)}]({row.slug}.png)", ""]
    path = out / "history.md"
    path.write_text("\n".join(lines))
    return path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m harness.history", description=__doc__.splitlines()[0])
    parser.add_argument("results", type=Path, nargs="+", help="the nights' results.json files (or their folders)")
    parser.add_argument("--references", type=Path, help="pinned references (e.g. references/pinned.yaml)")
    parser.add_argument("--out", type=Path, required=True, help="folder for the pictures and history.md")
    parser.add_argument("--last", type=int, default=None, metavar="N", help="only the last N nights")
    parser.add_argument("--fps-regression", action="append", default=[], metavar="F|SOC=F",
                        help=f"the speed band around a pin, as the gate's (default {DEFAULT_FPS_REGRESSION})")
    args = parser.parse_args(argv)
    if args.last is not None and args.last < 1:
        parser.error(f"--last {args.last}: give at least one night")
    try:
        fps_fraction, soc_fractions = gate.parse_fps_regression(args.fps_regression)
        nights = load_nights(args.results, args.last)
        references = refs.load(args.references) if args.references else None
    except ValueError as err:
        parser.error(str(err))
    print(write_history(nights, references, args.out, fps_fraction, soc_fractions))
    return 0


if __name__ == "__main__":
    sys.exit(main())
