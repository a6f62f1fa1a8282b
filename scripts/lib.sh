# Shared helpers for scripts/setup.sh, scripts/test.sh and bench/run. Source, don't run.

# The system packages Ignite needs to build and run. Later capabilities add theirs here.
SYSTEM_PACKAGES=(
    build-essential # cc and the linker for crates that build C
    pkg-config
    git
    ca-certificates
    e2fsprogs       # mkfs.ext4 and resize2fs make root disks; debugfs and e2fsck read them back in tests
    libext2fs-dev   # libext2fs (and com_err), linked by ignite-disk to write root disks in place
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
    qemu-utils      # qemu-img checks the qcow2 overlays Ignite writes; the boot benchmarks make their own
    busybox-static  # the init of the test image that boots in VM mode
    xz-utils zstd lz4 bzip2 gzip # tests recompress a kernel in every bzImage format
    containernetworking-plugins # CNI plugins (bridge, host-local, portmap, ...) for --network-plugin cni
)

# Docker Engine, for the tests only (image sources, running beside Docker, `docker run` as the
# container-mode oracle). The tests start dockerd and containerd of their own; setup never
# starts or enables an engine. A host that already has one (Docker CE, or docker.io) keeps it.
DOCKER_PACKAGES=(docker.io containerd runc)

# Where setup.sh keeps Debian's cloud kernel package.
KERNEL_CACHE=/var/cache/ignite/kernel

MIN_RUST="1.89"

log() { printf '==> %s\n' "$*" >&2; }
die() { printf 'error: %s\n' "$*" >&2; exit 1; }

require_root() {
    [ "$(id -u)" -eq 0 ] || die "run this as root (with sudo where you are not root: sudo $0): it installs system packages and binaries"
}

install_packages() {
    command -v apt-get >/dev/null || die "apt-get not found: this script supports Debian and Ubuntu"
    log "installing system packages: ${SYSTEM_PACKAGES[*]%%#*}"
    export DEBIAN_FRONTEND=noninteractive
    local had_sshd=yes
    dpkg -s openssh-server >/dev/null 2>&1 || had_sshd=no
    apt-get update -qq
    local qemu_pins
    qemu_pins=$(qemu_version_pins)
    # shellcheck disable=SC2086 # the pins are package=version words
    apt-get install -y -qq --no-install-recommends --allow-downgrades \
        "${SYSTEM_PACKAGES[@]}" $qemu_pins >/dev/null \
        || die "installing the system packages failed (see apt's message above)"
    # The tests start their own registries and sshd; the packaged services are not needed.
    service docker-registry stop >/dev/null 2>&1 || true
    install_docker_engine_for_tests
    # An sshd this script brought is not left listening (one that was there is left alone).
    if [ "$had_sshd" = no ]; then
        service ssh stop >/dev/null 2>&1 || true
        systemctl disable ssh >/dev/null 2>&1 || true
    fi
}

# Installs Debian's Docker Engine when the host has none, and Podman (whose Docker-compatible
# service the tests also read images from), with no service started or enabled: the tests run
# engines of their own (own data roots and sockets). A dockerd that is already installed,
# whatever its package, is left alone.
install_docker_engine_for_tests() {
    local wanted=()
    if ! command -v dockerd >/dev/null 2>&1 && [ ! -x /usr/sbin/dockerd ] && [ ! -x /usr/bin/dockerd ]; then
        wanted+=("${DOCKER_PACKAGES[@]}")
    fi
    command -v podman >/dev/null 2>&1 || wanted+=(podman)
    [ "${#wanted[@]}" -gt 0 ] || return 0
    log "installing ${wanted[*]} for the tests (no service is started)"
    # policy-rc.d's 101 stops maintainer scripts from starting services (without systemd too).
    local policy=/usr/sbin/policy-rc.d added_policy=no
    if [ ! -e "$policy" ]; then
        printf '#!/bin/sh\nexit 101\n' >"$policy"
        chmod 0755 "$policy"
        added_policy=yes
    fi
    apt-get install -y -qq --no-install-recommends "${wanted[@]}" >/dev/null \
        || { [ "$added_policy" = yes ] && rm -f "$policy"; die "installing ${wanted[*]} failed (see apt's message above)"; }
    [ "$added_policy" = yes ] && rm -f "$policy"
    if command -v systemctl >/dev/null 2>&1; then
        systemctl disable docker.service docker.socket containerd.service >/dev/null 2>&1 || true
    fi
    return 0
}

# The QEMU packages must all be of one release: qemu-utils of one version breaks
# qemu-system-common of another (a machine image may ship a backported qemu-utils while the
# apt sources offer only the distribution's QEMU). Picks that release and prints the
# `package=version` pins that make every installed or wanted QEMU package agree, saying on
# stderr what it changes. The release: the installed qemu-system-x86's, else the installed
# qemu-utils' when qemu-system-x86 exists in that release, else qemu-system-x86's candidate.
# Versions are compared without a binNMU suffix (+bN): arch-independent packages such as
# qemu-system-data have none.
qemu_version_pins() {
    local system_have utils_have target pkg have pin
    system_have=$(installed_version qemu-system-x86)
    utils_have=$(installed_version qemu-utils)
    if [ -n "$system_have" ]; then
        target=$(release_of "$system_have")
    elif [ -n "$utils_have" ] && [ -n "$(version_in_release qemu-system-x86 "$(release_of "$utils_have")")" ]; then
        target=$(release_of "$utils_have")
    else
        target=$(apt-cache policy qemu-system-x86 | awk '/Candidate:/ {print $2}')
        if [ -z "$target" ] || [ "$target" = "(none)" ]; then
            die "no qemu-system-x86 package in the apt sources: add the distribution's main repository"
        fi
        target=$(release_of "$target")
    fi
    # Every QEMU package that is installed, plus the two Ignite asks for.
    for pkg in $( (printf 'qemu-system-x86\nqemu-utils\n'; dpkg-query -W -f='${db:Status-Abbrev} ${Package}\n' 'qemu-*' 2>/dev/null | awk '$1 ~ /^.i/ {print $2}') | sort -u); do
        have=$(installed_version "$pkg")
        pin=$(version_in_release "$pkg" "$target")
        if [ -n "$have" ] && [ "$(release_of "$have")" = "$target" ]; then
            continue
        fi
        if [ -z "$pin" ]; then
            [ -z "$have" ] && die "no $pkg of QEMU $target in the apt sources"
            die "QEMU: $pkg $have is installed but the apt sources have no $pkg of QEMU $target, which the others need: remove it (apt-get remove $pkg) and run this again"
        fi
        [ -n "$have" ] && log "QEMU: $pkg $have does not match QEMU $target; installing $pkg $pin"
        printf '%s=%s\n' "$pkg" "$pin"
    done
}

# The installed version of a package, or nothing.
installed_version() {
    dpkg-query -W -f='${db:Status-Abbrev} ${Version}\n' "$1" 2>/dev/null | awk '$1 ~ /^.i/ {print $2}'
}

# A version without its binNMU suffix: 1:7.2+dfsg-7+deb12u18+b3 -> 1:7.2+dfsg-7+deb12u18.
release_of() {
    printf '%s\n' "$1" | sed -E 's/\+b[0-9]+$//'
}

# The newest version of a package in the apt sources that belongs to a release, or nothing.
version_in_release() {
    local version
    apt-cache madison "$1" 2>/dev/null | awk -F'|' '{gsub(/ /, "", $2); print $2}' | while read -r version; do
        if [ "$(release_of "$version")" = "$2" ]; then
            printf '%s\n' "$version"
            break
        fi
    done
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
