#!/usr/bin/env python3
"""`ignite exec VM true` (through the guest agent) against `ssh` to the same VM running
`true`, in the same run, on the Debian base image. Target: exec at most 0.5x of ssh.

Runs inside a network namespace of its own: the VM gets the default network as root
(a tap on the namespace's ignite0 bridge), and ssh goes to its address there.
Needs root, QEMU, Debian's kernel package, the base image (scripts/base-image.sh) and
IGNITE_INIT.
"""
import argparse
import glob
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

TARGET = 0.5
BASE = "/var/cache/ignite/images/debian-bookworm"


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--ignite", required=True)
    p.add_argument("--runs", type=int, default=5)
    args = p.parse_args()
    debs = glob.glob("/var/cache/ignite/kernel/*.deb")
    if os.geteuid() != 0 or not debs or not os.environ.get("IGNITE_INIT") or not Path(BASE, "index.json").exists():
        print("bench exec-vs-ssh: needs root, the kernel package, the base image and IGNITE_INIT", file=sys.stderr)
        return 1
    ns = f"ignite-bench-{os.getpid()}"
    subprocess.run(["ip", "netns", "add", ns], check=True)
    work = Path(tempfile.mkdtemp(prefix="ignite-bench-ssh-", dir="/var/tmp"))
    ig = ["ip", "netns", "exec", ns, os.path.abspath(args.ignite), "-q", "--root", str(work / "state")]

    def ignite(*a):
        return subprocess.run(ig + list(a), check=True, capture_output=True, text=True).stdout.strip()

    def timed(cmd):
        start = time.perf_counter()
        subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stdin=subprocess.DEVNULL)
        return time.perf_counter() - start

    try:
        subprocess.run(["ip", "netns", "exec", ns, "ip", "link", "set", "lo", "up"], check=True)
        ignite("kernel", "import", debs[0])
        ignite("image", "import", "--name", "ignite/debian:bookworm", f"oci:{BASE}:bookworm")
        uid = ignite("run", "--ssh", "--memory", "512MB", "ignite/debian:bookworm")  # returns once sshd answers
        vm = json.loads(subprocess.run(ig + ["inspect", "vm", uid], check=True, capture_output=True, text=True).stdout)
        address, port = vm["status"]["sshAddress"].rsplit(":", 1)  # the VM on the bridge, or a forward
        key = work / "state" / "vms" / uid / "id_ed25519"
        ssh = ["ip", "netns", "exec", ns, "ssh", "-i", str(key), "-p", port, "-o", "StrictHostKeyChecking=no",
               "-o", "UserKnownHostsFile=/dev/null", "-o", "LogLevel=ERROR", "-o", "IdentitiesOnly=yes", "-T",
               f"root@{address}", "true"]
        timed(ig + ["exec", uid, "true"])  # warm-up
        timed(ssh)
        ours, theirs = [], []
        for _ in range(args.runs):
            ours.append(timed(ig + ["exec", uid, "true"]))
            theirs.append(timed(ssh))
        ignite("rm", "-f", uid)
    finally:
        subprocess.run(["ip", "netns", "del", ns])
        shutil.rmtree(work, ignore_errors=True)
    e, s = statistics.median(ours), statistics.median(theirs)
    ratio = e / s
    verdict = "ok" if ratio <= TARGET else "OVER TARGET"
    print(f"bench exec-vs-ssh: ignite exec {e * 1000:.0f} ms, ssh {s * 1000:.0f} ms (median of {args.runs}); "
          f"ratio {ratio:.3f}x, target <= {TARGET}x: {verdict}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
