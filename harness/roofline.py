"""A perf row's efficiency: its GFLOP/s against the device's peak and against its roofline.

The roofline bound of a row is min(peak, arithmetic intensity x memory bandwidth): a network
whose every FLOP needs many bytes (a depthwise one) cannot reach the FMA peak, whatever the
runtime, and its fraction of the roofline says how far it is from what it could reach.

- The bytes a sample moves (:func:`bytes_per_sample`): the graph's weights, read once per batch
  and so shared by its samples, and every float tensor a node produces, written once and read
  once, at the element size of the precision that ran. That is the traffic of an unfused
  execution; a runtime that fuses ops, or keeps a small map in cache, moves fewer bytes, so a
  row may read above its memory roof: a note, never a failure.
- The bandwidth: STREAM's triad measured once per machine (harness/kernels.py), cached like the
  peak. A CPU's only: an accelerator's bandwidth is not measured here, and its rows get no roof.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

ELEMENT_BYTES = {"fp32": 4, "fp16": 2, "bf16": 2, "int8": 1}


@dataclass(frozen=True)
class Bandwidth:
    """``gbs``: the device's memory bandwidth in GB/s, or None with ``source`` saying why."""

    gbs: float | None
    source: str


def bytes_per_sample(count, batch_size: int, precision: str) -> float:
    """The bytes one sample of a batch of ``batch_size`` moves (see the module's docstring);
    ``count`` is :class:`harness.flops.GraphCount`."""
    element = ELEMENT_BYTES.get(precision, 4)
    return element * (count.weight_elements / batch_size + 2 * count.activation_elements)


def roof_gflops(peak_gflops: float, bandwidth_gbs: float, intensity: float) -> float:
    """The roofline bound at ``intensity`` FLOP/byte."""
    return min(peak_gflops, intensity * bandwidth_gbs)


def cpu_bandwidth(cache_dir: Path | None = None) -> Bandwidth:
    """This machine's memory bandwidth by the triad kernel, measured once per machine and
    process (cached under ``cache_dir``)."""
    from harness.kernels import KernelUnavailable

    try:
        gbs = _triad(None if cache_dir is None else Path(cache_dir))
    except KernelUnavailable as error:
        return Bandwidth(None, f"no memory bandwidth: {error}")
    return Bandwidth(gbs, f"measured here: STREAM's triad (harness/kernels.py) on every usable CPU, {gbs:.1f} GB/s")


@lru_cache(maxsize=None)
def _triad(cache_dir: Path | None) -> float:
    from harness import cache, kernels
    from harness.peak import _machine_key

    if cache_dir is None:
        return kernels.triad_gbs()
    key = {**_machine_key(), "method": "STREAM triad, every usable CPU, best round",
           "kernel": cache.content_key({"source": kernels.SOURCE, "flags": kernels.FLAGS,
                                        "elements": kernels.TRIAD_ELEMENTS})}
    path = cache.build_once(cache_dir, "peak", key, lambda out: out.write_text(
        json.dumps({"triad_gbs": kernels.triad_gbs()})), ".json")
    return float(json.loads(path.read_text())["triad_gbs"])


def add_efficiency(result, count, fps: float, batch_size: int, peak) -> None:
    """The GFLOP/s of ``result``'s row at ``fps``, its fraction of ``peak`` (a failure above 1)
    and of its roofline (a note above 1), and the nodes its count left out (named)."""
    from harness.results import Figure, FigureKind, listing

    if count.uncounted:
        result.note("flops", f"{len(count.uncounted)} node(s) left out of the FLOP count, so the GFLOP/s read "
                             f"low: {listing(list(count.uncounted))}")
    rate = count.gflops * fps
    result.figures.append(Figure("perf", "gflops_per_s", rate, "GFLOP/s", True, FigureKind.INFO,
                                 reference=count.gflops, reference_name="GFLOPs per sample, every kernel tap"))
    result.figures.append(Figure("perf", "useful_gflops_per_s", count.useful_gflops * fps, "GFLOP/s", True,
                                 FigureKind.INFO, reference=count.useful_gflops,
                                 reference_name="GFLOPs per sample, the taps on zero padding left out"))
    if peak is None or not peak.gflops:
        return
    result.figures.append(Figure("perf", "fraction_of_peak", rate / peak.gflops, "", True, FigureKind.INFO,
                                 reference=peak.gflops, reference_name=peak.source))
    if rate > peak.gflops:
        result.fail("fraction_of_peak", above_peak_message(rate, count.useful_gflops * fps, peak))
    _add_roofline(result, count, rate, batch_size, peak)


def _add_roofline(result, count, rate: float, batch_size: int, peak) -> None:
    from harness.results import Figure, FigureKind

    moved = bytes_per_sample(count, batch_size, peak.precision)
    intensity = count.gflops * 1e9 / moved
    result.figures.append(Figure("perf", "arithmetic_intensity", intensity, "FLOP/byte", True, FigureKind.INFO,
                                 reference=moved, reference_name="bytes per sample: weights / batch + "
                                                                 "activations written and read once"))
    bandwidth = peak.bandwidth_gbs
    if not bandwidth:
        return
    roof = roof_gflops(peak.gflops, bandwidth, intensity)
    result.figures.append(Figure("perf", "roofline_gflops_per_s", roof, "GFLOP/s", True, FigureKind.INFO,
                                 reference=bandwidth, reference_name=peak.bandwidth_source))
    result.figures.append(Figure("perf", "fraction_of_roofline", rate / roof, "", True, FigureKind.INFO,
                                 reference=roof, reference_name="min(peak, intensity x bandwidth)"))
    if rate > roof:
        result.note("fraction_of_roofline", f"{rate:.4g} GFLOP/s is above the memory roof {roof:.4g} GFLOP/s "
                                            f"({intensity:.3g} FLOP/byte x {bandwidth:.4g} GB/s): fewer bytes "
                                            "moved than an unfused execution's (ops fused, or maps kept in cache)")


def above_peak_message(rate: float, useful_rate: float, peak) -> str:
    """Why a row can read above its peak, the likeliest first: which of the count, the peak or
    the timing is suspect."""
    head = (f"{rate:.4g} GFLOP/s is {rate / peak.gflops:.2f}x the device's peak {peak.gflops:.4g} GFLOP/s "
            f"({peak.source})")
    winograd = ("a fast algorithm such as Winograd or FFT convolution does fewer multiplies than the direct "
                "count divided here, and can read above 1")
    if useful_rate <= peak.gflops:
        return (f"{head}: the count is suspect: without the taps on zero padding ({useful_rate:.4g} GFLOP/s) it "
                f"reads {useful_rate / peak.gflops:.2f}, so the runtime may skip those taps; or {winograd}")
    if "measured here" in peak.source:
        return f"{head}: the peak is suspect: it was measured here, not documented; or {winograd}"
    return (f"{head}: the timing is suspect (a round shorter than the work allows), or the count: {winograd}")
