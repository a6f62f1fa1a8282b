//! What a VM's guest is handed at boot: the kernel's cached initramfs (ignite-init and the
//! module closure) with the VM's own configuration appended as a second cpio archive, which
//! the kernel unpacks over the first. Rebuilt on every start, so a changed setting or
//! copied file reaches the guest on its next boot.

use std::fs;
use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use ignite_guest_protocol::config::{CONFIG_PATH, CopiedFile, FILES_DIR, GuestConfig, Workload};
use ignite_kernel::cpio::CpioWriter;

use crate::images::{ImageError, io};
use crate::kernels::INITRAMFS_FILE;

/// Copied files larger than this in total are refused: they travel in the initramfs, which
/// lives in the guest's memory until the root is switched (use a volume instead).
pub const MAX_COPIED_BYTES: u64 = 256 << 20;

/// A host file or directory to copy into the VM (`--copy-files HOST:GUEST`).
#[derive(Debug, Clone)]
pub struct FileCopy {
    pub host: PathBuf,
    pub guest: String,
}

/// Writes `out`: the kernel's initramfs followed by `config` and the copied files. The
/// `files` of `config` are filled in from `copies`.
pub fn write_vm_initramfs(
    kernel_dir: &Path,
    config: &GuestConfig,
    copies: &[FileCopy],
    out: &Path,
) -> Result<(), ImageError> {
    let base = kernel_dir.join(INITRAMFS_FILE);
    let mut config = config.clone();
    let mut payloads: Vec<(String, Vec<u8>)> = Vec::new();
    let mut total = 0u64;
    for copy in copies {
        if !copy.guest.starts_with('/') {
            return Err(bad_copy(format!(
                "--copy-files {}:{}: the VM path must be absolute",
                copy.host.display(),
                copy.guest
            )));
        }
        collect(
            &copy.host,
            &copy.guest,
            &mut config.files,
            &mut payloads,
            &mut total,
        )?;
    }

    let tmp = out.with_extension("partial");
    fs::copy(&base, &tmp).map_err(io("copy the kernel's initramfs", &base))?;
    let file = fs::OpenOptions::new()
        .append(true)
        .open(&tmp)
        .map_err(io("open", &tmp))?;
    let w = |e: std::io::Error| io("write", &tmp)(e);
    let mut cpio = CpioWriter::new(std::io::BufWriter::new(file));
    cpio.dir("etc", 0o755).map_err(w)?;
    cpio.dir("etc/ignite", 0o755).map_err(w)?;
    cpio.dir(FILES_DIR, 0o700).map_err(w)?;
    cpio.file(CONFIG_PATH, 0o600, &config.to_json())
        .map_err(w)?;
    for (name, bytes) in &payloads {
        cpio.file(&format!("{FILES_DIR}/{name}"), 0o600, bytes)
            .map_err(w)?;
    }
    let mut writer = cpio.finish().map_err(w)?;
    writer.flush().map_err(w)?;
    writer
        .into_inner()
        .map_err(|e| io("write", &tmp)(e.into_error()))?
        .sync_all()
        .map_err(w)?;
    fs::rename(&tmp, out).map_err(io("move into place", out))
}

fn bad_copy(message: String) -> ImageError {
    ImageError::Source(ignite_api::SourceError::new(message))
}

/// Adds a file, or a directory's files recursively, keeping their modes (owned by root).
fn collect(
    host: &Path,
    guest: &str,
    files: &mut Vec<CopiedFile>,
    payloads: &mut Vec<(String, Vec<u8>)>,
    total: &mut u64,
) -> Result<(), ImageError> {
    let meta = fs::metadata(host).map_err(io("read the file to copy", host))?;
    if meta.is_dir() {
        let mut entries: Vec<_> = fs::read_dir(host)
            .map_err(io("list", host))?
            .flatten()
            .collect();
        entries.sort_by_key(|e| e.file_name());
        for entry in entries {
            let name = entry.file_name().to_string_lossy().into_owned();
            collect(
                &entry.path(),
                &format!("{}/{name}", guest.trim_end_matches('/')),
                files,
                payloads,
                total,
            )?;
        }
        return Ok(());
    }
    if !meta.is_file() {
        return Err(bad_copy(format!(
            "{} is neither a file nor a directory: --copy-files takes those only",
            host.display()
        )));
    }
    *total += meta.len();
    if *total > MAX_COPIED_BYTES {
        return Err(bad_copy(format!(
            "the files to copy exceed {} MiB (at {}): they travel in the VM's initramfs; use a volume (-v) for large data",
            MAX_COPIED_BYTES >> 20,
            host.display()
        )));
    }
    let bytes = fs::read(host).map_err(io("read the file to copy", host))?;
    let name = payloads.len().to_string();
    files.push(CopiedFile {
        source: name.clone(),
        path: guest.to_string(),
        mode: meta.permissions().mode() & 0o7777,
        uid: 0,
        gid: 0,
    });
    payloads.push((name, bytes));
    Ok(())
}

/// What container mode runs for `image`: its ENTRYPOINT, CMD (replaced by `command` when
/// one is given, as `docker run IMAGE COMMAND` does), ENV, WORKDIR and USER.
/// The workload a VM runs: its image's, with what the VM's spec sets over it (command,
/// entrypoint, environment, working directory, user), with `docker run`'s rules: a new
/// entrypoint drops the image's CMD, and environment entries replace the image's by key.
pub fn workload_for(image: &ignite_api::Image, spec: &ignite_api::VmSpec) -> Workload {
    let command = spec.command.clone().unwrap_or_default();
    let mut workload = workload_of(image, &command);
    if let Some(entrypoint) = &spec.entrypoint {
        workload.entrypoint = entrypoint.clone();
        workload.cmd = command;
        workload.command_given = true;
    }
    workload.env = merge_env(workload.env, &spec.env);
    if let Some(dir) = &spec.working_dir {
        workload.working_dir = dir.clone();
    }
    if let Some(user) = &spec.user {
        workload.user = user.clone();
    }
    workload.tty = spec.tty.unwrap_or(false);
    workload
}

/// `base` with each of `over`'s `KEY=value` entries replacing the one of the same key, or
/// added after the rest.
fn merge_env(mut base: Vec<String>, over: &[String]) -> Vec<String> {
    let key = |entry: &str| entry.split_once('=').map_or(entry, |(k, _)| k).to_string();
    for entry in over {
        let k = key(entry);
        match base.iter_mut().find(|e| key(e) == k) {
            Some(existing) => existing.clone_from(entry),
            None => base.push(entry.clone()),
        }
    }
    base
}

pub fn workload_of(image: &ignite_api::Image, command: &[String]) -> Workload {
    let run = image.status.config.clone().unwrap_or_default();
    Workload {
        entrypoint: run.entrypoint,
        cmd: if command.is_empty() {
            run.cmd
        } else {
            command.to_vec()
        },
        env: run.env,
        working_dir: run.working_dir,
        user: run.user,
        command_given: !command.is_empty(),
        ..Workload::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ignite_api::{Image, VmSpec};

    fn image() -> Image {
        ignite_api::manifest::decode(
            "apiVersion: ignite.weave.works/v1alpha4\nkind: Image\nmetadata:\n  name: app\nspec:\n  oci: app:1\nstatus:\n  config:\n    entrypoint: [/bin/app]\n    cmd: [--serve]\n    env: [PATH=/usr/bin, MODE=prod]\n    workingDir: /srv\n    user: app\n",
        )
        .unwrap()
    }

    #[test]
    fn the_image_runs_as_it_says_when_the_spec_sets_nothing() {
        let w = workload_for(&image(), &VmSpec::default());
        assert_eq!(w.argv(), ["/bin/app", "--serve"]);
        assert_eq!(w.env, ["PATH=/usr/bin", "MODE=prod"]);
        assert_eq!((w.working_dir.as_str(), w.user.as_str()), ("/srv", "app"));
        assert!(!w.command_given);
    }

    #[test]
    fn the_spec_overrides_as_docker_run_does() {
        let spec = VmSpec {
            command: Some(vec!["--check".into()]),
            env: vec!["MODE=dev".into(), "EXTRA=1".into()],
            working_dir: Some("/tmp".into()),
            user: Some("1000:1000".into()),
            ..VmSpec::default()
        };
        let w = workload_for(&image(), &spec);
        assert_eq!(w.argv(), ["/bin/app", "--check"]);
        assert_eq!(w.env, ["PATH=/usr/bin", "MODE=dev", "EXTRA=1"]);
        assert_eq!(
            (w.working_dir.as_str(), w.user.as_str()),
            ("/tmp", "1000:1000")
        );
        assert!(w.command_given);

        // A new entrypoint drops the image's CMD; with a command, that follows it.
        let spec = VmSpec {
            entrypoint: Some(vec!["/bin/sh".into()]),
            ..VmSpec::default()
        };
        let w = workload_for(&image(), &spec);
        assert_eq!(w.argv(), ["/bin/sh"]);
        assert!(w.command_given);
        let spec = VmSpec {
            entrypoint: Some(vec![]),
            command: Some(vec!["/bin/true".into()]),
            ..VmSpec::default()
        };
        assert_eq!(workload_for(&image(), &spec).argv(), ["/bin/true"]);
    }
}
