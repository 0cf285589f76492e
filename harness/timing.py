"""Pure-inference timing as ais_bench's loop does it: warm-up, then timed rounds of one call."""
from __future__ import annotations

import time
from typing import Callable

import numpy as np


def summarize(times_s: list[float], batch_size: int, compute_ms: list[float],
              transfers_ms: list[dict[str, float]] = ()) -> dict:
    ms = np.asarray(times_s) * 1000.0
    out = {
        "fps": 1000.0 * batch_size / float(np.median(ms)),
        # from the fastest round: the least disturbed by other load, so the regression gate uses it
        "best_fps": 1000.0 * batch_size / float(ms.min()),
        "mean_fps": 1000.0 * batch_size / float(ms.mean()),
        "mean_ms": float(ms.mean()), "p50_ms": float(np.percentile(ms, 50)),
        "p90_ms": float(np.percentile(ms, 90)), "p99_ms": float(np.percentile(ms, 99)),
        "rounds": len(ms),
        "timer": "time.perf_counter around one session.run(feeds) with inputs prepared in memory",
    }
    if compute_ms:
        out["compute_ms"] = float(np.mean(compute_ms))
        out["compute_fps"] = 1000.0 * batch_size / out["compute_ms"]  # ais_bench: 1000*bs/mean compute ms
    for name in ("h2d_ms", "d2h_ms"):
        values = [t[name] for t in transfers_ms if name in t]
        if values:
            out[name] = float(np.mean(values))
    return out


def timed(call: Callable[[], object]) -> tuple[float, object]:
    start = time.perf_counter()
    result = call()
    return time.perf_counter() - start, result
