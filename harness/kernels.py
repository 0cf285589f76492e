"""Two measurements of this machine, by small C kernels built here with the system's C compiler
(``cc``, as a Python build would use) and loaded with ctypes:

- :func:`fma_gflops_per_core`: an FMA-bound loop on one thread, independent chains of fused
  multiply-adds at the widest vector the compiler targets here (``-march=native``: 512-bit with
  AVX-512, else 256), enough chains to cover the FMA latency on two ports. What one core's FMA
  units do per second at the clock it really holds: the peak where the clock cannot be known.
- :func:`triad_gbs`: STREAM's triad ``a[i] = b[i] + s*c[i]`` over arrays far larger than any
  cache, one thread per usable logical CPU (ctypes lets go of the GIL while a kernel runs),
  counted as STREAM counts it (3 x 4 bytes per element): the memory bandwidth a roofline uses.

Each kernel times itself by its thread's CPU clock, not the wall: on a machine shared with other
work the wall clock counts the time the thread waited for a core, and a peak measured that way
reads low, which turns every fraction above it into a fraction above 1. The per-thread rates are
summed, so the bandwidth is an upper bound where threads did not overlap. Each is the best of a
few rounds; the callers cache the result per machine, so a run pays for neither.
"""
from __future__ import annotations

import ctypes
import os
import subprocess
import tempfile
import threading
from functools import lru_cache
from pathlib import Path

SOURCE = r"""
#include <stddef.h>
#include <time.h>
#ifdef __AVX512F__
#define LANES 16
#else
#define LANES 8
#endif
#define CHAINS 10
typedef float vec __attribute__((vector_size(LANES * 4)));

static double cpu_seconds(void) {
    struct timespec t;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t);
    return t.tv_sec + 1e-9 * t.tv_nsec;
}

/* CHAINS independent chains of acc = acc * m + a, `iterations` times: GFLOP per CPU second */
double fma_loop(long iterations, float *sink) {
    double start = cpu_seconds();
    vec acc[CHAINS], m, a;
    for (int l = 0; l < LANES; l++) { m[l] = 0.999999f; a[l] = 1e-7f; }
    for (int c = 0; c < CHAINS; c++)
        for (int l = 0; l < LANES; l++) acc[c][l] = 1e-3f * (float)(c + l + 1);
    for (long n = 0; n < iterations; n++) {
#pragma GCC unroll 10
        for (int c = 0; c < CHAINS; c++) acc[c] = acc[c] * m + a;
    }
    float total = 0;
    for (int c = 0; c < CHAINS; c++)
        for (int l = 0; l < LANES; l++) total += acc[c][l];
    *sink = total;
    return 2e-9 * LANES * CHAINS * (double)iterations / (cpu_seconds() - start);
}

/* GB (STREAM's 3 x 4 bytes an element) per CPU second */
double triad(float *a, const float *b, const float *c, float s, long n) {
    double start = cpu_seconds();
    for (long i = 0; i < n; i++) a[i] = b[i] + s * c[i];
    return 12e-9 * (double)n / (cpu_seconds() - start);
}
"""
FLAGS = ("-O3", "-march=native", "-ffp-contract=fast", "-shared", "-fPIC")
FMA_ITERATIONS = 2_000_000  # 10-30 ms at 2-4 GHz: short, so that some round runs undisturbed
# each array 128 MiB over all threads (384 MiB for the three): beyond the last-level cache of
# every CPU but those with stacked cache (AMD's -X parts, up to 1.1 GiB)
TRIAD_ELEMENTS = 1 << 25
FMA_ROUNDS = 30
TRIAD_ROUNDS = 5


class KernelUnavailable(RuntimeError):
    """The kernels cannot be built here (no C compiler, or it refused the source)."""


@lru_cache(maxsize=1)
def _library() -> ctypes.CDLL:
    with tempfile.TemporaryDirectory(prefix="kernels-") as folder:
        source, built = Path(folder) / "kernels.c", Path(folder) / "kernels.so"
        source.write_text(SOURCE)
        try:
            done = subprocess.run(["cc", *FLAGS, "-o", str(built), str(source)], capture_output=True, text=True,
                                  timeout=120)
        except (OSError, subprocess.TimeoutExpired) as error:
            raise KernelUnavailable(f"no C compiler to build the FMA and triad kernels (cc: {error})") from None
        if done.returncode:
            raise KernelUnavailable(f"cc {' '.join(FLAGS)} refused the kernels: {done.stderr.strip()[-300:]}")
        library = ctypes.CDLL(str(built))  # mapped: the file may go with its folder
    library.fma_loop.restype = ctypes.c_double
    library.fma_loop.argtypes = [ctypes.c_long, ctypes.c_void_p]
    library.triad.restype = ctypes.c_double
    library.triad.argtypes = [ctypes.c_void_p] * 3 + [ctypes.c_float, ctypes.c_long]
    return library


def fma_gflops_per_core(iterations: int = FMA_ITERATIONS, rounds: int = FMA_ROUNDS) -> float:
    """fp32 GFLOP/s of the FMA-bound loop on one thread (one core's FMA units), best round."""
    library, sink = _library(), ctypes.c_float()
    return max(library.fma_loop(iterations, ctypes.addressof(sink)) for _ in range(rounds))


def triad_gbs(elements: int = TRIAD_ELEMENTS, rounds: int = TRIAD_ROUNDS) -> float:
    """GB/s of the triad on every usable logical CPU at once, each on its share of ``elements``:
    the sum of the threads' rates, best round."""
    import numpy as np

    library, count = _library(), len(os.sched_getaffinity(0))
    share = elements // count
    arrays = [[np.full(share, v, dtype=np.float32) for v in (0.0, 1.0, 2.0)] for _ in range(count)]

    def work(i: int, rates: list[float]) -> None:
        a, b, c = arrays[i]
        rates[i] = library.triad(a.ctypes.data, b.ctypes.data, c.ctypes.data, 3.0, share)

    best = 0.0
    for _ in range(rounds):
        rates = [0.0] * count
        pool = [threading.Thread(target=work, args=(i, rates)) for i in range(count)]
        for thread in pool:
            thread.start()
        for thread in pool:
            thread.join()
        best = max(best, sum(rates))
    return best
