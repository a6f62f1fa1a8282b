//! Status written back into manifest files (`ignited`): the desired `running` made
//! explicit, the VM's addresses while it runs, and the last error applying it. The file
//! is rewritten in its own format (JSON or YAML; comments are not kept), atomically, and
//! only when the status changed and nobody edited the file since it was read. The file
//! is never a symbolic link (refused), and its temporary file is created anew with
//! O_CREAT|O_EXCL|O_NOFOLLOW (a planted link at that name is removed, not followed).

use std::net::IpAddr;
use std::path::Path;

use ignite_api::manifest::{self, Format};
use serde_json::{Value, json};

use super::files::{FileError, create_new, read_manifest};

/// What is written into `status`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObservedStatus {
    /// The desired state, as the manifest says (true when it did not say).
    pub running: bool,
    pub ip_addresses: Vec<IpAddr>,
    pub error: Option<String>,
}

/// Rewrites `file`'s status when it differs; `expected` is the text the manifest was
/// read from (a file changed since is left alone: its next read wins). Returns whether
/// the file was written.
pub fn write_back(file: &Path, expected: &str, status: &ObservedStatus) -> Result<bool, FileError> {
    let text = read_manifest(file)?;
    if text != expected {
        return Ok(false);
    }
    let Ok(mut tree) = manifest::decode::<Value>(&text) else {
        return Ok(false);
    };
    let Some(object) = tree.as_object_mut() else {
        return Ok(false);
    };
    let entry = object
        .entry("status")
        .or_insert_with(|| Value::Object(Default::default()));
    if !entry.is_object() {
        *entry = Value::Object(Default::default());
    }
    let s = entry.as_object_mut().expect("an object");
    s.insert("running".into(), Value::Bool(status.running));
    if status.ip_addresses.is_empty() {
        s.remove("network");
    } else {
        let ips: Vec<String> = status
            .ip_addresses
            .iter()
            .map(ToString::to_string)
            .collect();
        s.insert(
            "network".into(),
            json!({"plugin": "ignite", "ipAddresses": ips}),
        );
    }
    match &status.error {
        Some(e) => s.insert("error".into(), Value::String(e.clone())),
        None => s.remove("error"),
    };
    let new = match manifest::detect_format(&text) {
        Format::Json => manifest::to_json(&tree),
        Format::Yaml => manifest::to_yaml(&tree),
    };
    if new == text || same_tree(&text, &tree) {
        return Ok(false);
    }
    let tmp = file.with_file_name(format!(
        ".{}.ignite-tmp",
        file.file_name().unwrap_or_default().to_string_lossy()
    ));
    create_new(&tmp, new.as_bytes())?;
    // rename(2) replaces the name `file`; it does not follow a link there.
    std::fs::rename(&tmp, file).map_err(|source| {
        let _ = std::fs::remove_file(&tmp);
        FileError::Io(ignite_host_tools::PathError::new("replace", file, source))
    })?;
    Ok(true)
}

/// Whether `text` already says `tree` (the write would change formatting only).
fn same_tree(text: &str, tree: &Value) -> bool {
    manifest::decode::<Value>(text).ok().as_ref() == Some(tree)
}

#[cfg(test)]
mod tests {
    use super::*;

    const VM: &str = "apiVersion: ignite.weave.works/v1alpha4\nkind: VM\nmetadata:\n  name: web\nspec:\n  image:\n    oci: busybox\n";

    #[test]
    fn a_planted_temporary_link_is_not_followed() {
        let dir = tempfile::tempdir().unwrap();
        let outside = tempfile::tempdir().unwrap();
        let canary = outside.path().join("shadow");
        std::fs::write(&canary, "root:x:0:0\n").unwrap();
        let file = dir.path().join("web.yaml");
        std::fs::write(&file, VM).unwrap();
        std::os::unix::fs::symlink(&canary, dir.path().join(".web.yaml.ignite-tmp")).unwrap();
        let status = ObservedStatus {
            running: true,
            ip_addresses: vec![],
            error: None,
        };
        assert!(write_back(&file, VM, &status).unwrap());
        assert_eq!(std::fs::read_to_string(&canary).unwrap(), "root:x:0:0\n");
        assert!(
            std::fs::read_to_string(&file)
                .unwrap()
                .contains("running: true")
        );
        assert!(!dir.path().join(".web.yaml.ignite-tmp").exists());
        // A manifest that is a link is not written through.
        let link = dir.path().join("link.yaml");
        std::fs::write(&canary, VM).unwrap();
        std::os::unix::fs::symlink(&canary, &link).unwrap();
        let e = write_back(&link, VM, &status).unwrap_err();
        assert!(e.to_string().contains("symbolic link"), "{e}");
        assert_eq!(std::fs::read_to_string(&canary).unwrap(), VM);
    }

    #[test]
    fn status_is_written_once_and_edits_win() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("web.yaml");
        std::fs::write(&file, VM).unwrap();
        let status = ObservedStatus {
            running: true,
            ip_addresses: vec!["10.61.0.2".parse().unwrap()],
            error: None,
        };
        assert!(write_back(&file, VM, &status).unwrap());
        let text = std::fs::read_to_string(&file).unwrap();
        let vm: ignite_api::Vm = manifest::decode(&text).unwrap();
        assert!(vm.status.running);
        assert_eq!(
            vm.status.ip_addresses(),
            &["10.61.0.2".parse::<IpAddr>().unwrap()]
        );
        // The same status again: no write.
        assert!(!write_back(&file, &text, &status).unwrap());
        // An error, then cleared.
        let failed = ObservedStatus {
            error: Some("no such image".into()),
            ..status.clone()
        };
        assert!(write_back(&file, &text, &failed).unwrap());
        let text = std::fs::read_to_string(&file).unwrap();
        assert!(text.contains("no such image"));
        assert!(write_back(&file, &text, &status).unwrap());
        assert!(!std::fs::read_to_string(&file).unwrap().contains("error"));
        // Edited since it was read: left alone.
        assert!(!write_back(&file, VM, &failed).unwrap());
        // JSON stays JSON.
        let json_file = dir.path().join("web.json");
        let json = r#"{"apiVersion":"ignite.weave.works/v1alpha4","kind":"VM","metadata":{"name":"web"},"spec":{"image":{"oci":"busybox"}},"status":{"running":false}}"#;
        std::fs::write(&json_file, json).unwrap();
        let stopped = ObservedStatus {
            running: false,
            ip_addresses: vec![],
            error: None,
        };
        assert!(!write_back(&json_file, json, &stopped).unwrap());
        assert!(write_back(&json_file, json, &status).unwrap());
        assert!(
            std::fs::read_to_string(&json_file)
                .unwrap()
                .starts_with('{')
        );
    }
}
