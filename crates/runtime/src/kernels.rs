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
use ignite_kernel::version::kernel_release;
use ignite_oci::digest::Digest;
use ignite_oci::fetch::Progress;
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

/// The system's kernel package in [`SYSTEM_KERNEL_CACHE`], if setup downloaded one (the
/// newest by name when there are several).
pub fn system_kernel_package() -> Option<PathBuf> {
    system_kernel_package_in(Path::new(SYSTEM_KERNEL_CACHE))
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
    modules: Option<PathBuf>,
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
            unpack_layers(&source, &fetched, &tree)?;
            let vmlinux = resolve_in(&tree, "boot/vmlinux").ok_or_else(|| {
                ImageError::Source(ignite_api::SourceError::new(format!(
                    "{source} has no /boot/vmlinux: a kernel image holds its kernel there (and its modules in /lib/modules)"
                )))
            })?;
            Unpacked {
                image: read_limited(&vmlinux)?,
                modules: modules_root(&tree),
                content_id: content_id(&source, &fetched),
            }
        }
    };
    let vmlinux = extract_vmlinux(&unpacked.image)
        .map_err(|e| ImageError::Source(ignite_api::SourceError::new(format!("{source}: {e}"))))?;
    let bzimage = ignite_kernel::bzimage::is_bzimage(&unpacked.image).then_some(unpacked.image);
    let release = kernel_release(&vmlinux).unwrap_or_else(|| "<unknown>".to_string());

    // Everything the Kernel keeps is assembled in staging, then moved in at once.
    let out = staging.path().join("kernel");
    fs::create_dir_all(&out).map_err(io("create directory", &out))?;
    fs::write(out.join(VMLINUX_FILE), &vmlinux).map_err(io("write", out.join(VMLINUX_FILE)))?;
    if let Some(bz) = &bzimage {
        fs::write(out.join(BZIMAGE_FILE), bz).map_err(io("write", out.join(BZIMAGE_FILE)))?;
    }
    let module_count = match unpacked
        .modules
        .as_deref()
        .and_then(|m| release_dir(m, &release))
    {
        Some(dir) => {
            let dest = out.join(MODULES_DIR).join(&release);
            copy_tree(&dir, &dest)?;
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

fn read_limited(path: &Path) -> Result<Vec<u8>, ImageError> {
    let file = fs::File::open(path).map_err(io("open", path))?;
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
    let bytes = read_limited(path)?;
    let content_id = format!("docker://{}", Digest::of(&bytes));
    if !deb::is_deb(&bytes) {
        return Ok(Unpacked {
            image: bytes,
            modules: modules.map(Path::to_path_buf),
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
    let mut unpacker = Unpacker::new(tree);
    let label = format!("{member} of {}", path.display());
    if member.ends_with(".xz") {
        unpacker.apply(&label, liblzma::read::XzDecoder::new(data))?;
    } else {
        unpacker.apply(&label, data)?;
    }
    let boot = tree.join("boot");
    let vmlinuz = fs::read_dir(&boot)
        .map_err(io("list", &boot))?
        .flatten()
        .map(|e| e.path())
        .find(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("vmlinuz-") || n.starts_with("vmlinux-"))
        })
        .ok_or_else(|| {
            ImageError::Source(ignite_api::SourceError::new(format!(
                "{} holds no /boot/vmlinuz-*: not a kernel package",
                path.display()
            )))
        })?;
    Ok(Unpacked {
        image: read_limited(&vmlinuz)?,
        modules: modules
            .map(Path::to_path_buf)
            .or_else(|| modules_root(tree)),
        content_id,
    })
}

/// `lib/modules` (or `usr/lib/modules`) in an unpacked tree.
fn modules_root(tree: &Path) -> Option<PathBuf> {
    ["lib/modules", "usr/lib/modules"]
        .iter()
        .map(|p| tree.join(p))
        .find(|p| p.is_dir())
}

/// The directory of one release's modules: `<root>/<release>`, the only release in
/// `<root>`, or `<root>` itself when it already is one (it has `kernel/`).
fn release_dir(root: &Path, release: &str) -> Option<PathBuf> {
    if root.join(release).is_dir() {
        return Some(root.join(release));
    }
    if root.join("kernel").is_dir() || root.join("modules.builtin").is_file() {
        return Some(root.to_path_buf());
    }
    let subdirs: Vec<PathBuf> = fs::read_dir(root)
        .ok()?
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.is_dir())
        .collect();
    match subdirs.as_slice() {
        [only] => Some(only.clone()),
        _ => None,
    }
}

/// Resolves `rel` inside `tree`, following symlinks as if `tree` were `/` (an Ignite kernel
/// image's `/boot/vmlinux` is often a link to `vmlinux-<release>`).
fn resolve_in(tree: &Path, rel: &str) -> Option<PathBuf> {
    let mut path = PathBuf::from(rel);
    for _ in 0..16 {
        let full = tree.join(&path);
        let meta = fs::symlink_metadata(&full).ok()?;
        if !meta.file_type().is_symlink() {
            return meta.is_file().then_some(full);
        }
        let target = fs::read_link(&full).ok()?;
        let joined = if target.is_absolute() {
            target.strip_prefix("/").ok()?.to_path_buf()
        } else {
            path.parent().unwrap_or(Path::new("")).join(target)
        };
        // Normalise `..` without leaving the tree.
        let mut clean = PathBuf::new();
        for c in joined.components() {
            match c {
                std::path::Component::ParentDir => {
                    clean.pop();
                }
                std::path::Component::Normal(p) => clean.push(p),
                _ => {}
            }
        }
        path = clean;
    }
    None
}

/// Copies regular files and directories (symlinks such as `build` and `source`, which point
/// at kernel headers on the build host, are left out).
fn copy_tree(from: &Path, to: &Path) -> Result<(), ImageError> {
    fs::create_dir_all(to).map_err(io("create directory", to))?;
    for entry in fs::read_dir(from).map_err(io("list", from))? {
        let entry = entry.map_err(io("list", from))?;
        let kind = entry.file_type().map_err(io("inspect", entry.path()))?;
        let dest = to.join(entry.file_name());
        if kind.is_dir() {
            copy_tree(&entry.path(), &dest)?;
        } else if kind.is_file() {
            fs::copy(entry.path(), &dest).map_err(io("copy", entry.path()))?;
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
            let bytes = fs::read(root.join(rel)).map_err(io("read", root.join(rel)))?;
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

/// Moves the staged files into the kernel's directory, replacing older ones.
fn install_files(from: &Path, dir: &Path) -> Result<(), ImageError> {
    for name in [
        VMLINUX_FILE,
        BZIMAGE_FILE,
        INITRAMFS_FILE,
        MODULES_DIR,
        MODULES_DISK_FILE,
    ] {
        let src = from.join(name);
        let dest = dir.join(name);
        if fs::symlink_metadata(&dest).is_ok_and(|m| m.is_dir()) {
            fs::remove_dir_all(&dest).map_err(io("remove", &dest))?;
        }
        if src.exists() {
            fs::rename(&src, &dest).map_err(io("move into place", &dest))?;
        } else if dest.is_file() {
            fs::remove_file(&dest).map_err(io("remove", &dest))?;
        }
    }
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

/// Removes a kernel. Refused while VMs use it, unless `force`, which removes them too.
pub fn remove_kernel(
    store: &Store,
    query: &str,
    force: bool,
) -> Result<(Kernel, Vec<Vm>), ImageError> {
    let kernel = store.kernels().find(query)?;
    let users = vms_using(store, &kernel)?;
    if !users.is_empty() && !force {
        return Err(ImageError::InUse {
            image: format!("kernel {}", kernel.metadata.name),
            vms: users
                .iter()
                .map(|v| {
                    format!(
                        "{} ({})",
                        v.metadata.name,
                        v.metadata
                            .uid
                            .as_ref()
                            .map_or_else(String::new, ToString::to_string)
                    )
                })
                .collect(),
        });
    }
    crate::vms::remove_all(store, &users)?;
    store.kernels().delete(
        kernel
            .metadata
            .uid
            .as_ref()
            .expect("stored kernels have a uid"),
    )?;
    Ok((kernel, users))
}

#[cfg(test)]
mod tests {
    use super::*;

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
