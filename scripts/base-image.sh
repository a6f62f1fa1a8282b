#!/usr/bin/env bash
# Builds Ignite's base image locally, so the first `ignite run` needs no Docker Hub: Debian
# bookworm (minbase) with systemd, openssh-server and networkd asking DHCP, made with
# mmdebstrap from the Debian mirror, packed as an OCI layout with one layer.
# Usage: sudo scripts/base-image.sh   (prints the layout's path; cached in /var/cache/ignite/images)
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib.sh

CACHE="${IGNITE_IMAGE_CACHE:-/var/cache/ignite/images}"
MIRROR="${IGNITE_DEBIAN_MIRROR:-http://deb.debian.org/debian}"
PACKAGES="systemd,systemd-sysv,udev,dbus,openssh-server,iproute2,iputils-ping,ca-certificates,kmod,procps,less"
TAR="$CACHE/debian-bookworm.tar"
LAYOUT="$CACHE/debian-bookworm"

require_root
mkdir -p "$CACHE"
# The recipe's version: a cached image made by another recipe is made again.
RECIPE=5
if [ ! -f "$TAR" ] || [ "$(cat "$TAR.recipe" 2>/dev/null)" != "$RECIPE" ]; then
    log "building the Debian base image with mmdebstrap (about a minute, cached in $CACHE)"
    # Host keys are made on each VM's first boot, not shared by every VM of the image: an
    # Ed25519 and an ECDSA key, which take milliseconds, not RSA, whose 3072-bit key takes
    # about 12 s under TCG (a second natively) and held sshd back that long (sshd is told to
    # use those two, so it does not look for others). networkd asks DHCP on every ethernet
    # interface the VM gets. e2scrub_reap (LVM snapshot clean-up, useless in a VM) is
    # masked: under TCG it kept the one vCPU busy for 18 s of the boot.
    # What a VM's boot does not need is left out, each measured under TCG (the guest's one
    # vCPU is the bottleneck, so every process counts): generators for disks a VM does not
    # have (encrypted, verity, integrity, GPT auto-discovery, hibernation), for kernel
    # command line debugging (systemd.run=, systemd.debug_shell, systemd.mask=) and for
    # offline updates, ~0.1 s each; the modprobe@ units (drm, efi_pstore, fuse, loop,
    # dm_mod, configfs: their device nodes load them on first use anyway) and the debugfs,
    # tracefs, hugetlbfs and fusectl mounts; the getty on tty1 (a microVM has no screen; the
    # serial console keeps its getty); the boot status lines on the console and PID 1's
    # info-level messages (failures are still shown and logged); and `sshd -t` before
    # sshd (which checks its configuration itself).
    # sshd comes first: it does not wait for network.target (ignite-init has set the
    # VM's addresses before systemd starts, and sshd listens on the wildcard addresses),
    # and while the system starts it has ten times another unit's share of the CPU
    # (StartupCPUWeight; the default weight once the boot is over). The boot is bound by
    # the guest's one vCPU, so sshd answered only after networkd, logind and D-Bus, which
    # started beside it; measured under TCG, Debian to sshd 10.0 s before, 7.4-8.0 s after.
    # Dependencies cannot be taken away by a drop-in, so the unit is copied into /etc with
    # that one line changed (the build fails if the packaged line is not there).
    mmdebstrap --quiet --format=tar --variant=minbase --include="$PACKAGES" \
        --customize-hook='rm -f "$1"/etc/ssh/ssh_host_*' \
        --customize-hook='printf "#!/bin/sh\n# This VM'"'"'s own SSH host keys, made on its first boot.\nfor t in ed25519 ecdsa; do\n    [ -e /etc/ssh/ssh_host_\${t}_key ] || ssh-keygen -q -t \$t -N \"\" -f /etc/ssh/ssh_host_\${t}_key </dev/null >/dev/null || exit 1\ndone\n" > "$1"/usr/local/sbin/ignite-host-keys && chmod 755 "$1"/usr/local/sbin/ignite-host-keys' \
        --customize-hook='mkdir -p "$1"/etc/systemd/system/ssh.service.d && printf "[Service]\nExecStartPre=\nExecStartPre=/usr/local/sbin/ignite-host-keys\n" > "$1"/etc/systemd/system/ssh.service.d/ignite-host-keys.conf' \
        --customize-hook='printf "HostKey /etc/ssh/ssh_host_ed25519_key\nHostKey /etc/ssh/ssh_host_ecdsa_key\n" > "$1"/etc/ssh/sshd_config.d/ignite-host-keys.conf' \
        --customize-hook='chroot "$1" systemctl mask e2scrub_reap.service >/dev/null 2>&1' \
        --customize-hook='grep -qx "After=network.target auditd.service" "$1"/usr/lib/systemd/system/ssh.service && sed "s/^After=network.target auditd.service\$/After=auditd.service/" "$1"/usr/lib/systemd/system/ssh.service > "$1"/etc/systemd/system/ssh.service' \
        --customize-hook='printf "[Service]\nStartupCPUWeight=1000\n" > "$1"/etc/systemd/system/ssh.service.d/ignite-boot-first.conf' \
        --customize-hook='mkdir -p "$1"/etc/systemd/system-generators && for g in cryptsetup veritysetup integritysetup gpt-auto hibernate-resume debug run system-update; do ln -s /dev/null "$1"/etc/systemd/system-generators/systemd-$g-generator; done' \
        --customize-hook='chroot "$1" systemctl mask modprobe@drm.service modprobe@efi_pstore.service modprobe@fuse.service modprobe@loop.service modprobe@dm_mod.service modprobe@configfs.service sys-kernel-debug.mount sys-kernel-tracing.mount dev-hugepages.mount sys-fs-fuse-connections.mount >/dev/null 2>&1' \
        --customize-hook='rm -f "$1"/etc/systemd/system/getty.target.wants/getty@tty1.service' \
        --customize-hook='mkdir -p "$1"/etc/systemd/system.conf.d && printf "[Manager]\nShowStatus=auto\nLogLevel=notice\n" > "$1"/etc/systemd/system.conf.d/ignite-boot.conf' \
        --customize-hook='printf "[Match]\nType=ether\n\n[Network]\nDHCP=yes\nKeepConfiguration=static\n" > "$1"/etc/systemd/network/80-ignite-dhcp.network' \
        --customize-hook='chroot "$1" systemctl enable systemd-networkd.service >/dev/null 2>&1' \
        --customize-hook='rm -f "$1"/etc/hostname "$1"/etc/machine-id && touch "$1"/etc/machine-id' \
        bookworm "$TAR.partial" "$MIRROR" </dev/null
    mv "$TAR.partial" "$TAR"
    echo "$RECIPE" > "$TAR.recipe"
fi
if [ ! -f "$LAYOUT/index.json" ] || [ "$TAR" -nt "$LAYOUT/index.json" ]; then
    log "packing it as an OCI layout"
    python3 scripts/oci_layout.py "$TAR" "$LAYOUT" bookworm /sbin/init
fi
echo "$LAYOUT"
