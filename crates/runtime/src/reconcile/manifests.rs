//! Desired state from manifest files: every `.yaml`, `.yml` and `.json` file of a directory
//! (recursively, skipping hidden entries such as `.git`), or one file. VMs are known by
//! `metadata.name`; a `metadata.uid` is not needed. A broken manifest is reported with its
//! file and does not keep the others from being applied. Symbolic links inside the
//! directory (files or directories) are refused, each with an error, never followed.

use std::path::{Path, PathBuf};

use ignite_api::Vm;
use ignite_api::manifest::{self, Object};
use ignite_api::validation::validate_vm_manifest;

/// A VM as a manifest wants it.
#[derive(Debug, Clone, PartialEq)]
pub struct Desired {
    /// The manifest as written (its spec before any defaults).
    pub vm: Vm,
    /// `status.running` in the manifest; true when the manifest does not say.
    pub running: bool,
    pub file: PathBuf,
    /// The file's text as read (status write-back leaves files edited since alone).
    pub text: String,
}

impl Desired {
    pub fn name(&self) -> &str {
        &self.vm.metadata.name
    }
}

#[derive(Debug, Default)]
pub struct ManifestSet {
    pub vms: Vec<Desired>,
    /// Files that could not be read or are invalid, with why.
    pub errors: Vec<(PathBuf, String)>,
    /// Objects of other kinds (images, kernels, configurations), left alone.
    pub ignored: usize,
}

/// The manifests at `path` (a file or a directory).
pub fn load(path: &Path) -> ManifestSet {
    let mut set = ManifestSet::default();
    let mut files = Vec::new();
    if path.is_dir() {
        collect(path, &mut files, &mut set.errors);
        files.sort();
    } else {
        // One file named by the operator (`ignite apply -f`): a link there is their choice
        // and is resolved; links found inside a directory are not.
        files.push(std::fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf()));
    }
    for file in files {
        match read(&file) {
            Ok(Some(desired)) => set.vms.push(desired),
            Ok(None) => set.ignored += 1,
            Err(e) => set.errors.push((file, e)),
        }
    }
    // Two manifests naming the same VM: neither is applied.
    let mut names: Vec<&str> = set.vms.iter().map(Desired::name).collect();
    names.sort_unstable();
    let duplicates: Vec<String> = names
        .windows(2)
        .filter(|w| w[0] == w[1])
        .map(|w| w[0].to_string())
        .collect();
    if !duplicates.is_empty() {
        let (dup, keep): (Vec<Desired>, Vec<Desired>) = std::mem::take(&mut set.vms)
            .into_iter()
            .partition(|d| duplicates.iter().any(|n| n == d.name()));
        set.vms = keep;
        for d in dup {
            set.errors.push((
                d.file,
                format!(
                    "another manifest also names VM {:?}: rename one of them",
                    d.vm.metadata.name
                ),
            ));
        }
    }
    set
}

fn collect(dir: &Path, files: &mut Vec<PathBuf>, errors: &mut Vec<(PathBuf, String)>) {
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) => {
            errors.push((dir.to_path_buf(), format!("cannot read the directory: {e}")));
            return;
        }
    };
    for entry in entries.flatten() {
        let path = entry.path();
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if name.starts_with('.') {
            continue;
        }
        let Ok(kind) = entry.file_type() else {
            continue;
        };
        let manifest_name = [".yaml", ".yml", ".json"]
            .iter()
            .any(|ext| name.ends_with(ext));
        if kind.is_symlink() {
            // file_type() does not follow links: a link to a file or a directory elsewhere
            // on the host is refused here rather than read.
            if manifest_name {
                errors.push((
                    path.clone(),
                    super::files::FileError::Symlink(path).to_string(),
                ));
            } else if std::fs::metadata(&path).is_ok_and(|m| m.is_dir()) {
                errors.push((
                    path.clone(),
                    format!(
                        "{} is a symbolic link to a directory: links are not followed; commit the directory itself",
                        path.display()
                    ),
                ));
            }
            continue;
        }
        if kind.is_dir() {
            collect(&path, files, errors);
        } else if manifest_name {
            files.push(path);
        }
    }
}

/// Whether `text` is a fleet host's heartbeat (`hosts/NAME.yaml` in a GitOps repository),
/// which is not a VM and is passed over like other kinds.
fn is_heartbeat(text: &str) -> bool {
    use super::placement::{HEARTBEAT_API_VERSION, HEARTBEAT_KIND};
    manifest::decode::<serde_json::Value>(text).is_ok_and(|t| {
        t.get("apiVersion").and_then(serde_json::Value::as_str) == Some(HEARTBEAT_API_VERSION)
            && t.get("kind").and_then(serde_json::Value::as_str) == Some(HEARTBEAT_KIND)
    })
}

/// One manifest: a VM, `None` for another kind, or why it cannot be used.
fn read(file: &Path) -> Result<Option<Desired>, String> {
    let text = super::files::read_manifest(file).map_err(|e| e.to_string())?;
    if is_heartbeat(&text) {
        return Ok(None);
    }
    let object = manifest::decode_object(&text).map_err(|e| e.to_string())?;
    let Object::Vm(vm) = object else {
        return Ok(None);
    };
    let vm = *vm;
    if vm.metadata.name.is_empty() {
        return Err("the VM has no metadata.name: name it".into());
    }
    validate_vm_manifest(&vm).map_err(|e| e.to_string())?;
    // `status.running` absent means running: a manifest describes a VM to run.
    let tree: serde_json::Value = manifest::decode(&text).map_err(|e| e.to_string())?;
    let running = tree
        .pointer("/status/running")
        .and_then(serde_json::Value::as_bool)
        .unwrap_or(true);
    Ok(Some(Desired {
        vm,
        running,
        file: file.to_path_buf(),
        text,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    const VM: &str = "apiVersion: ignite.weave.works/v1alpha4\nkind: VM\nmetadata:\n  name: NAME\nspec:\n  image: {oci: busybox}\n  cpus: 2\n";

    #[test]
    fn a_directory_of_manifests_loads_with_errors_apart() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path();
        std::fs::write(p.join("a.yaml"), VM.replace("NAME", "a")).unwrap();
        std::fs::write(
            p.join("b.yml"),
            VM.replace("NAME", "b") + "status:\n  running: false\n",
        )
        .unwrap();
        std::fs::create_dir(p.join("sub")).unwrap();
        std::fs::write(
            p.join("sub/c.json"),
            r#"{"apiVersion":"ignite.weave.works/v1alpha4","kind":"VM","metadata":{"name":"c"},"spec":{"image":{"oci":"busybox"}}}"#,
        )
        .unwrap();
        std::fs::write(p.join("broken.yaml"), "kind: VM\nspec: [").unwrap();
        std::fs::write(p.join("noname.yaml"), VM.replace("NAME", "\"\"")).unwrap();
        std::fs::write(p.join("notes.txt"), "not a manifest").unwrap();
        std::fs::create_dir(p.join(".git")).unwrap();
        std::fs::write(p.join(".git/x.yaml"), "garbage: [").unwrap();
        std::fs::write(
            p.join("image.yaml"),
            "apiVersion: ignite.weave.works/v1alpha4\nkind: Image\nmetadata:\n  name: x\nspec:\n  oci: busybox\n",
        )
        .unwrap();
        std::fs::create_dir(p.join("hosts")).unwrap();
        std::fs::write(
            p.join("hosts/node1.yaml"),
            "apiVersion: ignite.rs/v1alpha1\nkind: Host\nmetadata:\n  name: node1\n",
        )
        .unwrap();
        let set = load(p);
        let names: Vec<(&str, bool)> = set.vms.iter().map(|d| (d.name(), d.running)).collect();
        assert_eq!(names, [("a", true), ("b", false), ("c", true)]);
        assert_eq!(set.ignored, 2);
        let bad: Vec<String> = set
            .errors
            .iter()
            .map(|(f, _)| f.file_name().unwrap().to_string_lossy().into_owned())
            .collect();
        assert_eq!(bad, ["broken.yaml", "noname.yaml"]);
        assert!(set.errors[1].1.contains("metadata.name"));
    }

    #[test]
    fn symlinked_manifests_and_directories_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let outside = tempfile::tempdir().unwrap();
        std::fs::write(outside.path().join("x.yaml"), VM.replace("NAME", "x")).unwrap();
        std::os::unix::fs::symlink(outside.path().join("x.yaml"), dir.path().join("x.yaml"))
            .unwrap();
        std::os::unix::fs::symlink(outside.path(), dir.path().join("sub")).unwrap();
        std::fs::write(dir.path().join("a.yaml"), VM.replace("NAME", "a")).unwrap();
        let set = load(dir.path());
        assert_eq!(set.vms.len(), 1);
        let errors: Vec<&str> = set.errors.iter().map(|(_, e)| e.as_str()).collect();
        assert_eq!(errors.len(), 2, "{errors:?}");
        assert!(
            errors.iter().all(|e| e.contains("symbolic link")),
            "{errors:?}"
        );
        // One file named directly by the operator: resolved.
        let one = load(&dir.path().join("x.yaml"));
        assert_eq!(one.vms.len(), 1);
    }

    #[test]
    fn two_manifests_naming_one_vm_are_both_refused() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("1.yaml"), VM.replace("NAME", "x")).unwrap();
        std::fs::write(dir.path().join("2.yaml"), VM.replace("NAME", "x")).unwrap();
        let set = load(dir.path());
        assert!(set.vms.is_empty());
        assert_eq!(set.errors.len(), 2);
        assert!(set.errors[0].1.contains("another manifest"));
    }
}
