"""Smoke test of benchmarks/projection.py: both comparisons and the
batch-size scaling tables run end to end and agree batched vs per image.

The speed numbers are not asserted (they depend on the machine; see
docs/benchmarks.md).
"""

import os
import re
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_projection_benchmark_tiny(data_dir):
    out = subprocess.run(
        [sys.executable, os.path.join(ROOT, "benchmarks", "projection.py"), f"--data_dir={data_dir}",
         "--n=4", "--restarts=2", "--steps=3", "--dip_n=2", "--dip_steps=2", "--dip_channels=4",
         "--scaling=1,2,4", "--dip_scaling=1,2"],
        capture_output=True, text=True, timeout=600, cwd=ROOT)
    assert out.returncode == 0, out.stderr[-3000:]
    text = out.stdout
    diff = float(re.search(r"max \|z_batched - z_loop\| = ([0-9.e+-]+)", text).group(1))
    assert diff < 1e-4, text
    mse = re.search(r"MSE batched ([0-9.]+) vs one at a time ([0-9.]+)", text)
    assert abs(float(mse.group(1)) - float(mse.group(2))) < 1e-4, text
    # One row per batch size of each table, the MLP decoder's with a FLOP rate.
    rows = re.findall(r"projection x 2 restarts, 3 steps batch (\d+): .* ([0-9.]+) GFLOP per CPU-s", text)
    assert [int(n) for n, _ in rows] == [1, 2, 4] and all(float(r) > 0 for _, r in rows), text
    assert re.findall(r"DIP 2 steps batch (\d+):", text) == ["1", "2"], text
    assert float(re.search(r"matmul chain: [0-9.]+ GFLOP/s wall, ([0-9.]+)", text).group(1)) > 0
