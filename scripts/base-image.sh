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
if [ ! -f "$TAR" ]; then
    log "building the Debian base image with mmdebstrap (about a minute, cached in $CACHE)"
    # Host keys are made on each VM's first boot, not shared by every VM of the image;
    # networkd asks DHCP on every ethernet interface the VM gets.
    mmdebstrap --quiet --format=tar --variant=minbase --include="$PACKAGES" \
        --customize-hook='rm -f "$1"/etc/ssh/ssh_host_*' \
        --customize-hook='mkdir -p "$1"/etc/systemd/system/ssh.service.d && printf "[Service]\nExecStartPre=\nExecStartPre=/usr/bin/ssh-keygen -A\nExecStartPre=/usr/sbin/sshd -t\n" > "$1"/etc/systemd/system/ssh.service.d/ignite-host-keys.conf' \
        --customize-hook='printf "[Match]\nType=ether\n\n[Network]\nDHCP=yes\nKeepConfiguration=static\n" > "$1"/etc/systemd/network/80-ignite-dhcp.network' \
        --customize-hook='chroot "$1" systemctl enable systemd-networkd.service >/dev/null 2>&1' \
        --customize-hook='rm -f "$1"/etc/hostname "$1"/etc/machine-id && touch "$1"/etc/machine-id' \
        bookworm "$TAR.partial" "$MIRROR" </dev/null
    mv "$TAR.partial" "$TAR"
fi
if [ ! -f "$LAYOUT/index.json" ] || [ "$TAR" -nt "$LAYOUT/index.json" ]; then
    log "packing it as an OCI layout"
    python3 scripts/oci_layout.py "$TAR" "$LAYOUT" bookworm /sbin/init
fi
echo "$LAYOUT"
