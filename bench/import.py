#!/usr/bin/env python3
"""Importing a Debian root filesystem of about 200 MB (made with mmdebstrap, packed as an
OCI layout with one gzip layer) against the same job done with `umoci unpack` followed by
`mkfs.ext4 -d`, in the same run. Also a repeat import of the same digest against the first.

Targets: our import at most 0.8 of the baseline's time; a repeat at most 0.05 of the first.
Needs root, mmdebstrap, umoci and e2fsprogs (scripts/setup.sh installs them).
"""
import argparse
import gzip
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

CACHE = Path(os.environ.get("IGNITE_BENCH_CACHE", "/var/cache/ignite-bench"))
MIRROR = os.environ.get("IGNITE_BENCH_MIRROR", "http://deb.debian.org/debian")
PACKAGES = "systemd,systemd-sysv,udev,openssh-server,iproute2,ca-certificates"
IMPORT_TARGET = 0.8
REPEAT_TARGET = 0.05


def debian_tar() -> Path:
    tar = CACHE / "debian-bookworm.tar"
    if not tar.exists():
        CACHE.mkdir(parents=True, exist_ok=True)
        tmp = CACHE / "debian-bookworm.tar.partial"
        print(f"bench import: building a Debian root filesystem with mmdebstrap (cached in {CACHE})", file=sys.stderr)
        subprocess.run(["mmdebstrap", "--quiet", "--format=tar", "--variant=minbase", f"--include={PACKAGES}",
                        "bookworm", str(tmp), MIRROR], check=True, stdin=subprocess.DEVNULL)
        tmp.rename(tar)
    return tar


def sha256_file(path: Path) -> tuple[str, int]:
    h = hashlib.sha256()
    size = 0
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
            size += len(chunk)
    return "sha256:" + h.hexdigest(), size


def oci_layout(tar: Path) -> Path:
    layout = CACHE / "debian-layout"
    if (layout / "index.json").exists():
        return layout
    tmp = CACHE / "debian-layout.partial"
    shutil.rmtree(tmp, ignore_errors=True)
    blobs = tmp / "blobs" / "sha256"
    blobs.mkdir(parents=True)
    diff_id, _ = sha256_file(tar)
    gz = tmp / "layer.tar.gz"
    with open(tar, "rb") as src, gzip.open(gz, "wb", compresslevel=6) as dst:
        shutil.copyfileobj(src, dst, 1 << 20)
    layer_digest, layer_size = sha256_file(gz)
    gz.rename(blobs / layer_digest.split(":")[1])

    def put(doc: dict) -> tuple[str, int]:
        data = json.dumps(doc).encode()
        digest = "sha256:" + hashlib.sha256(data).hexdigest()
        (blobs / digest.split(":")[1]).write_bytes(data)
        return digest, len(data)

    config = put({"architecture": "amd64", "os": "linux", "config": {"Cmd": ["/sbin/init"]},
                  "rootfs": {"type": "layers", "diff_ids": [diff_id]}})
    manifest = put({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
                    "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                               "digest": config[0], "size": config[1]},
                    "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
                                "digest": layer_digest, "size": layer_size}]})
    (tmp / "oci-layout").write_text('{"imageLayoutVersion":"1.0.0"}')
    (tmp / "index.json").write_text(json.dumps({"schemaVersion": 2, "manifests": [{
        "mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": manifest[0], "size": manifest[1],
        "annotations": {"org.opencontainers.image.ref.name": "bench"}}]}))
    tmp.rename(layout)
    return layout


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
    p.add_argument("--runs", type=int, default=2)
    args = p.parse_args()
    if os.geteuid() != 0:
        print("bench import: needs root (ownership and device nodes)", file=sys.stderr)
        return 1
    for tool in ["mmdebstrap", "umoci", "mkfs.ext4"]:
        if shutil.which(tool) is None:
            print(f"bench import: {tool} is missing; run scripts/setup.sh", file=sys.stderr)
            return 1
    layout = oci_layout(debian_tar())
    ours, baseline, repeats = [], [], []
    work = Path(tempfile.mkdtemp(prefix="ignite-bench-", dir="/var/tmp"))
    try:
        for i in range(args.runs):
            root = work / f"state-{i}"
            source = f"oci:{layout}:bench"
            ours.append(timed([args.ignite, "-q", "--root", str(root), "image", "import", source]))
            repeats.append(timed([args.ignite, "-q", "--root", str(root), "image", "import", source]))
            shutil.rmtree(root)

            bundle = work / f"bundle-{i}"
            start = time.perf_counter()
            subprocess.run(["umoci", "unpack", "--image", f"{layout}:bench", str(bundle)], check=True,
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
    first, base, repeat = min(ours), min(baseline), min(repeats)
    ratio, repeat_ratio = first / base, repeat / first


    print(f"bench import: ignite image import {first:.2f} s, umoci unpack + mkfs.ext4 -d {base:.2f} s "
          f"(best of {args.runs}); ratio {ratio:.2f}x, target <= {IMPORT_TARGET}x: "
          f"{'ok' if ratio <= IMPORT_TARGET else 'OVER TARGET'}")
    print(f"bench import-repeat: same digest again {repeat * 1000:.0f} ms vs first {first:.2f} s; "
          f"ratio {repeat_ratio:.3f}x, target <= {REPEAT_TARGET}x: {'ok' if repeat_ratio <= REPEAT_TARGET else 'OVER TARGET'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
