"""Where in the picture: the worst sample's deployed output beside PyTorch's, as images.

The picture kind follows from each output's shape, so no model is named here:

* ``[3, H, W]`` -- a frame (FLAVR's interpolated frames): deployed | PyTorch | |error| averaged
  over the channels, on one shared colour scale per row;
* ``[2, H, W]`` -- optical flow (FlowNet2, GMA): deployed and PyTorch in the Middlebury colour
  code of Baker et al. (hue = direction, saturation = magnitude, both normalised by the larger
  of the two flows' maximum magnitude so the colours compare), and the endpoint-error map
  ``|f_deployed - f_pytorch|_2``;
* ``[N]`` -- class scores (the action recognisers): PyTorch's and the deployed model's top-5
  classes with their softmax probabilities as side-by-side bars.

Outputs of any other shape get no row; :func:`worst_sample` says which in its return value.
"""
from __future__ import annotations

from pathlib import Path
from typing import Mapping

import numpy as np

TOP_K = 5


def _colour_wheel() -> np.ndarray:
    """The Middlebury flow colour wheel, [55, 3] RGB in [0, 1].

    Six hue segments between the primaries and secondaries, with as many steps as Baker et al.
    give each (red-yellow 15, yellow-green 6, green-cyan 4, cyan-blue 11, blue-magenta 13,
    magenta-red 6), so perceptually similar directions get similar colours.
    """
    steps = (15, 6, 4, 11, 13, 6)
    corners = np.array([[1, 0, 0], [1, 1, 0], [0, 1, 0], [0, 1, 1], [0, 0, 1], [1, 0, 1], [1, 0, 0]],
                       dtype=np.float64)
    segments = [corners[i] + (corners[i + 1] - corners[i]) * (np.arange(n)[:, None] / n)
                for i, n in enumerate(steps)]
    return np.concatenate(segments)


def flow_to_colour(flow: np.ndarray, max_radius: float | None = None) -> np.ndarray:
    """[2, H, W] flow (u, v) -> [H, W, 3] RGB in [0, 1] in the Middlebury colour code.

    ``max_radius`` normalises the magnitude (default: this flow's largest); a flow of that length
    is fully saturated, zero flow is white. Non-finite vectors are drawn black.
    """
    u, v = np.asarray(flow[0], np.float64), np.asarray(flow[1], np.float64)
    bad = ~(np.isfinite(u) & np.isfinite(v))
    u, v = np.where(bad, 0, u), np.where(bad, 0, v)
    radius = np.hypot(u, v)
    if max_radius is None:
        max_radius = float(radius.max())
    radius = radius / max_radius if max_radius > 0 else radius
    wheel = _colour_wheel()
    # angle in [0, 1) around the wheel; atan2(-v, -u) puts rightward flow at red as Middlebury does
    position = (np.arctan2(-v, -u) / np.pi + 1) / 2 * (len(wheel) - 1)
    lower = np.floor(position).astype(int)
    upper = (lower + 1) % len(wheel)
    weight = (position - lower)[..., None]
    colour = (1 - weight) * wheel[lower] + weight * wheel[upper]
    saturation = np.clip(radius, 0, 1)[..., None]
    # inside the unit radius: blend from white; beyond it (only with a given max_radius): dimmed
    colour = np.where(saturation <= 1, 1 - saturation * (1 - colour), colour * 0.75)
    colour[bad] = 0
    return colour


def _softmax(scores: np.ndarray) -> np.ndarray:
    scores = np.asarray(scores, np.float64)
    looks_normalised = scores.min() >= 0 and abs(scores.sum() - 1) < 1e-3
    if looks_normalised:
        return scores
    shifted = np.exp(scores - scores.max())
    return shifted / shifted.sum()


def _display_range(*images: np.ndarray) -> tuple[float, float]:
    finite = np.concatenate([i[np.isfinite(i)].ravel() for i in images])
    return (float(finite.min()), float(finite.max())) if finite.size else (0.0, 1.0)


def _frame_row(fig, cells, name: str, deployed: np.ndarray, reference: np.ndarray) -> None:
    low, high = _display_range(reference)
    scale = (high - low) or 1.0
    for ax, image, title in ((cells[0], deployed, "deployed"), (cells[1], reference, "PyTorch")):
        ax.imshow(np.clip((np.moveaxis(image, 0, -1) - low) / scale, 0, 1))
        ax.set_title(f"{name}: {title}", fontsize=9)
    error = np.abs(deployed.astype(np.float64) - reference).mean(axis=0)
    shown = cells[2].imshow(error, cmap="magma")
    cells[2].set_title(f"{name}: |error| (mean over RGB), max {np.nanmax(error):.3g}", fontsize=9)
    fig.colorbar(shown, ax=cells[2], fraction=0.046)


def _flow_row(fig, cells, name: str, deployed: np.ndarray, reference: np.ndarray) -> None:
    radius = max(float(np.nanmax(np.hypot(*reference))), 1e-12)
    for ax, flow, title in ((cells[0], deployed, "deployed"), (cells[1], reference, "PyTorch")):
        ax.imshow(flow_to_colour(flow, radius))
        ax.set_title(f"{name}: {title} (colour: direction, saturation: |flow| / {radius:.3g} px)",
                     fontsize=8)
    epe = np.hypot(*(deployed.astype(np.float64) - reference))
    shown = cells[2].imshow(epe, cmap="magma")
    cells[2].set_title(f"{name}: endpoint error, mean {np.nanmean(epe):.3g} max {np.nanmax(epe):.3g} px",
                       fontsize=8)
    fig.colorbar(shown, ax=cells[2], fraction=0.046)


def _classes_row(ax, name: str, deployed: np.ndarray, reference: np.ndarray) -> None:
    p_ref, p_dep = _softmax(reference), _softmax(deployed)
    top_ref = list(np.argsort(-p_ref)[:TOP_K])
    top_dep = list(np.argsort(-p_dep)[:TOP_K])
    classes = top_ref + [c for c in top_dep if c not in top_ref]  # PyTorch's order, then extras
    x = np.arange(len(classes))
    ax.bar(x - 0.2, p_ref[classes], 0.4, label="PyTorch", color="#4c72b0")
    ax.bar(x + 0.2, p_dep[classes], 0.4, label="deployed", color="#dd8452")
    ax.set_xticks(x, [f"class {c}\nPyTorch #{top_ref.index(c) + 1 if c in top_ref else '-'}"
                      f" / dep. #{top_dep.index(c) + 1 if c in top_dep else '-'}" for c in classes],
                  fontsize=8)
    for xi, c in zip(x, classes):
        ax.text(xi - 0.2, p_ref[c], f"{p_ref[c]:.3f}", ha="center", va="bottom", fontsize=7)
        ax.text(xi + 0.2, p_dep[c], f"{p_dep[c]:.3f}", ha="center", va="bottom", fontsize=7)
    agree = "same top-1" if top_ref[0] == top_dep[0] else "top-1 differs"
    ax.set_title(f"{name}: top-{TOP_K} classes, softmax probability ({agree})", fontsize=9)
    ax.set_ylabel("probability")
    ax.legend(fontsize=8)


def picture_kind(shape: tuple[int, ...]) -> str | None:
    """'frame', 'flow', 'classes' or None for a per-sample output shape (no batch axis)."""
    if len(shape) == 3 and shape[0] == 3:
        return "frame"
    if len(shape) == 3 and shape[0] == 2:
        return "flow"
    if len(shape) == 1:
        return "classes"
    return None


def worst_sample(spec, reference_outputs: Mapping[str, np.ndarray],
                 deployed_outputs: Mapping[str, np.ndarray], path: Path,
                 sample_id: str = "") -> tuple[Path | None, list[str]]:
    """Draw one sample's outputs (ONNX output name -> array without the batch axis).

    Returns (the PNG written, or None when no output has a picture kind; the outputs left out,
    each with its shape).
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows, left_out = [], []
    for name in spec.output_names:
        reference = np.asarray(reference_outputs[name])
        kind = picture_kind(reference.shape)
        if kind is None:
            left_out.append(f"{name} {tuple(reference.shape)}")
        else:
            rows.append((kind, name, np.asarray(deployed_outputs[name]), reference))
    if not rows:
        return None, left_out
    fig = plt.figure(figsize=(15, 4.2 * len(rows)), dpi=100)
    grid = fig.add_gridspec(len(rows), 3)
    for row, (kind, name, deployed, reference) in enumerate(rows):
        if kind == "classes":
            _classes_row(fig.add_subplot(grid[row, :]), name, deployed, reference)
            continue
        cells = [fig.add_subplot(grid[row, c]) for c in range(3)]
        for cell in cells:
            cell.set_xticks([])
            cell.set_yticks([])
        (_frame_row if kind == "frame" else _flow_row)(fig, cells, name, deployed, reference)
    fig.suptitle(f"{spec.name}: worst sample {sample_id}".rstrip(), fontsize=11)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
    return path, left_out


def roofline_points(rows: list) -> list[dict]:
    """Each perf row (:class:`harness.records.Row`) with a roofline: its label, arithmetic
    intensity (FLOP/byte), GFLOP/s, and the roof it is held to (peak GFLOP/s and bandwidth GB/s,
    harness/roofline.py)."""
    points = []
    for r in rows:
        found = {n: r.figure("perf", n) for n in ("arithmetic_intensity", "gflops_per_s", "roofline_gflops_per_s")}
        peak = r.part("perf").get("peak") or {}
        if all(f is not None and f.value for f in found.values()) and peak.get("gflops") and peak.get("bandwidth_gbs"):
            points.append({"label": f"{r.key.model} {r.key.backend} {r.key.precision} bs{r.key.batch_size}",
                           "intensity": found["arithmetic_intensity"].value, "gflops": found["gflops_per_s"].value,
                           "peak": peak["gflops"], "bandwidth": peak["bandwidth_gbs"], "precision": r.key.precision})
    return points


def roofline_figure(plt, rows: list):
    """The rows on a roofline plot (log-log): one roof per (peak, bandwidth) the rows ran under,
    min(peak, intensity x bandwidth), and each row's GFLOP/s at its intensity. None without points."""
    points = roofline_points(rows)
    if not points:
        return None
    fig, ax = plt.subplots(figsize=(10.0, 5.0))
    low = min(p["intensity"] for p in points) / 4
    high = max(max(p["intensity"] for p in points) * 4, max(p["peak"] / p["bandwidth"] for p in points) * 4)
    x = np.geomspace(low, high, 200)
    for precision, peak, bandwidth in sorted({(p["precision"], p["peak"], p["bandwidth"]) for p in points}):
        ax.plot(x, np.minimum(peak, x * bandwidth), "-", alpha=0.7,
                label=f"roof {precision}: {peak:.0f} GFLOP/s, {bandwidth:.0f} GB/s")
    markers = "os^vD<>ph*"
    for i, p in enumerate(points):
        ax.plot(p["intensity"], p["gflops"], markers[i % len(markers)], label=p["label"])
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("arithmetic intensity (FLOP / byte moved, unfused)")
    ax.set_ylabel("GFLOP/s (every kernel tap)")
    ax.set_title("Roofline: each perf row against min(peak, intensity × bandwidth)", fontsize=9)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=6, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    return fig
