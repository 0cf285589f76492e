"""A localisation as files: its table (json and markdown) and its per-node error plot.

The judging (which node diverges, the path it grows along) is :mod:`harness.localise`; this
module only renders a finished :class:`~harness.localise.Localisation`.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from harness.localise import Localisation, NodeError

TABLE_JSON, TABLE_MD, PLOT_PNG = "localisation.json", "localisation.md", "localisation.png"
_ERROR_FLOOR = 1e-12  # exact agreement is drawn at the bottom of the axis, not dropped
_NOT_FINITE = 1e6  # where an infinite or NaN error is drawn
_OVER, _LANDMARK = "#c44e52", "#333333"


def write(result: Localisation, report_dir: Path) -> dict[str, Path]:
    """Write the table (json, markdown) and the plot into ``report_dir``; returns the paths."""
    report_dir = Path(report_dir)
    report_dir.mkdir(parents=True, exist_ok=True)
    paths = {"json": report_dir / TABLE_JSON, "markdown": report_dir / TABLE_MD}
    paths["json"].write_text(json.dumps(_jsonable(result.as_dict()), indent=1) + "\n")
    paths["markdown"].write_text(markdown(result))
    if result.compared:
        paths["plot"] = report_dir / PLOT_PNG
        plot(result, paths["plot"])
    return paths


def markdown(result: Localisation) -> str:
    """The per-node table, the first divergent node and the nodes over the threshold marked."""
    first = result.first_divergent
    lines = [f"# Where {result.label} on {result.backend} ({result.precision}) diverges", "",
             result.summary(), "",
             "| # | node | op | module | tensor | shape | rel err | max abs diff | |",
             "|---|---|---|---|---|---|---|---|---|"]
    for n in result.compared:
        mark = ("**first divergent**" if n is first
                else "over" if not n.rel_error <= result.threshold else "")
        lines.append(f"| {n.index} | `{n.node}` | {n.op_type} | {n.module} | `{n.tensor}` | "
                     f"{'x'.join(map(str, n.shape))} | {n.rel_error:.3g} | "
                     f"{n.max_abs_diff:.3g} | {mark} |")
    if result.skipped:
        lines += ["", "## Skipped tensors", ""] + [f"- `{t}`: {why}" for t, why in result.skipped]
    return "\n".join(lines) + "\n"


def plot(result: Localisation, path: Path) -> None:
    """Error per node in topological order (log scale), the threshold, the first divergent
    node and a few labelled landmarks (the largest jumps, the worst node, the outputs)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(13, 5.5), dpi=110)
    _plot_errors(ax, result)
    _label_axes(ax, result)
    for node, colour in _landmarks(result):
        ax.annotate(f"{node.module or node.node}\n{node.op_type} #{node.index}",
                    (node.index, _drawn(node.rel_error)), xytext=(0, 18),
                    textcoords="offset points", fontsize=7, ha="center", color=colour,
                    arrowprops={"arrowstyle": "-", "color": colour, "linewidth": 0.6})
    first = result.first_divergent
    if first is not None:
        ax.axvline(first.index, color=_OVER, linewidth=1, alpha=0.6,
                   label=f"divergence starts: {first.node}")
    ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def _drawn(rel_error: float) -> float:
    """Where an error stands on the log axis."""
    return max(rel_error, _ERROR_FLOOR) if np.isfinite(rel_error) else _NOT_FINITE


def _plot_errors(ax, result: Localisation) -> None:
    """The error line, its points coloured by the threshold, and the threshold itself."""
    x = np.array([n.index for n in result.compared])
    y = np.array([_drawn(n.rel_error) for n in result.compared])
    over = ~(np.array([n.rel_error for n in result.compared]) <= result.threshold)
    ax.plot(x, y, color="#4c72b0", linewidth=0.8, alpha=0.7)
    ax.scatter(x[~over], y[~over], s=10, color="#4c72b0", label="within threshold", zorder=3)
    ax.scatter(x[over], y[over], s=14, color=_OVER, label="beyond threshold", zorder=3)
    ax.axhline(result.threshold, color=_OVER, linestyle="--", linewidth=1,
               label=f"threshold {result.threshold:.0e} ({result.precision})")
    ax.set_yscale("log")
    ax.set_ylim(min(y.min(), result.threshold) / 3, max(y.max(), result.threshold) * 30)


def _label_axes(ax, result: Localisation) -> None:
    ax.set_xlim(-1, result.nodes_in_graph)
    ax.set_xlabel(f"node in topological order ({len(result.compared)} of "
                  f"{result.nodes_in_graph} compared)")
    ax.set_ylabel("max|deployed - reference| / max|reference|")
    ax.set_title(f"{result.label}: {result.backend} ({result.precision}) vs ONNX "
                 f"Runtime fp32, per node")
    ax.grid(True, which="major", axis="y", alpha=0.3)


def _landmarks(result: Localisation) -> list[tuple[NodeError, str]]:
    """The nodes worth a label: the first divergent one, the graph outputs, the worst node and
    the three largest jumps, at most one per 8 % of the x axis, the first divergent one first."""
    marks: dict[int, tuple[NodeError, str]] = {}
    first, worst = result.first_divergent, result.worst
    if first is not None:
        marks[first.index] = (first, _OVER)
    for name in result.outputs:
        output = next(n for n in result.compared if n.tensor == name)
        marks.setdefault(output.index, (output, _LANDMARK))
    if worst is not None:
        marks.setdefault(worst.index, (worst, _LANDMARK))
    logs = np.log10([_drawn(n.rel_error) for n in result.compared])
    for i in np.argsort(-np.diff(logs, prepend=logs[0]))[:3]:  # the largest jumps
        marks.setdefault(result.compared[i].index, (result.compared[i], _LANDMARK))
    kept: list[tuple[NodeError, str]] = []
    for node, colour in sorted(marks.values(), key=lambda m: m[0] is not first):
        if all(abs(node.index - k.index) > 0.08 * result.nodes_in_graph for k, _ in kept):
            kept.append((node, colour))
    return kept


def _jsonable(value):
    """``value`` with non-finite floats as strings (json has no inf or NaN)."""
    if isinstance(value, float) and not np.isfinite(value):
        return str(value)
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    return value
