#!/usr/bin/env python3
"""Writes N stored VMs under a state root, as `ignite` itself stores them, for benchmarks."""
import json, os, secrets, sys

def main(root: str, count: int) -> None:
    vms = os.path.join(root, "vms")
    os.makedirs(vms, exist_ok=True)
    for i in range(count):
        uid = secrets.token_hex(8)
        d = os.path.join(vms, uid)
        os.makedirs(d, mode=0o700)
        vm = {
            "kind": "VM",
            "apiVersion": "ignite.weave.works/v1alpha4",
            "metadata": {"name": f"bench-vm-{i}", "uid": uid, "created": "2026-01-01T00:00:00Z",
                         "labels": {"env": "bench"}},
            "spec": {
                "image": {"oci": "weaveworks/ignite-ubuntu:latest"},
                "kernel": {"oci": "weaveworks/ignite-kernel:5.10.51",
                           "cmdLine": "console=ttyS0 reboot=k panic=1"},
                "cpus": 2, "memory": "1GB", "diskSize": "4GB",
                "network": {"ports": [{"hostPort": 10000 + i, "vmPort": 22, "protocol": "tcp"}]},
                "ssh": True,
            },
            "status": {
                "running": i % 2 == 0,
                "startTime": "2026-01-02T00:00:00Z",
                "network": {"plugin": "bridge", "ipAddresses": [f"10.61.{i // 250}.{i % 250 + 2}"]},
                "image": {"id": "oci://docker.io/weaveworks/ignite-ubuntu@sha256:" + "0" * 64, "size": "300MB"},
                "kernel": {"id": "oci://docker.io/weaveworks/ignite-kernel@sha256:" + "1" * 64, "size": "50MB"},
            },
        }
        with open(os.path.join(d, "metadata.json"), "w") as f:
            json.dump(vm, f, indent=2)

if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]))
