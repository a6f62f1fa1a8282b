#!/usr/bin/env python3
"""`ignite ps -a` over 1,000 stored VMs against over 1 VM, in the same run.

Target: at most 3x, i.e. the per-VM cost is small next to process start.
"""
import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from make_vms import main as make_vms  # noqa: E402

TARGET = 3.0


def median_ms(cmd: list[str], runs: int) -> float:
    subprocess.run(cmd, stdout=subprocess.DEVNULL, check=True)  # warm-up
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        subprocess.run(cmd, stdout=subprocess.DEVNULL, check=True)
        times.append(time.perf_counter() - start)
    return statistics.median(times) * 1000


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--ignite", required=True)
    p.add_argument("--runs", type=int, default=30)
    args = p.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        one, many = Path(tmp, "one"), Path(tmp, "many")
        make_vms(str(one), 1)
        make_vms(str(many), 1000)
        base = median_ms([args.ignite, "--root", str(one), "ps", "-a"], args.runs)
        big = median_ms([args.ignite, "--root", str(many), "ps", "-a"], args.runs)
        rows = subprocess.run([args.ignite, "--root", str(many), "ps", "-a", "-q"],
                              capture_output=True, text=True, check=True).stdout.count("\n")
        if rows != 1000:
            print(f"ps listed {rows} VMs, expected 1000", file=sys.stderr)
            return 1
    ratio = big / base
    verdict = "ok" if ratio <= TARGET else "OVER TARGET"
    print(f"bench ps-scaling: ps -a over 1000 VMs {big:.2f} ms, over 1 VM {base:.2f} ms "
          f"(median of {args.runs}); ratio {ratio:.2f}x, target <= {TARGET}x: {verdict}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
