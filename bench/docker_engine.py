#!/usr/bin/env python3
"""Images from the local Docker Engine, and what a VM costs against a container, each
against a baseline measured in the same run:

- import from Docker Engine (`ignite image import docker-daemon:IMAGE`) against the two steps
  a user would otherwise take, `docker save -o FILE IMAGE` then `ignite image import
  docker-archive:FILE` (target: at most 1.0x);
- `ignite run --rm IMAGE` (container mode, no network) against `docker run --rm --network none
  IMAGE` on the same image: the price of a real VM, reported side by side (no target);
- the same `ignite run --rm` against the fastest known bare boot of the same guest (bare QEMU,
  same kernel, initramfs and disk, no instruction counting under TCG, the host's TSC frequency
  given to the guest: see bench/bare_qemu.py), reported (the target is issue 19's).

Starts a dockerd of its own (own data root and socket, no bridge, no iptables) and stops it.
Needs root, Debian's docker.io (scripts/setup.sh), Debian's kernel package and IGNITE_INIT.
"""
import argparse
import glob
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bare_qemu import bare_cmdline  # noqa: E402
from own_dockerd import DOCKER, OwnDockerd  # noqa: E402

IMPORT_TARGET = 1.0


def timed(cmd, **kw) -> float:
    start = time.perf_counter()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, **kw)
    return time.perf_counter() - start


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--ignite", required=True)
    p.add_argument("--runs", type=int, default=5)
    args = p.parse_args()
    if os.geteuid() != 0:
        print("bench docker-engine: needs root", file=sys.stderr)
        return 1
    debs = glob.glob("/var/cache/ignite/kernel/*.deb")
    if not debs or not os.environ.get("IGNITE_INIT") or not shutil.which("dockerd"):
        print("bench docker-engine: needs docker.io, Debian's kernel package (scripts/setup.sh) and IGNITE_INIT",
              file=sys.stderr)
        return 1
    work = Path(tempfile.mkdtemp(prefix="ibde", dir="/tmp"))
    dockerd = OwnDockerd(work, {"DOCKER_BUILDKIT": "0"})
    env = dockerd.env
    try:
        if not dockerd.ready():
            print("bench docker-engine: dockerd did not start", file=sys.stderr)
            return 1
        # The image: busybox and 64 MiB of incompressible data, built with docker build.
        ctx = work / "ctx"
        (ctx / "bin").mkdir(parents=True)
        shutil.copy("/bin/busybox", ctx / "bin" / "busybox")
        os.symlink("busybox", ctx / "bin" / "true")
        with open(ctx / "data.bin", "wb") as f:
            f.write(os.urandom(64 << 20))
        (ctx / "Dockerfile").write_text("FROM scratch\nCOPY bin /bin\nCOPY data.bin /data.bin\nCMD [\"/bin/true\"]\n")
        image = "bench/engine:1"
        subprocess.run([DOCKER, "build", "--network", "none", "-q", "-t", image, str(ctx)],
                       env=env, check=True, stdout=subprocess.DEVNULL)

        # Import straight from the engine against docker save + import of the archive.
        direct, two_step = [], []
        for i in range(args.runs):
            root = work / f"direct-{i}"
            direct.append(timed([args.ignite, "-q", "--root", str(root), "image", "import",
                                 f"docker-daemon:{image}"], env=env))
            shutil.rmtree(root)
            root = work / f"archive-{i}"
            archive = work / "image.tar"
            start = time.perf_counter()
            subprocess.run([DOCKER, "save", "-o", str(archive), image], env=env, check=True)
            subprocess.run([args.ignite, "-q", "--root", str(root), "image", "import",
                            f"docker-archive:{archive}"], env=env, check=True, stdout=subprocess.DEVNULL,
                           stderr=subprocess.DEVNULL)
            two_step.append(time.perf_counter() - start)
            archive.unlink()
            shutil.rmtree(root)
        d, t = statistics.median(direct), statistics.median(two_step)
        ratio = d / t
        verdict = "ok" if ratio <= IMPORT_TARGET else "MISSED"
        print(f"bench engine-import: docker-daemon: {d:.2f} s, docker save + docker-archive: {t:.2f} s "
              f"(median of {args.runs}, 64 MiB image); ratio {ratio:.2f}x, target <= {IMPORT_TARGET}x: {verdict}")

        # A VM against a container, same image, same argv.
        root = work / "run"
        subprocess.run([args.ignite, "-q", "--root", str(root), "kernel", "import", debs[0]],
                       env=env, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        subprocess.run([args.ignite, "-q", "--root", str(root), "image", "import", f"docker-daemon:{image}"],
                       env=env, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        # The same guest booted bare, the fastest way known: its command line is the one a
        # reference VM of the same image recorded.
        uid = subprocess.run([args.ignite, "-q", "--root", str(root), "create", "--network", "none",
                              "--name", "reference", image], env=env, check=True,
                             capture_output=True, text=True).stdout.strip()
        subprocess.run([args.ignite, "--root", str(root), "start", "-i", "reference"], env=env,
                       check=True, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                       stderr=subprocess.DEVNULL)
        fastest = bare_cmdline(root / "vms" / uid / "vmm.cmdline", fastest=True)
        # The three in turn, so that the machine's drift touches each alike.
        vm, container, bare = [], [], []
        for _ in range(args.runs):
            vm.append(timed([args.ignite, "--root", str(root), "run", "--rm", "--network", "none", image],
                            env=env, stdin=subprocess.DEVNULL))
            container.append(timed([DOCKER, "run", "--rm", "--network", "none", image], env=env,
                                   stdin=subprocess.DEVNULL))
            bare.append(timed(fastest, stdin=subprocess.DEVNULL))
        v, c, b = statistics.median(vm), statistics.median(container), statistics.median(bare)
        accel = os.environ.get("IGNITE_ACCEL", "auto")
        print(f"bench vm-vs-container: ignite run --rm {v:.2f} s, docker run --rm {c:.2f} s "
              f"(median of {args.runs}, accel {accel}); ratio {v / c:.1f}x (reported, no target)")
        paired = statistics.median(x / y for x, y in zip(vm, bare))
        print(f"bench vm-vs-bare-boot: ignite run --rm {v:.2f} s, fastest bare qemu boot of the same guest "
              f"{b:.2f} s (median of {args.runs}, run in turn, accel {accel}); ratio {paired:.2f}x "
              f"(the pairs' median; of the medians {v / b:.2f}x) (reported; issue 19 sets the target)")
        return 0
    finally:
        dockerd.stop()
        subprocess.run(["sh", "-c", f"grep -o ' {work}[^ ]*' /proc/mounts | sort -r | xargs -r -n1 umount -l"],
                       check=False)
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
