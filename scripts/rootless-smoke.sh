#!/usr/bin/env bash
# The rootless first run, as a brand-new normal user would make it: a fresh account whose
# PATH is Debian's default (no /usr/sbin), its own state root, and the system's kernel
# package from scripts/setup.sh. Imports a busybox image, runs a container-mode workload to
# its exit status, runs a VM with user networking, execs into it and removes it.
# Usage: sudo scripts/rootless-smoke.sh [IGNITE_BINARY]   (default: the debug build)
# Guests boot with TCG (IGNITE_ACCEL=tcg): KVM cannot run guests on nested CI machines.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib.sh
require_root

BINARY="${1:-target/debug/ignite}"
USER_NAME=ignite-smoke
USER_PATH=/usr/local/bin:/usr/bin:/bin:/usr/games   # Debian's ENV_PATH for normal users

[ -x "$BINARY" ] || die "no ignite binary at $BINARY: build it first (cargo build)"
build_guest_init
ls /var/cache/ignite/kernel/*.deb >/dev/null 2>&1 \
    || die "no system kernel package in /var/cache/ignite/kernel: run scripts/setup.sh first"

WORK=$(mktemp -d /tmp/ignite-smoke.XXXXXX)
remove_user() {
    if id "$USER_NAME" >/dev/null 2>&1; then
        pkill -KILL -u "$USER_NAME" >/dev/null 2>&1 || true
        sleep 0.2
        userdel -r "$USER_NAME" >/dev/null 2>&1 || true
    fi
}
trap 'remove_user; rm -rf "$WORK"' EXIT
remove_user   # left by an interrupted run
useradd --create-home --shell /bin/bash "$USER_NAME"
chmod 0755 "$WORK"

# The binaries where an installation puts them: the init beside the binary's ../lib.
install -D -m 0755 "$BINARY" "$WORK/bin/ignite"
install -D -m 0755 "$GUEST_INIT" "$WORK/lib/ignite/ignite-init"

# A busybox image: VM mode runs an init that idles (and powers off on SIGTERM/SIGUSR2).
mkdir -p "$WORK/rootfs/bin" "$WORK/rootfs/sbin"
cp /bin/busybox "$WORK/rootfs/bin/busybox"
ln -s busybox "$WORK/rootfs/bin/sh"
printf '#!/bin/sh\ntrap "busybox poweroff -f" USR2 TERM\necho init: up\nwhile :; do busybox sleep 0.2; done\n' \
    > "$WORK/rootfs/sbin/init"
chmod 0755 "$WORK/rootfs/sbin/init"
tar --numeric-owner --owner=0 --group=0 -C "$WORK/rootfs" -cf "$WORK/rootfs.tar" .
python3 scripts/oci_layout.py "$WORK/rootfs.tar" "$WORK/busybox" busybox /sbin/init >/dev/null
chmod -R a+rX "$WORK"

as_user() {
    su - "$USER_NAME" -c "env PATH=$USER_PATH IGNITE_ACCEL=tcg $*"
}

log "rootless: PATH=$USER_PATH has no mkfs.ext4 (it is in /usr/sbin)"
if su - "$USER_NAME" -c "env PATH=$USER_PATH sh -c 'command -v mkfs.ext4'" >/dev/null; then
    die "the smoke user's PATH finds mkfs.ext4: it is not Debian's default user PATH"
fi

IGNITE="$WORK/bin/ignite"
log "rootless: image import"
as_user "$IGNITE" image import --name smoke/busybox:1 "oci:$WORK/busybox:busybox" >/dev/null

log "rootless: run --rm of a container-mode workload (exit status 7)"
status=0
as_user "$IGNITE" run --rm smoke/busybox:1 -- sh -c "'exit 7'" || status=$?
[ "$status" -eq 7 ] || die "ignite run --rm as $USER_NAME exited $status, not the workload's 7"

log "rootless: the first run built a warm-start template; the next run starts from it"
for _ in $(seq 600); do
    as_user "$IGNITE" snapshots -o json | grep -q '"ignite.weave.works/template"' && break
    sleep 0.3
done
as_user "$IGNITE" snapshots -o json | grep -q '"ignite.weave.works/template"' \
    || die "no warm-start template was built for $USER_NAME"
status=0
as_user "$IGNITE" run --rm smoke/busybox:1 -- sh -c "'exit 7'" || status=$?
[ "$status" -eq 7 ] || die "the warm ignite run --rm as $USER_NAME exited $status, not 7"

log "rootless: run a VM with user networking, exec, rm"
as_user "$IGNITE" run --network user --name smoke-vm smoke/busybox:1
out=$(as_user "$IGNITE" exec smoke-vm -- busybox echo hello-from-the-vm)
[ "$out" = "hello-from-the-vm" ] || die "exec as $USER_NAME printed '$out'"
mode=$(as_user "$IGNITE" inspect vm smoke-vm -t "'{{.Spec.Network.Mode}}'")
[ "$mode" = "user" ] || die "the VM's network mode is '$mode', not user"
as_user "$IGNITE" rm -f smoke-vm
as_user "$IGNITE" snapshot rm $(as_user "$IGNITE" snapshots -q) >/dev/null
left=$(as_user "$IGNITE" ps -a -q)
[ -z "$left" ] || die "VMs left after rm: $left"
if pgrep -u "$USER_NAME" -f qemu-system >/dev/null; then
    die "a QEMU of $USER_NAME still runs after rm"
fi
log "rootless smoke test passed"
