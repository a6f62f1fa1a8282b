#!/usr/bin/env python3
"""Packs a root filesystem tarball as an OCI image layout with one gzip layer.

Usage: scripts/oci_layout.py ROOTFS.tar LAYOUT_DIR TAG [CMD...]
The layout is written next to LAYOUT_DIR and renamed into place, so a half-written one is
never found. Used by scripts/base-image.sh and the import benchmark.
"""
import gzip
import hashlib
import json
import shutil
import sys
from pathlib import Path


def sha256_file(path: Path) -> tuple[str, int]:
    h = hashlib.sha256()
    size = 0
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
            size += len(chunk)
    return "sha256:" + h.hexdigest(), size


def write_layout(tar: Path, layout: Path, tag: str, cmd: list[str]) -> Path:
    tmp = layout.with_name(layout.name + ".partial")
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

    config = put({"architecture": "amd64", "os": "linux", "config": {"Cmd": cmd},
                  "rootfs": {"type": "layers", "diff_ids": [diff_id]}})
    manifest = put({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
                    "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                               "digest": config[0], "size": config[1]},
                    "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
                                "digest": layer_digest, "size": layer_size}]})
    (tmp / "oci-layout").write_text('{"imageLayoutVersion":"1.0.0"}')
    (tmp / "index.json").write_text(json.dumps({"schemaVersion": 2, "manifests": [{
        "mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": manifest[0], "size": manifest[1],
        "annotations": {"org.opencontainers.image.ref.name": tag}}]}))
    shutil.rmtree(layout, ignore_errors=True)
    tmp.rename(layout)
    return layout


if __name__ == "__main__":
    if len(sys.argv) < 4:
        print(__doc__, file=sys.stderr)
        sys.exit(2)
    write_layout(Path(sys.argv[1]), Path(sys.argv[2]), sys.argv[3], sys.argv[4:] or ["/sbin/init"])
