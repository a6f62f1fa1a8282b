#!/usr/bin/env bash
# The whole test suite: formatting, lints, unit and integration tests, and the checks on
# the static guest init. Run scripts/setup.sh once first (it installs what tests need).
# Usage: sudo scripts/test.sh
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib.sh
ensure_cargo

log "rustfmt"
cargo fmt --all --check
log "clippy"
cargo clippy --workspace --all-targets --locked -q -- -D warnings

log "the guest init is a static binary"
build_guest_init
if readelf -l "$GUEST_INIT" | grep -q 'Requesting program interpreter'; then
    die "$GUEST_INIT is dynamically linked; it must be static"
fi
"$GUEST_INIT" --version

log "the Debian base image the boot tests use"
bash scripts/base-image.sh >/dev/null

log "tests"
# The binaries first: the daemon's tests run `ignite` and the CLI's run `ignited` and
# `ignite-init`, binaries of other packages, which `cargo test` builds only for packages
# whose integration tests it runs.
cargo build --workspace --locked --bins
cargo test --workspace --locked

log "rootless: a fresh normal user's first run"
bash scripts/rootless-smoke.sh target/debug/ignite
