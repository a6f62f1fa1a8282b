#!/usr/bin/env python3
"""`ignite run --ssh ignite/debian:bookworm` until its sshd answers, against a bare QEMU
booting the same guest to sshd, in the same run (target: at most 10 s under TCG; the ratio
is reported beside it).

The bare boot is the fastest known for this guest (bench/bare_qemu.py: Ignite's command
line, PVH vmlinux, no instruction counting, the host's TSC frequency, no agent), on a fresh
qcow2 overlay of the same root disk each time (as each `ignite run` makes one), with the same
user-mode network and the same forwarded port. Both are timed until an SSH banner is read
from the forwarded port.

Needs root, QEMU, qemu-img, Debian's kernel package, the base image (scripts/base-image.sh,
in IGNITE_IMAGE_CACHE as there when set) and IGNITE_INIT. Uses IGNITE_ACCEL if set.
"""
import argparse
import glob
import os
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bare_qemu import bare_cmdline  # noqa: E402

TARGET_S = 10.0
BASE = os.path.join(os.environ.get("IGNITE_IMAGE_CACHE", "/var/cache/ignite/images"), "debian-bookworm")
LIMIT_S = 180


def banner(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=2) as s:
            s.settimeout(5)
            return s.recv(8).startswith(b"SSH-")
    except OSError:
        return False


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--ignite", required=True)
    p.add_argument("--runs", type=int, default=3)
    args = p.parse_args()
    debs = glob.glob("/var/cache/ignite/kernel/*.deb")
    if os.geteuid() != 0 or not debs or not os.environ.get("IGNITE_INIT") or not Path(BASE, "index.json").exists():
        print("bench ssh-boot: needs root, the kernel package, the base image and IGNITE_INIT", file=sys.stderr)
        return 1
    work = Path(tempfile.mkdtemp(prefix="ignite-bench-sshboot-", dir="/var/tmp"))
    ig = [os.path.abspath(args.ignite), "-q", "--root", str(work / "state")]

    def ignite(*a):
        return subprocess.run(ig + list(a), check=True, capture_output=True, text=True).stdout.strip()

    try:
        ignite("kernel", "import", debs[0])
        ignite("image", "import", "--name", "ignite/debian:bookworm", f"oci:{BASE}:bookworm")
        # Untimed: the first VM a state root starts probes whether KVM can run a guest
        # (up to 10 s where it cannot, as here) and keeps the answer; a host pays that once.
        subprocess.run(ig + ["run", "--rm", "--network", "none", "ignite/debian:bookworm", "--", "true"],
                       check=True, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        ours = []
        for i in range(args.runs):
            start = time.perf_counter()
            subprocess.run(ig + ["run", "--ssh", "--network", "user", "--name", f"d{i}", "ignite/debian:bookworm"],
                           check=True, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL)
            ours.append(time.perf_counter() - start)
            uid = ignite("inspect", "vm", f"d{i}", "-t", "{{.ObjectMeta.UID}}")
            reference = work / "state" / "vms" / uid / "vmm.cmdline"
            # The last one stays (stopped): the bare boots use its initramfs.
            ignite("stop", f"d{i}") if i == args.runs - 1 else ignite("rm", "-f", f"d{i}")
        # The bare boots: the last VM's command line, a fresh overlay each time.
        cmdline = bare_cmdline(reference, fastest=True)
        disk = next(a for a in cmdline if "root.qcow2" in a)
        old_overlay = re.search(r"file=([^,]+root\.qcow2)", disk).group(1)
        port = int(re.search(r"hostfwd=tcp:127\.0\.0\.1:(\d+)-:22", " ".join(cmdline)).group(1))
        rootfs = next(Path(work / "state" / "rootfs").glob("*.ext4"))
        bare = []
        for i in range(args.runs):
            overlay = work / f"bare-{i}.qcow2"
            subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", "-F", "raw", "-b", str(rootfs), str(overlay)],
                           check=True)
            run = [a.replace(old_overlay, str(overlay)) for a in cmdline]
            start = time.perf_counter()
            qemu = subprocess.Popen(run, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                    stderr=subprocess.DEVNULL)
            try:
                while not banner(port):
                    if time.perf_counter() - start > LIMIT_S or qemu.poll() is not None:
                        print("bench ssh-boot: the bare boot's sshd never answered", file=sys.stderr)
                        return 1
                    time.sleep(0.1)
                bare.append(time.perf_counter() - start)
            finally:
                qemu.kill()
                qemu.wait()
    finally:
        subprocess.run(ig + ["rm", "-f"] + subprocess.run(ig + ["ps", "-a", "-q"], capture_output=True,
                       text=True).stdout.split(), capture_output=True)
        shutil.rmtree(work, ignore_errors=True)
    o, b = statistics.median(ours), statistics.median(bare)
    accel = os.environ.get("IGNITE_ACCEL", "auto")
    verdict = "ok" if o <= TARGET_S else "OVER TARGET"
    print(f"bench ssh-boot: ignite run --ssh ignite/debian:bookworm to sshd {o:.1f} s, fastest bare qemu boot of "
          f"the same guest to sshd {b:.1f} s (median of {args.runs}, accel {accel}); ratio {o / b:.2f}x; "
          f"target <= {TARGET_S:.0f} s: {verdict}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
