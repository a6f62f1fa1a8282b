//! Importing kernels, listing and removing them.
//!
//! A kernel comes from a kernel package (`.deb`), a vmlinux or bzImage file (with
//! `--modules DIR`), or an Ignite-style kernel image (`/boot/vmlinux` plus `/lib/modules`)
//! from any image source. Each Kernel keeps, in its directory:
//!
//! ```text
//! vmlinux               the uncompressed ELF kernel (what Firecracker boots)
//! vmlinuz               the bzImage it came as, if it did (what QEMU boots)
//! modules/<release>/    its modules
//! initramfs.cpio        ignite-init and the modules a guest needs, in load order
//! ```

use std::fs;
use std::io::Read;
use std::path::{Path, PathBuf};

use ignite_api::{ImageSource, Kernel, ObjectMeta, Size, Vm};
use ignite_guest_protocol::config::MODULES_LABEL;
use ignite_kernel::bzimage::extract_vmlinux;
use ignite_kernel::cpio::CpioWriter;
use ignite_kernel::deb;
use ignite_kernel::modules::{GUEST_MODULES, ModuleIndex};
use ignite_kernel::version::{check_release, kernel_release};
use ignite_oci::digest::Digest;
use ignite_oci::fetch::{FetchedImage, Progress};
use ignite_oci::unpack::Unpacker;
use ignite_store::{Store, StoreError};

use crate::images::{
    ImageError, ImportOptions, content_id, fetch_source, io, staging_dir, unpack_layers,
};

pub const VMLINUX_FILE: &str = "vmlinux";
/// The compressed kernel as it came (a bzImage), when it came as one: QEMU boots it under
/// TCG, where the vmlinux's PVH entry hangs without timers.
pub const BZIMAGE_FILE: &str = "vmlinuz";
pub const MODULES_DIR: &str = "modules";
pub const INITRAMFS_FILE: &str = "initramfs.cpio";
/// The kernel's modules (with depmod's indexes) as a read-only ext4 disk for VMs.
pub const MODULES_DISK_FILE: &str = "modules.ext4";
/// The label that marks the kernel VMs use when they name none.
pub const DEFAULT_LABEL: &str = "ignite.weave.works/default-kernel";
/// Where the guest init is looked for first.
pub use crate::guest_init::INIT_ENV;
/// In the initramfs: the modules to load, one path (below /lib/modules/<release>) a line.
pub const MODULE_LIST: &str = "etc/ignite/modules";
const MAX_KERNEL_FILE: u64 = 1 << 30;
/// The largest file among a kernel's modules (real ones are a few MiB at most).
const MAX_MODULE_FILE: u64 = 256 << 20;
/// The most a kernel's modules may hold in all (Debian's full set is under 1 GiB).
const MAX_MODULES_TOTAL: u64 = 4 << 30;

#[derive(Debug, Default, Clone)]
pub struct KernelImportOptions {
    pub image: ImportOptions,
    /// Modules for a vmlinux or bzImage file: `lib/modules` or `lib/modules/<release>`.
    pub modules: Option<PathBuf>,
    /// Make this the default kernel.
    pub default: bool,
    /// The guest init to put into the initramfs (found by [`find_guest_init`] if unset).
    pub init: Option<PathBuf>,
}

#[derive(Debug)]
pub struct ImportedKernel {
    pub kernel: Kernel,
    pub fetched: bool,
}

pub use crate::guest_init::find_guest_init;

pub fn kernel_dir(store: &Store, kernel: &Kernel) -> PathBuf {
    store.kernels().object_dir(
        kernel
            .metadata
            .uid
            .as_ref()
            .expect("stored kernels have a uid"),
    )
}

pub fn is_default(kernel: &Kernel) -> bool {
    kernel
        .metadata
        .labels
        .get(DEFAULT_LABEL)
        .is_some_and(|v| v == "true")
}

/// The kernel VMs use when they name none.
pub fn default_kernel(store: &Store) -> Result<Option<Kernel>, ImageError> {
    Ok(store.kernels().list()?.objects.into_iter().find(is_default))
}

/// Where scripts/setup.sh keeps the system's kernel package (Debian's cloud kernel), for
/// every user: root-owned, world-readable.
pub const SYSTEM_KERNEL_CACHE: &str = "/var/cache/ignite/kernel";

/// Overrides [`SYSTEM_KERNEL_CACHE`].
pub const SYSTEM_KERNEL_CACHE_ENV: &str = "IGNITE_SYSTEM_KERNELS";

/// The system's kernel package in [`SYSTEM_KERNEL_CACHE`] (or `$IGNITE_SYSTEM_KERNELS`), if
/// setup downloaded one (the newest by name when there are several).
pub fn system_kernel_package() -> Option<PathBuf> {
    let dir = std::env::var_os(SYSTEM_KERNEL_CACHE_ENV)
        .filter(|d| !d.is_empty())
        .map_or_else(|| PathBuf::from(SYSTEM_KERNEL_CACHE), PathBuf::from);
    system_kernel_package_in(&dir)
}

fn system_kernel_package_in(dir: &Path) -> Option<PathBuf> {
    let mut debs: Vec<PathBuf> = fs::read_dir(dir)
        .ok()?
        .filter_map(Result::ok)
        .filter(|e| e.file_type().is_ok_and(|t| t.is_file()))
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "deb"))
        .collect();
    debs.sort();
    debs.pop()
}

/// The default kernel; where the state root has none (a normal user's first run after
/// setup imported the kernel for root), the system's kernel package is imported as this
/// root's default, once, with one log line saying so.
pub fn default_kernel_or_system(
    store: &Store,
    import: &ImportOptions,
    progress: &dyn Progress,
) -> Result<Option<Kernel>, ImageError> {
    if let Some(kernel) = default_kernel(store)? {
        return Ok(Some(kernel));
    }
    let Some(package) = system_kernel_package() else {
        return Ok(None);
    };
    tracing::info!(
        "no default kernel in {}: importing the system's kernel {} as its default",
        store.root().display(),
        package.display()
    );
    let options = KernelImportOptions {
        image: import.clone(),
        default: true,
        ..KernelImportOptions::default()
    };
    Ok(Some(
        import_kernel(store, &package.display().to_string(), &options, progress)?.kernel,
    ))
}

fn normalize_source(source: ImageSource) -> Result<ImageSource, ImageError> {
    Ok(match source {
        ImageSource::File(path) => {
            ImageSource::File(fs::canonicalize(&path).map_err(io("find", &path))?)
        }
        other => other,
    })
}

/// What a source gave: the kernel image (compressed or not), its modules, and its id.
struct Unpacked {
    image: Vec<u8>,
    /// The root that symlinks are resolved in, and the modules directory below it.
    modules: Option<(PathBuf, PathBuf)>,
    content_id: String,
}

/// Imports a kernel unless one of that name exists (see [`KernelImportOptions`]).
pub fn import_kernel(
    store: &Store,
    source: &str,
    options: &KernelImportOptions,
    progress: &dyn Progress,
) -> Result<ImportedKernel, ImageError> {
    let source = normalize_source(ImageSource::parse(source)?)?;
    let name = source.image_name();
    let existing = store
        .kernels()
        .list()?
        .objects
        .into_iter()
        .find(|k| k.metadata.name == name);
    if let Some(kernel) = &existing
        && !options.image.pull
    {
        let kernel = if options.default {
            set_default(store, kernel)?
        } else {
            kernel.clone()
        };
        return Ok(ImportedKernel {
            kernel,
            fetched: false,
        });
    }
    let staging = staging_dir(store)?;
    let tree = staging.path().join("tree");
    let unpacked = match &source {
        ImageSource::File(path) => unpack_file(path, options.modules.as_deref(), &tree)?,
        _ => {
            let current = existing
                .as_ref()
                .and_then(|k| k.status.oci_source.id.clone());
            let Some(fetched) =
                fetch_source(store, &source, &options.image, progress, current.as_deref())?
            else {
                let kernel = existing.expect("only an existing kernel is up to date");
                return Ok(ImportedKernel {
                    kernel,
                    fetched: false,
                });
            };
            unpack_layers_to_dir(&fetched.source, &fetched.image, &tree)?;
            let vmlinux = resolve_in(&tree, "boot/vmlinux", Want::File).ok_or_else(|| {
                ImageError::Source(ignite_api::SourceError::new(format!(
                    "{source} has no /boot/vmlinux: a kernel image holds its kernel there (and its modules in /lib/modules)"
                )))
            })?;
            Unpacked {
                image: read_limited(&vmlinux, true)?,
                modules: modules_root(&tree).map(|m| (tree.clone(), m)),
                content_id: content_id(&fetched.source, &fetched.image),
            }
        }
    };
    let vmlinux = extract_vmlinux(&unpacked.image)
        .map_err(|e| ImageError::Source(ignite_api::SourceError::new(format!("{source}: {e}"))))?;
    let bzimage = ignite_kernel::bzimage::is_bzimage(&unpacked.image).then_some(unpacked.image);
    let release = match kernel_release(&vmlinux) {
        // The release names directories on the host (modules/<release>): only a plain
        // name is accepted, never one with `/` or `..`.
        Some(release) => {
            check_release(&release).map_err(|e| {
                ImageError::Source(ignite_api::SourceError::new(format!("{source}: {e}")))
            })?;
            release
        }
        None => "<unknown>".to_string(),
    };

    // Everything the Kernel keeps is assembled in staging, then moved in at once.
    let out = staging.path().join("kernel");
    fs::create_dir_all(&out).map_err(io("create directory", &out))?;
    fs::write(out.join(VMLINUX_FILE), &vmlinux).map_err(io("write", out.join(VMLINUX_FILE)))?;
    if let Some(bz) = &bzimage {
        fs::write(out.join(BZIMAGE_FILE), bz).map_err(io("write", out.join(BZIMAGE_FILE)))?;
    }
    let module_count = match unpacked
        .modules
        .as_ref()
        .and_then(|(tree, m)| release_dir(tree, m, &release))
    {
        Some(dir) => {
            let dest = out.join(MODULES_DIR).join(&release);
            copy_tree(&dir, &dest, &mut 0)?;
            let index = ModuleIndex::scan(&dest)
                .map_err(|e| ImageError::Source(ignite_api::SourceError::new(e.to_string())))?;
            build_modules_disk(&out, &release)?;
            build_initramfs(
                &out,
                &release,
                Some(&index),
                options.init.clone().or_else(find_guest_init).as_deref(),
            )?;
            index.len()
        }
        None => {
            tracing::info!(
                "{name}: no modules; the guest gets none (fine for kernels with virtio built in)"
            );
            build_initramfs(
                &out,
                &release,
                None,
                options.init.clone().or_else(find_guest_init).as_deref(),
            )?;
            0
        }
    };
    tracing::debug!(release, module_count, "kernel unpacked");

    let fill = |kernel: &mut Kernel| {
        kernel.status.version = release.clone();
        kernel.status.oci_source.id = Some(unpacked.content_id.clone());
        kernel.status.oci_source.size = Size::from_bytes(vmlinux.len() as u64);
    };
    let kernel = match existing {
        Some(old) => {
            let uid = old.metadata.uid.clone().expect("stored kernels have a uid");
            let _lock = store.kernels().lock(&uid)?;
            install_files(&out, &store.kernels().object_dir(&uid))?;
            drop(_lock);
            store
                .kernels()
                .update(&uid, |k| -> Result<(), ImageError> {
                    fill(k);
                    Ok(())
                })?
        }
        None => {
            let mut kernel = Kernel::new(
                ObjectMeta {
                    name: name.clone(),
                    ..ObjectMeta::default()
                },
                source.clone(),
            );
            fill(&mut kernel);
            let kernel = match store.kernels().create(kernel) {
                Ok(k) => k,
                Err(StoreError::NameTaken { .. }) => {
                    let k = store
                        .kernels()
                        .list()?
                        .objects
                        .into_iter()
                        .find(|k| k.metadata.name == name);
                    return Ok(ImportedKernel {
                        kernel: k.ok_or(StoreError::NotFound {
                            kind: ignite_api::Kind::Kernel,
                            query: name,
                        })?,
                        fetched: false,
                    });
                }
                Err(e) => return Err(e.into()),
            };
            if let Err(e) = install_files(&out, &kernel_dir(store, &kernel)) {
                let _ = store
                    .kernels()
                    .delete(kernel.metadata.uid.as_ref().expect("created"));
                return Err(e);
            }
            kernel
        }
    };
    let none_default = default_kernel(store)?.is_none();
    let kernel = if options.default || none_default {
        set_default(store, &kernel)?
    } else {
        kernel
    };
    Ok(ImportedKernel {
        kernel,
        fetched: true,
    })
}

/// Reads a file of at most 1 GiB; `nofollow` for files in an image's tree (a symlink
/// there is never opened).
fn read_limited(path: &Path, nofollow: bool) -> Result<Vec<u8>, ImageError> {
    use std::os::unix::fs::OpenOptionsExt;
    let flags = if nofollow {
        rustix::fs::OFlags::NOFOLLOW.bits() as i32
    } else {
        0
    };
    let file = fs::OpenOptions::new()
        .read(true)
        .custom_flags(flags)
        .open(path)
        .map_err(io("open", path))?;
    let mut bytes = Vec::new();
    file.take(MAX_KERNEL_FILE + 1)
        .read_to_end(&mut bytes)
        .map_err(io("read", path))?;
    if bytes.len() as u64 > MAX_KERNEL_FILE {
        return Err(ImageError::Source(ignite_api::SourceError::new(format!(
            "{} is larger than 1 GiB: not a kernel",
            path.display()
        ))));
    }
    Ok(bytes)
}

/// A kernel package is unpacked (safely, like any layer); another file is the kernel itself.
fn unpack_file(path: &Path, modules: Option<&Path>, tree: &Path) -> Result<Unpacked, ImageError> {
    let bytes = read_limited(path, false)?;
    let content_id = format!("docker://{}", Digest::of(&bytes));
    if !deb::is_deb(&bytes) {
        return Ok(Unpacked {
            image: bytes,
            modules: modules.map(|m| (m.to_path_buf(), m.to_path_buf())),
            content_id,
        });
    }
    let bad = |e: ignite_kernel::KernelError| {
        ImageError::Source(ignite_api::SourceError::new(format!(
            "{}: {e}",
            path.display()
        )))
    };
    let (member, at, len) = deb::data_member(&bytes).map_err(bad)?;
    let data = &bytes[at..at + len];
    fs::create_dir(tree).map_err(io("create directory", tree))?;
    let mut unpacker = Unpacker::new(tree)?;
    let label = format!("{member} of {}", path.display());
    if member.ends_with(".xz") {
        unpacker.apply(&label, liblzma::read::XzDecoder::new(data))?;
    } else {
        unpacker.apply(&label, data)?;
    }
    unpacker.finish()?;
    let no_boot = || {
        ImageError::Source(ignite_api::SourceError::new(format!(
            "{} holds no /boot/vmlinuz-*: not a kernel package",
            path.display()
        )))
    };
    let boot = resolve_in(tree, "boot", Want::Dir).ok_or_else(no_boot)?;
    let vmlinuz = fs::read_dir(&boot)
        .map_err(io("list", &boot))?
        .flatten()
        .filter(|e| e.file_type().is_ok_and(|t| t.is_file()))
        .map(|e| e.path())
        .find(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("vmlinuz-") || n.starts_with("vmlinux-"))
        })
        .ok_or_else(no_boot)?;
    Ok(Unpacked {
        image: read_limited(&vmlinuz, true)?,
        modules: modules
            .map(|m| (m.to_path_buf(), m.to_path_buf()))
            .or_else(|| modules_root(tree).map(|m| (tree.to_path_buf(), m))),
        content_id,
    })
}

/// `lib/modules` (or `usr/lib/modules`) in an unpacked tree, resolved inside it.
fn modules_root(tree: &Path) -> Option<PathBuf> {
    ["lib/modules", "usr/lib/modules"]
        .iter()
        .find_map(|p| resolve_in(tree, p, Want::Dir))
}

/// The directory of one release's modules: `<root>/<release>`, the only release in
/// `<root>`, or `<root>` itself when it already is one (it has `kernel/`). Symlinks are
/// resolved inside `tree` (the image's root, or `root` itself for a host `--modules`
/// directory), never on the host.
fn release_dir(tree: &Path, root: &Path, release: &str) -> Option<PathBuf> {
    let inside = |p: &Path| {
        let rel = p.strip_prefix(tree).ok()?;
        resolve_in(tree, &rel.to_string_lossy(), Want::Dir)
    };
    let named = root.join(release);
    if let Some(dir) = inside(&named) {
        return Some(dir);
    }
    warn_if_outside_link(tree, &named);
    let is = |name: &str, want: Want| {
        fs::symlink_metadata(root.join(name)).is_ok_and(|m| match want {
            Want::Dir => m.is_dir(),
            Want::File => m.is_file(),
        })
    };
    if is("kernel", Want::Dir) || is("modules.builtin", Want::File) {
        return Some(root.to_path_buf());
    }
    let mut subdirs = Vec::new();
    for entry in fs::read_dir(root).ok()?.flatten() {
        let path = entry.path();
        match entry.file_type() {
            Ok(t) if t.is_dir() => subdirs.push(path),
            Ok(t) if t.is_symlink() => match inside(&path) {
                Some(dir) => subdirs.push(dir),
                None if path != named => warn_if_outside_link(tree, &path),
                None => {}
            },
            _ => {}
        }
    }
    match subdirs.as_slice() {
        [only] => Some(only.clone()),
        _ => None,
    }
}

/// Says that a symlink among a kernel's modules was ignored because it leads nowhere
/// inside the image (a link to a host directory, say).
fn warn_if_outside_link(tree: &Path, path: &Path) {
    if let Ok(target) = fs::read_link(path) {
        tracing::warn!(
            "ignoring {} -> {}: it is a symlink that leads to no directory inside the kernel image (links are resolved inside the image, never on the host)",
            path.strip_prefix(tree).unwrap_or(path).display(),
            target.display()
        );
    }
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Want {
    File,
    Dir,
}

/// Resolves `rel` inside `tree` one component at a time, following symlinks as if `tree`
/// were `/` (an Ignite kernel image's `/boot/vmlinux` is often a link to
/// `vmlinux-<release>`; `/lib` may be a link to `usr/lib`): no link and no `..` ever
/// leads out of `tree`. The path returned has no symlink in it below `tree`.
fn resolve_in(tree: &Path, rel: &str, want: Want) -> Option<PathBuf> {
    use std::path::Component;
    let mut resolved: Vec<std::ffi::OsString> = Vec::new();
    let mut pending: Vec<std::ffi::OsString> = Path::new(rel)
        .components()
        .rev()
        .filter_map(|c| match c {
            Component::Normal(p) => Some(p.to_os_string()),
            Component::ParentDir => Some("..".into()),
            _ => None,
        })
        .collect();
    let mut hops = 0;
    while let Some(component) = pending.pop() {
        if component == ".." {
            resolved.pop();
            continue;
        }
        let candidate = tree
            .join(resolved.iter().collect::<PathBuf>())
            .join(&component);
        let meta = fs::symlink_metadata(&candidate).ok()?;
        if meta.file_type().is_symlink() {
            hops += 1;
            if hops > 40 {
                return None;
            }
            let target = fs::read_link(&candidate).ok()?;
            if target.is_absolute() {
                resolved.clear();
            }
            for part in target.components().rev() {
                match part {
                    Component::Normal(p) => pending.push(p.to_os_string()),
                    Component::ParentDir => pending.push("..".into()),
                    _ => {}
                }
            }
            continue;
        }
        if !pending.is_empty() && !meta.is_dir() {
            return None;
        }
        resolved.push(component);
    }
    let path = tree.join(resolved.iter().collect::<PathBuf>());
    let meta = fs::symlink_metadata(&path).ok()?;
    let ok = match want {
        Want::File => meta.is_file(),
        Want::Dir => meta.is_dir(),
    };
    ok.then_some(path)
}

/// Copies regular files and directories (symlinks such as `build` and `source`, which point
/// at kernel headers on the build host, are left out). Nothing is followed: directories
/// are told by `lstat`, files are opened with `O_NOFOLLOW`.
fn copy_tree(from: &Path, to: &Path, total: &mut u64) -> Result<(), ImageError> {
    use std::os::unix::fs::OpenOptionsExt;
    fs::create_dir_all(to).map_err(io("create directory", to))?;
    for entry in fs::read_dir(from).map_err(io("list", from))? {
        let entry = entry.map_err(io("list", from))?;
        let kind = entry.file_type().map_err(io("inspect", entry.path()))?;
        let dest = to.join(entry.file_name());
        if kind.is_dir() {
            copy_tree(&entry.path(), &dest, total)?;
        } else if kind.is_file() {
            let nofollow = rustix::fs::OFlags::NOFOLLOW.bits() as i32;
            let mut src = fs::OpenOptions::new()
                .read(true)
                .custom_flags(nofollow)
                .open(entry.path())
                .map_err(io("open", entry.path()))?;
            let mut out = fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .custom_flags(nofollow)
                .mode(0o644)
                .open(&dest)
                .map_err(io("create", &dest))?;
            // Sizes are checked before copying (a sparse file in an image can claim a lot).
            let len = src.metadata().map_err(io("inspect", entry.path()))?.len();
            *total = total.saturating_add(len);
            if len > MAX_MODULE_FILE || *total > MAX_MODULES_TOTAL {
                return Err(ImageError::Source(ignite_api::SourceError::new(format!(
                    "the kernel's module file {} is {len} bytes{}: more than a kernel's modules hold (at most {MAX_MODULE_FILE} bytes a file, {MAX_MODULES_TOTAL} in all); refusing this kernel image, which is malformed or hostile",
                    entry.path().display(),
                    if len > MAX_MODULE_FILE {
                        String::new()
                    } else {
                        format!(", which makes {total} bytes of modules")
                    }
                ))));
            }
            std::io::copy(&mut (&mut src).take(len), &mut out).map_err(io("copy", entry.path()))?;
        }
    }
    Ok(())
}

/// Indexes the modules with the host's `depmod` (so `modprobe` works in the guest) and
/// packs them into a read-only ext4 disk that ignite-init mounts on
/// /lib/modules/<release> in the VM's root.
fn build_modules_disk(out: &Path, release: &str) -> Result<(), ImageError> {
    let modules = out.join(MODULES_DIR).join(release);
    // depmod wants <base>/lib/modules/<release>: lend it the tree for the run.
    let base = out.join("depmod-root");
    let lent = base.join("lib/modules").join(release);
    fs::create_dir_all(lent.parent().expect("has a parent"))
        .map_err(io("create directory", &base))?;
    fs::rename(&modules, &lent).map_err(io("move", &modules))?;
    let depmod = ignite_host_tools::DEPMOD.locate().and_then(|program| {
        std::process::Command::new(program)
            .arg("-b")
            .arg(&base)
            .arg(release)
            .output()
            .ok()
    });
    fs::rename(&lent, &modules).map_err(io("move back", &lent))?;
    let _ = fs::remove_dir_all(&base);
    match depmod {
        Some(o) if o.status.success() => {}
        Some(o) => tracing::warn!(
            "depmod failed ({}); modprobe will not find this kernel's modules inside VMs",
            String::from_utf8_lossy(&o.stderr).trim()
        ),
        None => tracing::warn!(
            "depmod not found (apt-get install kmod); modprobe will not find this kernel's modules inside VMs"
        ),
    }
    let size = ignite_disk::measure_tree(&modules)?;
    ignite_disk::build_ext4(&modules, size, &out.join(MODULES_DISK_FILE), MODULES_LABEL)?;
    Ok(())
}

/// Writes the per-kernel initramfs: the guest init as `/init`, the modules a guest needs
/// under `/lib/modules/<release>/`, and their load order in `/etc/ignite/modules`.
fn build_initramfs(
    out: &Path,
    release: &str,
    index: Option<&ModuleIndex>,
    init: Option<&Path>,
) -> Result<(), ImageError> {
    let path = out.join(INITRAMFS_FILE);
    let mut cpio = CpioWriter::new(std::io::BufWriter::new(
        fs::File::create(&path).map_err(io("create", &path))?,
    ));
    let w = |e: std::io::Error| io("write", &path)(e);
    for dir in [
        "dev",
        "proc",
        "sys",
        "run",
        "tmp",
        "etc",
        "etc/ignite",
        "lib",
        "lib/modules",
        "newroot",
    ] {
        cpio.dir(dir, 0o755).map_err(w)?;
    }
    match init {
        Some(init) => {
            let bytes = fs::read(init).map_err(io("read the guest init", init))?;
            crate::guest_init::check_static(init, &bytes)?;
            cpio.file("init", 0o755, &bytes).map_err(w)?;
        }
        None => tracing::warn!(
            "the guest init (ignite-init) was not found, so this kernel's initramfs has none: install it (scripts/setup.sh) or set {INIT_ENV}, then import the kernel again with --pull"
        ),
    }
    let mut list = String::new();
    if let Some(index) = index {
        let closure = index
            .closure(GUEST_MODULES)
            .map_err(|e| ImageError::Source(ignite_api::SourceError::new(e.to_string())))?;
        if !closure.missing.is_empty() {
            tracing::info!(
                "not modules of this kernel (built in, or absent): {}",
                closure.missing.join(", ")
            );
        }
        let base = format!("lib/modules/{release}");
        // The kernel's unpacker creates no missing parents: every directory is listed.
        cpio.dir(&base, 0o755).map_err(w)?;
        let root = out.join(MODULES_DIR).join(release);
        let mut made = std::collections::BTreeSet::new();
        for name in &closure.load_order {
            let rel = index.path(name).expect("closure modules are indexed");
            let mut dir = PathBuf::from(&base);
            for part in rel.parent().into_iter().flat_map(|p| p.components()) {
                dir.push(part);
                if made.insert(dir.clone()) {
                    cpio.dir(&dir.to_string_lossy(), 0o755).map_err(w)?;
                }
            }
            let bytes = ignite_kernel::modules::read_capped(
                &root.join(rel),
                ignite_kernel::modules::MAX_MODULE_BYTES,
            )
            .map_err(|e| ImageError::Source(ignite_api::SourceError::new(e.to_string())))?;
            cpio.file(&format!("{base}/{}", rel.display()), 0o644, &bytes)
                .map_err(w)?;
            list.push_str(&rel.to_string_lossy());
            list.push('\n');
        }
    }
    cpio.file(MODULE_LIST, 0o644, list.as_bytes()).map_err(w)?;
    cpio.finish().map_err(w)?;
    Ok(())
}

/// The files a Kernel keeps beside its metadata.
const KERNEL_FILES: [&str; 5] = [
    VMLINUX_FILE,
    BZIMAGE_FILE,
    INITRAMFS_FILE,
    MODULES_DIR,
    MODULES_DISK_FILE,
];

/// Moves the staged files (in `from`) into the kernel's directory, replacing older ones
/// all or none: the old files are first moved aside (into staging), then the new ones
/// in; when any step fails, what was moved is moved back, so a failed re-import leaves
/// the previous kernel as it was.
fn install_files(from: &Path, dir: &Path) -> Result<(), ImageError> {
    let aside = from.join(".previous");
    fs::create_dir(&aside).map_err(io("create directory", &aside))?;
    let mut moved_aside: Vec<&str> = Vec::new();
    let mut moved_in: Vec<&str> = Vec::new();
    let restore = |moved_in: &[&str], moved_aside: &[&str]| {
        for name in moved_in {
            let _ = fs::rename(dir.join(name), from.join(name));
        }
        for name in moved_aside {
            if let Err(e) = fs::rename(aside.join(name), dir.join(name)) {
                tracing::error!(
                    "cannot put back {} after a failed re-import: {e}; import the kernel again with --pull",
                    dir.join(name).display()
                );
            }
        }
    };
    for name in KERNEL_FILES {
        let dest = dir.join(name);
        if fs::symlink_metadata(&dest).is_err() {
            continue;
        }
        if let Err(e) = fs::rename(&dest, aside.join(name)) {
            restore(&[], &moved_aside);
            return Err(io("move aside the previous", dest)(e));
        }
        moved_aside.push(name);
    }
    for name in KERNEL_FILES {
        let src = from.join(name);
        if fs::symlink_metadata(&src).is_err() {
            continue;
        }
        let dest = dir.join(name);
        if let Err(e) = fs::rename(&src, &dest) {
            restore(&moved_in, &moved_aside);
            return Err(io("move into place", dest)(e));
        }
        moved_in.push(name);
    }
    // The previous files go with the staging directory.
    Ok(())
}

/// Makes `kernel` the default, and no other.
pub fn set_default(store: &Store, kernel: &Kernel) -> Result<Kernel, ImageError> {
    let _pool = store.kernels().lock_pool()?;
    let uid = kernel
        .metadata
        .uid
        .clone()
        .expect("stored kernels have a uid");
    for other in store.kernels().list()?.objects {
        if is_default(&other) && other.metadata.uid.as_ref() != Some(&uid) {
            store.kernels().update(
                other.metadata.uid.as_ref().expect("stored"),
                |k| -> Result<(), ImageError> {
                    k.metadata.labels.remove(DEFAULT_LABEL);
                    Ok(())
                },
            )?;
        }
    }
    store.kernels().update(&uid, |k| -> Result<(), ImageError> {
        k.metadata
            .labels
            .insert(DEFAULT_LABEL.to_string(), "true".to_string());
        Ok(())
    })
}

/// The VMs that use a kernel: those naming it, and, for the default kernel, those naming none.
pub fn vms_using(store: &Store, kernel: &Kernel) -> Result<Vec<Vm>, ImageError> {
    let default = is_default(kernel);
    Ok(store
        .vms()
        .list()?
        .objects
        .into_iter()
        .filter(|vm| match vm.spec.kernel_ref() {
            Some(r) => r.to_string() == kernel.metadata.name,
            None => default,
        })
        .collect())
}

/// Applies a kernel image's layers to a new directory `tree` (the host reads the kernel
/// and its modules from it).
fn unpack_layers_to_dir(
    source: &ImageSource,
    fetched: &FetchedImage,
    tree: &Path,
) -> Result<(), ImageError> {
    fs::create_dir(tree).map_err(io("create directory", tree))?;
    use std::os::unix::fs::PermissionsExt;
    fs::set_permissions(tree, fs::Permissions::from_mode(0o755))
        .map_err(io("set mode of", tree))?;
    let mut unpacker = Unpacker::new(tree)?;
    unpack_layers(source, fetched, &mut unpacker)?;
    let stats = unpacker.finish()?;
    if stats.skipped_privileged > 0 {
        tracing::debug!(
            "not running as root: {} device nodes and file owners of the kernel image were not kept (the host only reads its kernel and modules)",
            stats.skipped_privileged
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_resolve_inside_the_tree_only() {
        let host = tempfile::tempdir().unwrap();
        fs::create_dir_all(host.path().join("etc")).unwrap();
        fs::write(host.path().join("etc/secret"), "s").unwrap();
        let dir = tempfile::tempdir().unwrap();
        let tree = dir.path();
        fs::create_dir_all(tree.join("usr/lib/modules/6.1")).unwrap();
        fs::create_dir_all(tree.join("boot")).unwrap();
        fs::write(tree.join("boot/vmlinux-6.1"), "k").unwrap();
        std::os::unix::fs::symlink("usr/lib", tree.join("lib")).unwrap();
        std::os::unix::fs::symlink("/boot/vmlinux-6.1", tree.join("boot/vmlinux")).unwrap();
        std::os::unix::fs::symlink(host.path(), tree.join("hostlink")).unwrap();
        std::os::unix::fs::symlink("../../../../../..", tree.join("boot/up")).unwrap();
        std::os::unix::fs::symlink("loop", tree.join("loop")).unwrap();
        // Links inside the image are followed as if the tree were `/`.
        assert_eq!(
            resolve_in(tree, "boot/vmlinux", Want::File),
            Some(tree.join("boot/vmlinux-6.1"))
        );
        assert_eq!(
            resolve_in(tree, "lib/modules/6.1", Want::Dir),
            Some(tree.join("usr/lib/modules/6.1"))
        );
        assert_eq!(modules_root(tree), Some(tree.join("usr/lib/modules")));
        // Never out of it: an absolute link to a host directory, `..` above the root.
        let host_rel = host.path().strip_prefix("/").unwrap().display().to_string();
        assert_eq!(resolve_in(tree, "hostlink/etc/secret", Want::File), None);
        assert_eq!(
            resolve_in(tree, &format!("boot/up/{host_rel}/etc/secret"), Want::File),
            None
        );
        assert_eq!(
            resolve_in(tree, &format!("../../../{host_rel}/etc"), Want::Dir),
            None
        );
        assert_eq!(resolve_in(tree, "loop", Want::File), None);
        assert_eq!(resolve_in(tree, "boot/vmlinux", Want::Dir), None);
        // A release directory that is a link out of the tree is not used.
        let modules = tree.join("usr/lib/modules");
        assert_eq!(
            release_dir(tree, &modules, "6.1"),
            Some(modules.join("6.1"))
        );
        let other = tree.join("other");
        fs::create_dir(&other).unwrap();
        std::os::unix::fs::symlink(host.path(), other.join("6.2")).unwrap();
        assert_eq!(release_dir(tree, &other, "6.2"), None);
    }

    #[test]
    fn the_system_kernel_package_is_the_newest_deb_and_only_a_file() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(system_kernel_package_in(dir.path()), None);
        assert_eq!(system_kernel_package_in(&dir.path().join("absent")), None);
        fs::write(dir.path().join("notes.txt"), "").unwrap();
        fs::create_dir(dir.path().join("z.deb")).unwrap();
        assert_eq!(system_kernel_package_in(dir.path()), None);
        for name in [
            "linux-image-6.1.0-30-cloud-amd64_6.1.124-1_amd64.deb",
            "linux-image-6.1.0-37-cloud-amd64_6.1.140-1_amd64.deb",
        ] {
            fs::write(dir.path().join(name), "").unwrap();
        }
        assert_eq!(
            system_kernel_package_in(dir.path()),
            Some(
                dir.path()
                    .join("linux-image-6.1.0-37-cloud-amd64_6.1.140-1_amd64.deb")
            )
        );
    }
}
