# Shared helpers for scripts/setup.sh, scripts/test.sh and bench/run. Source, don't run.

# The system packages Ignite needs to build and run. Later capabilities add theirs here.
SYSTEM_PACKAGES=(
    build-essential # cc and the linker for crates that build C
    pkg-config
    git
    ca-certificates
    e2fsprogs       # mkfs.ext4 -d builds root disks; debugfs and e2fsck read them back in tests
    docker-registry # a real OCI registry the tests start on 127.0.0.1
    apache2-utils   # htpasswd, for the registry with basic auth
    python3         # the benchmarks
    mmdebstrap      # the Debian root filesystem of the import benchmark
    umoci           # the import benchmark's baseline
    cpio            # tests read initramfs archives back
    iproute2        # ip: the bridge and taps of --network bridge; network namespaces in tests
    nftables        # nft: masquerade and port forwards of --network bridge
    openssh-client  # ssh-keygen makes the key pairs of --ssh; ignite ssh runs ssh
    openssh-server  # sshd: the GitOps tests push to a Git remote over SSH on 127.0.0.1
    kmod            # depmod indexes a kernel's modules for modprobe inside VMs
    qemu-system-x86 # the QEMU microvm driver (and test guests, with TCG)
    qemu-utils      # qemu-img makes each VM's qcow2 disk over its image
    busybox-static  # the init of the test image that boots in VM mode
    xz-utils zstd lz4 bzip2 gzip # tests recompress a kernel in every bzImage format
)

# Where setup.sh keeps Debian's cloud kernel package.
KERNEL_CACHE=/var/cache/ignite/kernel

MIN_RUST="1.89"

log() { printf '==> %s\n' "$*" >&2; }
die() { printf 'error: %s\n' "$*" >&2; exit 1; }

require_root() {
    [ "$(id -u)" -eq 0 ] || die "run this as root (sudo $0): it installs system packages and binaries"
}

install_packages() {
    command -v apt-get >/dev/null || die "apt-get not found: this script supports Debian and Ubuntu"
    log "installing system packages: ${SYSTEM_PACKAGES[*]%%#*}"
    export DEBIAN_FRONTEND=noninteractive
    local had_sshd=yes
    dpkg -s openssh-server >/dev/null 2>&1 || had_sshd=no
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${SYSTEM_PACKAGES[@]}" >/dev/null
    # The tests start their own registries and sshd; the packaged services are not needed.
    service docker-registry stop >/dev/null 2>&1 || true
    # An sshd this script brought is not left listening (one that was there is left alone).
    if [ "$had_sshd" = no ]; then
        service ssh stop >/dev/null 2>&1 || true
        systemctl disable ssh >/dev/null 2>&1 || true
    fi
}

# Finds cargo (also in ~/.cargo/bin when PATH lacks it, as under sudo) and checks its version.
ensure_cargo() {
    if ! command -v cargo >/dev/null; then
        for dir in "$HOME/.cargo/bin" /root/.cargo/bin /usr/local/cargo/bin; do
            [ -x "$dir/cargo" ] && export PATH="$dir:$PATH" && break
        done
    fi
    command -v cargo >/dev/null || die "cargo not found: install Rust $MIN_RUST or newer with rustup (https://rustup.rs), then run this again"
    local have
    have=$(rustc --version | awk '{print $2}')
    if [ "$(printf '%s\n%s\n' "$MIN_RUST" "$have" | sort -V | head -n1)" != "$MIN_RUST" ]; then
        die "Rust $have is too old: Ignite needs $MIN_RUST or newer (rustup update)"
    fi
}

# The guest init must run before any root filesystem exists: build it fully static.
build_guest_init() {
    local target
    target="$(rustc -vV | awk '/^host:/ {print $2}')"
    RUSTFLAGS="-C target-feature=+crt-static" \
        cargo build --release --locked -q -p ignite-guest --target "$target"
    GUEST_INIT="target/$target/release/ignite-init"
}

# Downloads (does not install) Debian's cloud kernel package into $KERNEL_CACHE.
fetch_kernel_deb() {
    local pkg
    pkg=$(apt-cache depends linux-image-cloud-amd64 2>/dev/null | awk '/Depends: linux-image-/ {print $2; exit}')
    [ -n "$pkg" ] || die "cannot find Debian's cloud kernel package (linux-image-cloud-amd64) in the apt sources"
    mkdir -p "$KERNEL_CACHE"
    if ! ls "$KERNEL_CACHE/${pkg}"_*.deb >/dev/null 2>&1; then
        log "downloading $pkg"
        rm -f "$KERNEL_CACHE"/*.deb
        (cd "$KERNEL_CACHE" && apt-get download -qq "$pkg" 2>/dev/null) || die "cannot download $pkg"
    fi
    KERNEL_DEB=$(ls "$KERNEL_CACHE/${pkg}"_*.deb | head -n1)
}
