#!/usr/bin/env python3
"""The test suite's wall time, before and after the boot-speed work, in one run: the
container-mode tests (`cargo test -p ignite-cli --test container_mode`: six tests that boot
busybox VMs under TCG and check what `docker run` users expect) as they run now, against
the same tests with the guest's time kept by QEMU's instruction counting
(`IGNITE_TCG_CLOCK=icount`), the way every TCG guest kept time before the host's TSC
frequency was handed to it (issue 19's main finding: 3.2-6.7 s boots against ~1.45 s).

The two settings run in turn (before, after, before, after, ...) so that the machine's
drift touches both alike; the medians and their ratio are printed. The test binary is
built first and not timed (scripts/test.sh builds the same one later).

Needs root, QEMU, Debian's kernel package (scripts/setup.sh) and the static guest init
(IGNITE_INIT).
"""
import argparse
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TESTS = ["-p", "ignite-cli", "--test", "container_mode"]


def cargo_test(extra_env: dict) -> float:
    env = dict(os.environ, **extra_env)
    start = time.perf_counter()
    out = subprocess.run(["cargo", "test", "--locked", "-q", *TESTS], cwd=ROOT, env=env,
                         capture_output=True, text=True)
    took = time.perf_counter() - start
    if out.returncode != 0:
        print(out.stdout[-4000:], out.stderr[-4000:], sep="\n", file=sys.stderr)
        raise SystemExit(f"bench suite-time: the tests failed with {extra_env or 'the defaults'}")
    return took


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--runs", type=int, default=1)
    args = p.parse_args()
    if os.geteuid() != 0:
        print("bench suite-time: needs root (the tests boot VMs)", file=sys.stderr)
        return 1
    if not os.environ.get("IGNITE_INIT"):
        print("bench suite-time: needs IGNITE_INIT (the static guest init)", file=sys.stderr)
        return 1
    subprocess.run(["cargo", "build", "--locked", "-q", "--bins"], cwd=ROOT, check=True)
    subprocess.run(["cargo", "test", "--locked", "-q", "--no-run", *TESTS], cwd=ROOT, check=True,
                   capture_output=True)
    before, after = [], []
    for _ in range(args.runs):
        before.append(cargo_test({"IGNITE_TCG_CLOCK": "icount"}))
        after.append(cargo_test({"IGNITE_TCG_CLOCK": "tsc"}))
    b, a = statistics.median(before), statistics.median(after)
    print(f"bench suite-time: cargo test {' '.join(TESTS)} {a:.0f} s now, {b:.0f} s with the "
          f"guest's time counted by QEMU as before (IGNITE_TCG_CLOCK=icount) (median of "
          f"{args.runs}); ratio {a / b:.2f}x (reported)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
