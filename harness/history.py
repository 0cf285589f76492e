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

from harness import gate, perfstats, records
from harness import references as refs
from harness.defaults import DEFAULT_FPS_REGRESSION
from harness.figures import FigureKind, finite
from harness.records import Row, RowKey, Run

DRIFT_COLOURS = ["tab:red", "tab:orange", "tab:purple", "tab:brown", "tab:pink", "tab:blue", "tab:olive"]  # no green: the band
DRIFT_CLIP = 4.0  # allowances: drift.png's scale; a value beyond is drawn at the edge with its value written


@dataclass(frozen=True)
class Night:
    path: Path
    run_id: str
    label: str  # its date, with the time where two of the nights drawn share a date
    rows: dict[RowKey, Row] = field(repr=False)  # by RowKey.in_run: a night's row of each key
    unreadable: str = ""  # why the file could not be read ('' when it was): a failed night, named


def _started(data: dict) -> datetime | None:
    try:
        return datetime.fromisoformat(str(data.get("started")))
    except ValueError:
        return None


def _read(path: Path) -> tuple[str, datetime | None, list[Row], str, str]:
    """(run id, start, rows, why not a night, why unreadable) of one results.json."""
    try:
        data = records.load_results(path)
    except records.ResultsFormatError as err:
        return path.parent.name, None, [], "", str(err)
    partial = "; ".join(data.get("partial") or [])
    return str(data.get("run_id") or path.parent.name), _started(data), [Row.of(r) for r in data["records"]], partial, ""


def load_nights(paths: list[Path], last: int | None = None) -> tuple[list[Night], list[str]]:
    """Each results.json (or a folder holding one) that is a night, oldest first, the last
    ``last`` kept, and a line for each run left out because it is not a night (a partial run:
    --limit, a marker or model subset). A file that cannot be read is a night that failed,
    named with why: one bad file never stops the history."""
    found, skipped = {}, []
    for path in paths:
        path = Path(path)
        path = path / "results.json" if path.is_dir() else path
        run_id, started, rows, partial, unreadable = _read(path)
        if partial:
            skipped.append(f"{run_id} ({path}): not a night: {partial}")
            continue
        found[run_id] = (path, started, rows, unreadable)
    ordered = sorted(found.items(), key=lambda item: (item[1][1] is not None, item[1][1] or datetime.min, item[0]))
    ordered = ordered[-last:] if last else ordered
    dates = [started.date() for _, (_, started, _, _) in ordered if started]
    nights = [Night(path, run_id,
                    started.strftime("%m-%d %H:%M" if dates.count(started.date()) > 1 else "%m-%d") if started else run_id[:16],
                    {r.key.in_run: r for r in rows}, unreadable)
              for run_id, (path, started, rows, unreadable) in ordered]
    return nights, skipped


@dataclass
class FigureHistory:
    name: str  # 'part/name'
    unit: str
    kind: FigureKind
    higher_is_better: bool
    values: list[float | None]  # per night; None: absent or not finite (drawn as missing)
    pinned: float | None = None
    band: tuple[float, float] | None = None  # the pinned band (low, high)
    published: float | None = None  # where the published figure applies to the row
    spreads: list[float | None] = field(default_factory=list)  # per night: a speed's relative noise over its rounds

    def steps(self) -> list[perfstats.Step]:
        """The changes of level over the nights (asv-style step detection; failed and missing
        nights skipped), each named by the night it began."""
        try:
            return perfstats.detect_steps(self.values, self.spreads or None)
        except ValueError:
            return []

    def outside(self, value: float | None) -> bool:
        return value is not None and self.band is not None and not self.band[0] <= value <= self.band[1]

    def since(self) -> int | None:
        """The first night of the run of nights outside the pinned band that reaches the last
        measured night; nights without a value (failed, missing) neither break nor start it.
        None: the last measured night is inside, or nothing is pinned."""
        start = None
        for night, value in enumerate(self.values):
            if value is None:
                continue
            start = (night if start is None else start) if self.outside(value) else None
        return start

    def latest(self) -> float | None:
        return next((v for v in reversed(self.values) if v is not None), None)

    def change(self) -> str:
        latest = self.latest()
        if latest is None or self.pinned is None:
            return ""
        if self.kind is FigureKind.SPEED and self.pinned:
            return f"{latest / self.pinned - 1:+.1%}"
        return f"{latest - self.pinned:+.3g}{self.unit}"


@dataclass
class RowHistory:
    key: RowKey
    figures: dict[str, FigureHistory]
    failed: list[str | None]  # per night: why the row failed that night (missing included), None where it did not
    present: list[bool]
    pin: refs.Pin | None

    @property
    def slug(self) -> str:
        k = self.key
        return f"{k.model}-{k.backend}-{k.precision}-bs{k.batch_size}-{k.profile}-{k.soc or 'nosoc'}"


def _band(figure, pinned: float, fps_fraction: float) -> tuple[float, float] | None:
    if figure.kind is FigureKind.SPEED:
        return pinned * (1 - fps_fraction), pinned * (1 + fps_fraction)
    tolerance = finite(figure.tolerance)
    return (pinned - tolerance, pinned + tolerance) if tolerance is not None else None


def _figure_history(name: str, key: RowKey, nights: list[Night], pin: refs.Pin | None, fraction: float) -> FigureHistory:
    seen = [n.rows[key].gated.get(name) for n in nights if key in n.rows] + [pin.figures.get(name) if pin else None]
    first = next(f for f in seen if f)
    history = FigureHistory(name, first.unit, first.kind, first.higher_is_better,
                            [finite(n.rows[key].gated[name].value) if key in n.rows and name in n.rows[key].gated
                             else None for n in nights])
    if first.kind is FigureKind.SPEED:
        history.spreads = [_spread(n.rows.get(key)) for n in nights]
    if pin and name in pin.figures:
        history.pinned = pin.figures[name].value
        history.band = _band(pin.figures[name], history.pinned, fraction)
    short = name.split("/", 1)[1]
    history.published = next((refs.published_values(n.rows[key])[short] for n in reversed(nights)
                              if key in n.rows and short in refs.published_values(n.rows[key])), None)
    return history


def _spread(row: Row | None) -> float | None:
    rounds = gate.rounds_of(row)
    return perfstats.relative_spread(rounds) if len(rounds) >= gate.MIN_ROUNDS else None


def _failed_nights(key: RowKey, nights: list[Night], references: refs.References | None, fraction: float) -> list[str | None]:
    """Per night, why the row failed it: its own verdict, the gate against its pin (or, unpinned,
    the night before it ran), or absent from a night that ran (a file that could not be read included)."""
    failed, previous = [], None
    first = next(i for i, night in enumerate(nights) if key in night.rows)
    for number, night in enumerate(nights):
        row = night.rows.get(key)
        if night.unreadable:
            failed.append(f"the night's results could not be read: {night.unreadable}")
            continue
        if row is None:  # before the row's first night it did not exist yet; after, it went missing
            failed.append("missing: the night has no row of it" if number > first else None)
            continue
        judged = gate.Baseline(references, Run.of_rows(night.path, [previous] if previous else []))
        failing = [str(f) for f in judged.judge(row, fraction, header={"config": {}}) if f.failing]
        failed.append("; ".join(failing) or None)
        previous = row
    return failed


def row_histories(nights: list[Night], references: refs.References | None, fps_fraction: float = DEFAULT_FPS_REGRESSION,
                  soc_fractions: dict[str, float] | None = None) -> list[RowHistory]:
    """Every row seen in any night, its gated figures night by night, and the nights it failed."""
    soc_fractions = soc_fractions or {}
    rows = []
    for key in sorted({k for n in nights for k in n.rows}, key=RowKey.sort_key):
        latest = next(n.rows[key] for n in reversed(nights) if key in n.rows)
        fraction = soc_fractions.get(latest.key.soc, fps_fraction)
        pin = references.match(latest.key).pin if references else None
        names = sorted({name for n in nights if key in n.rows for name in n.rows[key].gated} | set(pin.figures if pin else ()))
        figures = {name: _figure_history(name, key, nights, pin, fraction) for name in names}
        rows.append(RowHistory(latest.key, figures, _failed_nights(key, nights, references, fraction),
                               [key in n.rows for n in nights], pin))
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
    last = "" if figure.values[-1] is not None else f"; no value on the last night ({nights[-1].label})"
    if since is None:
        return f"{figure.name}{unit}: inside the pinned band ({figure.change()} vs pinned, last measured){last}"
    return (f"{figure.name}{unit}: {figure.change()} vs pinned, outside the band since {nights[since].label} "
            f"({len(nights) - since} night(s)){last}")


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
        if any(figure.spreads):
            low = [float("nan") if v is None or s is None else v * (1 - s) for v, s in zip(figure.values, figure.spreads)]
            high = [float("nan") if v is None or s is None else v * (1 + s) for v, s in zip(figure.values, figure.spreads)]
            ax.fill_between(x, low, high, color="tab:blue", alpha=0.15, label="the night's noise (±spread of its rounds)")
        for step in figure.steps():
            ax.axvline(step.index - 0.5, color="tab:orange", ls="--", lw=1.2,
                       label=f"a change began {nights[step.index].label} ({step.change:+.1%})")
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
    fig.suptitle(row.key.label + (f"\nfailed nights (shaded red): {', '.join(failed)}" if failed else ""),
                 fontsize=10)
    axes[-1, 0].set_xticks(x, [n.label for n in nights], rotation=45, fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _in_allowances(figure: FigureHistory) -> list[float | None]:
    """Each night's distance from the pin in units of the figure's allowance (0: the pin, -1: the
    band's edge on the worse side); None where the night has no value."""
    half = (figure.band[1] - figure.band[0]) / 2 or 1.0
    sign = 1 if figure.higher_is_better else -1
    return [None if v is None else sign * (v - figure.pinned) / half for v in figure.values]


def draw_drift(rows: list[RowHistory], nights: list[Night], path: Path) -> Path | None:
    """Every pinned figure of every row against its pin, in units of its allowance: 0 is the pin,
    -1 the band's edge on the worse side. A line below -1 is a drift the gate holds red. The scale
    stops at ±DRIFT_CLIP allowances: a figure that jumps further is drawn at the edge with its
    value written, so that one jump does not flatten every other drift onto the zero line."""
    lines = [(f"{row.key.name} {figure.name}", _in_allowances(figure), figure.since() is not None)
             for row in rows for figure in row.figures.values() if figure.band is not None and figure.pinned is not None]
    if not lines:
        return None
    plt = _plt()
    fig, ax = plt.subplots(figsize=(max(7.0, 0.7 * len(nights) + 4), 4.5))
    ax.axhspan(-1, 1, color="tab:green", alpha=0.12, label="inside the pinned band")
    ax.axhline(0, color="tab:green", lw=1)
    colours = iter(DRIFT_COLOURS * len(lines))
    for label, values, drifted in lines:
        colour = next(colours) if drifted else "grey"
        drawn = [float("nan") if v is None else max(-DRIFT_CLIP, min(DRIFT_CLIP, v)) for v in values]
        ax.plot(range(len(nights)), drawn, "-o", ms=3, lw=2 if drifted else 0.8, color=colour,
                alpha=1 if drifted else 0.5, label=label if drifted else None)
        for night, value in enumerate(values):
            if value is not None and abs(value) > DRIFT_CLIP:
                ax.annotate(f"{value:+.3g}", (night, drawn[night]), fontsize=6, color=colour,
                            xytext=(0, -9 if value < 0 else 4), textcoords="offset points", ha="center")
    ax.set_ylim(-DRIFT_CLIP - 0.6, DRIFT_CLIP + 0.6)
    ax.set_xticks(range(len(nights)), [n.label for n in nights], rotation=45, fontsize=7)
    ax.set_ylabel(f"change vs pinned, in allowances\n(-1: the band's edge on the worse side; beyond ±{DRIFT_CLIP:g}: written)")
    ax.set_title(f"{len(lines)} pinned figure(s) over {len(nights)} night(s); outside the band now: "
                 f"{sum(d for _, _, d in lines)} (named)", fontsize=9, loc="left")
    ax.legend(fontsize=6, loc="lower left")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _table(rows: list[RowHistory], nights: list[Night]) -> list[str]:
    lines = ["| row | figure | pinned | latest | change | outside the pinned band since | a change began | failed nights |",
             "|---|---|---|---|---|---|---|---|"]
    for row in rows:
        failed = ", ".join(nights[i].label for i, why in enumerate(row.failed) if why) or "none"
        for figure in row.figures.values():
            latest, since = figure.latest(), figure.since()
            lines.append(" | ".join([
                f"| {row.key.label}", figure.name,
                "none" if figure.pinned is None else f"{figure.pinned:.4g}",
                "none" if latest is None else f"{latest:.4g}", figure.change() or "",
                "" if since is None else f"**{nights[since].label}** ({nights[since].run_id})",
                ", ".join(f"{nights[st.index].label} ({st.change:+.1%})" for st in figure.steps()), failed]) + " |")
    return lines + [""]


def _why_failed(rows: list[RowHistory], nights: list[Night]) -> list[str]:
    """Each failed night of each row with its reason, the first reason of a night said in full."""
    lines = []
    for row in rows:
        for night, why in enumerate(row.failed):
            if why:
                lines.append(f"- {nights[night].label} {row.key.name}: {why}")
    return (["### Why nights failed", ""] + lines + [""]) if lines else []


def write_history(nights: list[Night], references: refs.References | None, out: Path, fps_fraction: float = DEFAULT_FPS_REGRESSION,
                  soc_fractions: dict[str, float] | None = None, skipped: list[str] | None = None) -> Path:
    """The pictures and ``history.md`` in ``out``; returns the markdown's path."""
    out.mkdir(parents=True, exist_ok=True)
    rows = row_histories(nights, references, fps_fraction, soc_fractions)
    drift = draw_drift(rows, nights, out / "drift.png")
    lines = [f"## History: {len(nights)} night(s), {nights[0].label} to {nights[-1].label}", ""]
    lines += [f"- left out, {line}" for line in skipped or []] + ([""] if skipped else [])
    if references is None or not references.pins:
        lines += ["No pinned references: each night is judged against the one before it only.", ""]
    if drift:
        lines += ["![every pinned figure against its pin](drift.png)", ""]
    lines += _table(rows, nights) + _why_failed(rows, nights)
    for row in rows:
        draw_row(row, nights, out / f"{row.slug}.png")
        lines += [f"![{row.key.label}]({row.slug}.png)", ""]
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
        nights, skipped = load_nights(args.results, args.last)
        references = refs.load(args.references) if args.references else None
    except ValueError as err:
        parser.error(str(err))
    if not nights:
        parser.error(f"none of the {len(args.results)} file(s) given is a night: " + "; ".join(skipped))
    print(write_history(nights, references, args.out, fps_fraction, soc_fractions, skipped))
    return 0


if __name__ == "__main__":
    sys.exit(main())
