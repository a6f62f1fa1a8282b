//! Which kernel modules a guest needs, and in what order to load them. A kernel `.deb`
//! ships no `modules.dep` (depmod writes it at install time), but every module names its
//! dependencies in its own `.modinfo` section (`depends=virtio,virtio_ring`).

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};

use object::{Object, ObjectSection};

use crate::error::KernelError;

/// The modules a guest needs to reach its root disk, its network and the host: virtio over
/// MMIO (QEMU microvm, Firecracker) and PCI, block, net, console, and vsock; and the balloon,
/// through which it hands the memory it frees back to the host.
pub const GUEST_MODULES: &[&str] = &[
    "virtio_mmio",
    "virtio_pci",
    "virtio_blk",
    "virtio_net",
    "virtio_console",
    "vmw_vsock_virtio_transport",
    "virtio_balloon",
];

/// Module names treat `-` and `_` alike.
pub fn normalize(name: &str) -> String {
    name.replace('-', "_")
}

/// The largest module (or index) file read into memory.
pub const MAX_MODULE_BYTES: u64 = 256 << 20;

/// Reads a file of at most `limit` bytes (never following a final symlink); larger ones
/// are refused, not read.
pub fn read_capped(path: &Path, limit: u64) -> Result<Vec<u8>, KernelError> {
    use std::io::Read;
    use std::os::unix::fs::OpenOptionsExt;
    let err = |source| {
        KernelError::Io(ignite_host_tools::PathError::new(
            "read",
            path.to_path_buf(),
            source,
        ))
    };
    let file = fs::OpenOptions::new()
        .read(true)
        .custom_flags(rustix::fs::OFlags::NOFOLLOW.bits() as i32)
        .open(path)
        .map_err(err)?;
    let mut bytes = Vec::new();
    file.take(limit + 1).read_to_end(&mut bytes).map_err(err)?;
    if bytes.len() as u64 > limit {
        return Err(KernelError::NotAKernel(format!(
            "{} is larger than {limit} bytes, more than any kernel module",
            path.display()
        )));
    }
    Ok(bytes)
}

/// The `key=value` pairs of a module's `.modinfo` section.
pub fn modinfo(ko: &[u8]) -> Result<Vec<(String, String)>, String> {
    let file = object::File::parse(ko).map_err(|e| format!("not an ELF module: {e}"))?;
    let section = file
        .section_by_name(".modinfo")
        .ok_or("it has no .modinfo section")?;
    let data = section
        .data()
        .map_err(|e| format!("unreadable .modinfo: {e}"))?;
    Ok(data
        .split(|b| *b == 0)
        .filter_map(|entry| {
            let text = std::str::from_utf8(entry).ok()?;
            let (k, v) = text.split_once('=')?;
            Some((k.to_string(), v.to_string()))
        })
        .collect())
}

/// The modules of one kernel (`lib/modules/<release>`), by name.
#[derive(Debug, Default)]
pub struct ModuleIndex {
    root: PathBuf,
    /// name -> path relative to `root`
    modules: BTreeMap<String, PathBuf>,
    builtin: BTreeSet<String>,
}

impl ModuleIndex {
    /// Indexes every `.ko` under `dir` and reads `modules.builtin` if present.
    pub fn scan(dir: &Path) -> Result<ModuleIndex, KernelError> {
        let mut index = ModuleIndex {
            root: dir.to_path_buf(),
            ..ModuleIndex::default()
        };
        let mut stack = vec![dir.to_path_buf()];
        while let Some(d) = stack.pop() {
            let entries = fs::read_dir(&d).map_err(|source| {
                KernelError::Io(ignite_host_tools::PathError::new("list", d.clone(), source))
            })?;
            for entry in entries.flatten() {
                let path = entry.path();
                let Ok(kind) = entry.file_type() else {
                    continue;
                };
                if kind.is_dir() {
                    stack.push(path);
                } else if let Some(name) = path
                    .file_name()
                    .and_then(|n| n.to_str())
                    .and_then(|n| n.strip_suffix(".ko"))
                {
                    let rel = path.strip_prefix(dir).unwrap_or(&path).to_path_buf();
                    index.modules.insert(normalize(name), rel);
                }
            }
        }
        if let Ok(bytes) = read_capped(&dir.join("modules.builtin"), MAX_MODULE_BYTES) {
            let text = String::from_utf8_lossy(&bytes);
            for line in text.lines() {
                if let Some(name) = Path::new(line)
                    .file_name()
                    .and_then(|n| n.to_str())
                    .and_then(|n| n.strip_suffix(".ko"))
                {
                    index.builtin.insert(normalize(name));
                }
            }
        }
        Ok(index)
    }

    pub fn len(&self) -> usize {
        self.modules.len()
    }

    pub fn is_empty(&self) -> bool {
        self.modules.is_empty()
    }

    /// The path of a module, relative to the modules directory.
    pub fn path(&self, name: &str) -> Option<&Path> {
        self.modules.get(&normalize(name)).map(PathBuf::as_path)
    }

    /// The modules needed for `roots`, dependencies first (the order to load them in).
    /// Roots built into the kernel need nothing; roots found nowhere are returned apart.
    pub fn closure(&self, roots: &[&str]) -> Result<Closure, KernelError> {
        let mut closure = Closure::default();
        let mut visiting = BTreeSet::new();
        let mut done = BTreeSet::new();
        for root in roots {
            let name = normalize(root);
            if self.modules.contains_key(&name) {
                self.visit(&name, &mut visiting, &mut done, &mut closure.load_order)?;
            } else if !self.builtin.contains(&name) {
                closure.missing.push(name);
            }
        }
        Ok(closure)
    }

    fn visit(
        &self,
        name: &str,
        visiting: &mut BTreeSet<String>,
        done: &mut BTreeSet<String>,
        order: &mut Vec<String>,
    ) -> Result<(), KernelError> {
        if done.contains(name) || self.builtin.contains(name) {
            return Ok(());
        }
        if !visiting.insert(name.to_string()) {
            return Err(KernelError::Module {
                module: name.to_string(),
                reason: "its dependencies form a cycle".into(),
            });
        }
        let path = self.root.join(&self.modules[name]);
        let bytes = read_capped(&path, MAX_MODULE_BYTES)?;
        let info = modinfo(&bytes).map_err(|reason| KernelError::Module {
            module: name.to_string(),
            reason,
        })?;
        for (key, value) in info {
            if key != "depends" {
                continue;
            }
            for dep in value.split(',').filter(|d| !d.is_empty()) {
                let dep = normalize(dep);
                if self.modules.contains_key(&dep) {
                    self.visit(&dep, visiting, done, order)?;
                } else if !self.builtin.contains(&dep) {
                    return Err(KernelError::Module {
                        module: name.to_string(),
                        reason: format!("it depends on {dep}, which this kernel does not have"),
                    });
                }
            }
        }
        visiting.remove(name);
        done.insert(name.to_string());
        order.push(name.to_string());
        Ok(())
    }
}

/// The result of [`ModuleIndex::closure`].
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Closure {
    /// Module names, dependencies before the modules that need them.
    pub load_order: Vec<String>,
    /// Roots that are neither modules nor built in.
    pub missing: Vec<String>,
}
