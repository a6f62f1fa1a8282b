#!/usr/bin/env python3
"""The VM lifecycle's costs, each against a baseline measured in the same run:

- manager overhead: `ignite run --rm` of a container-mode busybox image that exits at once,
  against the fastest known bare boot of the same kernel, initramfs and disk: a bare
  `qemu-system-x86_64 -M microvm` on Ignite's command line, the kernel's PVH vmlinux, no
  instruction counting under TCG and the host's TSC frequency handed to the guest
  (bench/bare_qemu.py) (target: at most 1.15x);
- `ignite create` from a 1 GB image against from a 10 MB image (target: at most 1.2x);
- the supervisor's memory (RSS) per running VM (target: under 10 MiB).

Needs root, QEMU, qemu-img, Debian's kernel package (scripts/setup.sh) and the static guest
init (IGNITE_INIT). Uses IGNITE_ACCEL if set (CI sets tcg where KVM cannot run guests).
"""
import argparse
import glob
import io
import json
import os
import shutil
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "scripts"))
from oci_layout import write_layout  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bare_qemu import bare_cmdline  # noqa: E402

OVERHEAD_TARGET = 1.15
CREATE_TARGET = 1.2
RSS_TARGET_MIB = 10.0


def busybox_tar(path: Path, extra_bytes: int) -> None:
    with tarfile.open(path, "w") as tar:
        def add_dir(name):
            info = tarfile.TarInfo(name)
            info.type, info.mode = tarfile.DIRTYPE, 0o755
            tar.addfile(info)
        add_dir("bin")
        tar.add("/bin/busybox", "bin/busybox")
        for applet in ["sh", "true", "sleep"]:
            info = tarfile.TarInfo(f"bin/{applet}")
            info.type, info.linkname = tarfile.SYMTYPE, "busybox"
            tar.addfile(info)
        if extra_bytes:
            add_dir("data")
            info = tarfile.TarInfo("data/blob")
            info.size, info.mode = extra_bytes, 0o644

            class Zeros(io.RawIOBase):
                def __init__(self, n):
                    self.left = n

                def readable(self):
                    return True

                def readinto(self, b):
                    n = min(len(b), self.left)
                    b[:n] = bytes(n)
                    self.left -= n
                    return n
            tar.addfile(info, io.BufferedReader(Zeros(extra_bytes), 1 << 20))


def timed(cmd, **kw) -> float:
    start = time.perf_counter()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, **kw)
    return time.perf_counter() - start


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--ignite", required=True)
    p.add_argument("--runs", type=int, default=5)
    p.add_argument("--pairs", type=int, default=10, help="run-overhead's pairs (ignite, bare)")
    args = p.parse_args()
    if os.geteuid() != 0:
        print("bench lifecycle: needs root", file=sys.stderr)
        return 1
    debs = glob.glob("/var/cache/ignite/kernel/*.deb")
    if not debs or not os.environ.get("IGNITE_INIT"):
        print("bench lifecycle: needs Debian's kernel package (scripts/setup.sh) and IGNITE_INIT", file=sys.stderr)
        return 1
    work = Path(tempfile.mkdtemp(prefix="ignite-bench-life-", dir="/var/tmp"))
    ig = [args.ignite, "-q", "--root", str(work / "state")]

    def ignite(*a, **kw):
        return subprocess.run(ig + list(a), check=True, capture_output=True, text=True, **kw).stdout.strip()

    try:
        ignite("kernel", "import", debs[0])
        images = {}
        for name, extra in [("small", 8 << 20), ("big", 1 << 30)]:
            tar = work / f"{name}.tar"
            busybox_tar(tar, extra)
            layout = work / f"layout-{name}"
            write_layout(tar, layout, name, ["/bin/true"])
            tar.unlink()
            images[name] = f"oci:{layout}:{name}"
            ignite("image", "import", images[name])

        # create: 1 GB image against 10 MB image.
        small_t, big_t = [], []
        for _ in range(args.runs):
            for name, times in [("small", small_t), ("big", big_t)]:
                start = time.perf_counter()
                uid = ignite("create", "--network", "none", images[name])
                times.append(time.perf_counter() - start)
                ignite("rm", uid)
        create_ratio = statistics.median(big_t) / statistics.median(small_t)

        # Manager overhead: run --rm against the fastest bare boot of the same guest.
        uid = ignite("create", "--network", "none", "--name", "reference", images["small"])
        subprocess.run(ig + ["start", "-i", "reference"], check=True, stdin=subprocess.DEVNULL,
                       stdout=subprocess.DEVNULL)
        cmdline = bare_cmdline(work / "state" / "vms" / uid / "vmm.cmdline", fastest=True)
        # In turn, pair by pair: the machine's speed drifts (by a third within minutes on a
        # shared host), and a pair's ratio is taken at one moment; the pairs' median ratio
        # is judged, the ratio of the two medians printed beside it.
        ours, bare = [], []
        for _ in range(args.pairs):
            ours.append(timed(ig + ["run", "--rm", "--network", "none", images["small"]]))
            bare.append(timed(cmdline, stdin=subprocess.DEVNULL))
        overhead = statistics.median(o / b for o, b in zip(ours, bare))
        of_medians = statistics.median(ours) / statistics.median(bare)

        # Supervisor memory while a VM runs.
        uid = ignite("run", "--network", "none", images["small"], "sleep", "60")
        vm = json.loads(subprocess.run(ig[:1] + ig[2:] + ["inspect", "vm", uid], check=True,
                                       capture_output=True, text=True).stdout)
        if "supervisor" not in vm["status"]:
            print(f"bench lifecycle: the VM for the RSS probe is not running: {vm['status'].get('exit')}", file=sys.stderr)
            return 1
        pid = vm["status"]["supervisor"]["pid"]
        rss_kib = next(int(l.split()[1]) for l in open(f"/proc/{pid}/status") if l.startswith("VmRSS:"))
        rss_mib = rss_kib / 1024
        ignite("rm", "-f", uid)
    finally:
        subprocess.run(ig + ["rm", "-f"] + subprocess.run(ig + ["ps", "-a"], capture_output=True,
                       text=True).stdout.split(), capture_output=True)
        shutil.rmtree(work, ignore_errors=True)

    def verdict(ok):
        return "ok" if ok else "OVER TARGET"
    print(f"bench run-overhead: ignite run --rm {statistics.median(ours):.2f} s, fastest bare qemu boot "
          f"{statistics.median(bare):.2f} s (medians of {args.pairs} run in turn); ratio {overhead:.2f}x "
          f"(the pairs' median; of the medians {of_medians:.2f}x), "
          f"target <= {OVERHEAD_TARGET}x: {verdict(overhead <= OVERHEAD_TARGET)}")
    print(f"bench create: from a 1 GB image {statistics.median(big_t) * 1000:.0f} ms, from a 10 MB image "
          f"{statistics.median(small_t) * 1000:.0f} ms (median of {args.runs}); ratio {create_ratio:.2f}x, "
          f"target <= {CREATE_TARGET}x: {verdict(create_ratio <= CREATE_TARGET)}")
    print(f"bench supervisor-rss: {rss_mib:.1f} MiB per running VM; ratio to target "
          f"{rss_mib / RSS_TARGET_MIB:.2f}, target < {RSS_TARGET_MIB:.0f} MiB: {verdict(rss_mib < RSS_TARGET_MIB)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
