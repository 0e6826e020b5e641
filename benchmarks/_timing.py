"""Timing shared by the benchmark scripts."""

import time

import numpy as np

__all__ = ["median_seconds", "median_cpu_seconds"]


def median_seconds(fn, repeats, warmup=1):
    """Median wall time of `repeats` calls of `fn` after `warmup` untimed ones (tracing, caches)."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return float(np.median(times))


def median_cpu_seconds(fn, repeats, warmup=1):
    """Median process CPU time (user + system, all threads) of `repeats` calls after `warmup`:
    other processes' load inflates it far less than wall time."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        start = time.process_time()
        fn()
        times.append(time.process_time() - start)
    return float(np.median(times))
