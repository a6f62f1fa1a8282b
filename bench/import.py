#!/usr/bin/env python3
"""Importing the Debian base image of scripts/base-image.sh (about 250 MB, made with
mmdebstrap, packed as an OCI layout with one gzip layer) against the same job done with `umoci unpack` followed by
`mkfs.ext4 -d`, in the same run: as root, and as a normal user (nobody, its own state root)
against the same baseline. Also a repeat import of the same digest against the first.

Targets: our import at most 0.5 of the baseline's time (moonshot 0.3), as root and as a
normal user, medians of --runs; a repeat at most 0.05 of the first.
Needs root (to run the baseline and to act as nobody), mmdebstrap, umoci and e2fsprogs
(scripts/setup.sh installs them).
"""
import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
IMPORT_TARGET = 0.5
IMPORT_MOONSHOT = 0.3
NOBODY = 65534
REPEAT_TARGET = 0.05


def base_image_layout() -> Path:
    """The Debian base image scripts/base-image.sh builds (and caches) with mmdebstrap."""
    out = subprocess.run(["bash", str(ROOT / "scripts" / "base-image.sh")], check=True,
                         stdout=subprocess.PIPE, text=True, stdin=subprocess.DEVNULL).stdout
    return Path(out.strip().splitlines()[-1])


def median(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[len(ordered) // 2]


def timed(cmd: list[str], **kw) -> float:
    start = time.perf_counter()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, **kw)
    return time.perf_counter() - start


def du_bytes(path: Path) -> int:
    out = subprocess.run(["du", "-sb", str(path)], check=True, capture_output=True, text=True).stdout
    return int(out.split()[0])


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--ignite", required=True)
    p.add_argument("--runs", type=int, default=3)
    args = p.parse_args()
    if os.geteuid() != 0:
        print("bench import: needs root (ownership and device nodes)", file=sys.stderr)
        return 1
    for tool in ["mmdebstrap", "umoci", "mkfs.ext4"]:
        if shutil.which(tool) is None:
            print(f"bench import: {tool} is missing; run scripts/setup.sh", file=sys.stderr)
            return 1
    layout = base_image_layout()
    ours, rootless, baseline, repeats = [], [], [], []
    work = Path(tempfile.mkdtemp(prefix="ignite-bench-", dir="/var/tmp"))
    os.chmod(work, 0o755)
    source = f"oci:{layout}:bookworm"
    try:
        for i in range(args.runs):
            root = work / f"state-{i}"
            ours.append(timed([args.ignite, "-q", "--root", str(root), "image", "import", source]))
            repeats.append(timed([args.ignite, "-q", "--root", str(root), "image", "import", source]))
            shutil.rmtree(root)

            # A normal user's import: no root, so the disk must still get the image's owners.
            user_root = work / f"user-state-{i}"
            user_root.mkdir()
            os.chown(user_root, NOBODY, NOBODY)
            rootless.append(timed([args.ignite, "-q", "--root", str(user_root), "image", "import", source],
                                  user=NOBODY, group=NOBODY, extra_groups=[],
                                  env={"PATH": "/usr/local/bin:/usr/bin:/bin", "HOME": str(user_root)}))
            shutil.rmtree(user_root)

            bundle = work / f"bundle-{i}"
            start = time.perf_counter()
            subprocess.run(["umoci", "unpack", "--image", f"{layout}:bookworm", str(bundle)], check=True,
                           stdout=subprocess.DEVNULL)
            rootfs = bundle / "rootfs"
            size = (du_bytes(rootfs) * 5 // 4 // (1 << 20) + 64) << 20
            img = work / f"baseline-{i}.ext4"
            with open(img, "wb") as f:
                f.truncate(size)
            subprocess.run(["mkfs.ext4", "-q", "-F", "-d", str(rootfs), str(img)], check=True)
            baseline.append(time.perf_counter() - start)
            shutil.rmtree(bundle)
            img.unlink()
    finally:
        shutil.rmtree(work, ignore_errors=True)
    first, user, base, repeat = median(ours), median(rootless), median(baseline), median(repeats)
    ratio, user_ratio, repeat_ratio = first / base, user / base, repeat / first

    def verdict(r: float) -> str:
        if r <= IMPORT_MOONSHOT:
            return "ok (moonshot)"
        return "ok" if r <= IMPORT_TARGET else "OVER TARGET"

    print(f"bench import: ignite image import {first:.2f} s, umoci unpack + mkfs.ext4 -d {base:.2f} s "
          f"(medians of {args.runs}); ratio {ratio:.2f}x, target <= {IMPORT_TARGET}x "
          f"(moonshot {IMPORT_MOONSHOT}x): {verdict(ratio)}")
    print(f"bench import-rootless: ignite image import as a normal user {user:.2f} s, "
          f"umoci unpack + mkfs.ext4 -d {base:.2f} s (medians of {args.runs}); ratio {user_ratio:.2f}x, "
          f"target <= {IMPORT_TARGET}x (moonshot {IMPORT_MOONSHOT}x): {verdict(user_ratio)}")
    print(f"bench import-repeat: same digest again {repeat * 1000:.0f} ms vs first {first:.2f} s; "
          f"ratio {repeat_ratio:.3f}x, target <= {REPEAT_TARGET}x: {'ok' if repeat_ratio <= REPEAT_TARGET else 'OVER TARGET'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
