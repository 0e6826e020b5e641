"""Timing shared by the benchmark scripts."""

import time

import numpy as np

__all__ = ["median_seconds", "median_cpu_seconds"]


def median_seconds(fn, repeats, warmup=1, clock=time.perf_counter):
    """Median time of `repeats` calls of `fn` after `warmup` untimed ones (tracing, caches).

    `clock`: wall time by default; `time.process_time` for process CPU time.
    """
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        start = clock()
        fn()
        times.append(clock() - start)
    return float(np.median(times))


def median_cpu_seconds(fn, repeats, warmup=1):
    """`median_seconds` in process CPU time (user + system, all threads), which
    other processes' load inflates far less than wall time."""
    return median_seconds(fn, repeats, warmup, clock=time.process_time)
