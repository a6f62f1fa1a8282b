#!/usr/bin/env bash
# From a fresh Debian/Ubuntu machine to a working `ignite`: system packages, build, install.
# Usage: sudo scripts/setup.sh   (PREFIX=/usr/local by default)
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib.sh

PREFIX="${PREFIX:-/usr/local}"

require_root
install_packages
fetch_kernel_deb
ensure_cargo

log "building ignite and ignited"
cargo build --release --locked -q -p ignite-cli -p ignite-daemon
log "building the static guest init"
build_guest_init

log "installing into $PREFIX"
install -D -m 0755 target/release/ignite "$PREFIX/bin/ignite"
install -D -m 0755 target/release/ignited "$PREFIX/bin/ignited"
install -D -m 0755 "$GUEST_INIT" "$PREFIX/lib/ignite/ignite-init"
install -d /usr/share/bash-completion/completions
"$PREFIX/bin/ignite" completion bash > /usr/share/bash-completion/completions/ignite
"$PREFIX/bin/ignited" completion bash > /usr/share/bash-completion/completions/ignited

log "importing Debian's cloud kernel as the default kernel"
"$PREFIX/bin/ignite" -q kernel import --default "$KERNEL_DEB" >/dev/null

log "building the Debian base image (systemd, openssh-server) with mmdebstrap"
BASE_IMAGE=$(bash scripts/base-image.sh)
# --pull: a base image built by a newer recipe replaces the one a former setup imported
# (an import of a name that exists reads nothing otherwise); VMs of the old one keep its disk.
"$PREFIX/bin/ignite" -q image import --pull --name ignite/debian:bookworm "oci:$BASE_IMAGE:bookworm" >/dev/null

log "done: $("$PREFIX/bin/ignite" version -o short)"
