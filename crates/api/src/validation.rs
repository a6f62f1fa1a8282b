//! Checks that an object makes sense before anything acts on it. Every problem is
//! reported with the field's path and the offending value.

use std::collections::HashSet;
use std::fmt;
use std::net::IpAddr;
use std::path::Path;

use crate::configuration::Configuration;
use crate::meta::ObjectMeta;
use crate::vm::{Ssh, Vm, VmSpec};

const MAX_CPUS: u64 = 256;
const MAX_CMDLINE: usize = 4096;

/// One problem with one field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldError {
    /// The field's path, e.g. `spec.network.ports[1].hostPort`.
    pub field: String,
    /// The offending value as the user wrote it.
    pub value: String,
    pub reason: String,
}

impl fmt::Display for FieldError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}: invalid value {:?}: {}",
            self.field, self.value, self.reason
        )
    }
}

/// All problems found in an object.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct ValidationError {
    pub errors: Vec<FieldError>,
}

impl fmt::Display for ValidationError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.errors.iter().enumerate() {
            if i > 0 {
                f.write_str("; ")?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

#[derive(Default)]
struct Errors(Vec<FieldError>);

impl Errors {
    fn add(
        &mut self,
        field: impl Into<String>,
        value: impl fmt::Display,
        reason: impl Into<String>,
    ) {
        self.0.push(FieldError {
            field: field.into(),
            value: value.to_string(),
            reason: reason.into(),
        });
    }

    fn finish(self) -> Result<(), ValidationError> {
        if self.0.is_empty() {
            Ok(())
        } else {
            Err(ValidationError { errors: self.0 })
        }
    }
}

/// Is `name` a DNS-1123 subdomain (lowercase letters, digits, '-' and '.', at most 253
/// characters, starting and ending with a letter or digit)?
pub fn is_dns1123_subdomain(name: &str) -> bool {
    let alnum = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit();
    !name.is_empty()
        && name.len() <= 253
        && name.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && label.starts_with(alnum)
                && label.ends_with(alnum)
                && label.chars().all(|c| alnum(c) || c == '-')
        })
}

fn check_name(errors: &mut Errors, meta: &ObjectMeta, required: bool) {
    if meta.name.is_empty() {
        if required {
            errors.add("metadata.name", "", "a name is required");
        }
    } else if !is_dns1123_subdomain(&meta.name) {
        errors.add(
            "metadata.name",
            &meta.name,
            "must be a DNS-1123 subdomain: lowercase letters, digits, '-' and '.', \
             starting and ending with a letter or digit, at most 253 characters",
        );
    }
    for key in meta.labels.keys() {
        if key.is_empty() || key.contains(char::is_whitespace) || key.contains('=') {
            errors.add(
                format!("metadata.labels[{key:?}]"),
                key,
                "label keys must be non-empty, without '=' or spaces",
            );
        }
    }
}

fn check_absolute(errors: &mut Errors, field: String, path: &Path) {
    if !path.is_absolute() {
        errors.add(field, path.display(), "must be an absolute path");
    }
}

/// Validates a VM ready to be stored: its name, image, and the whole spec.
pub fn validate_vm(vm: &Vm) -> Result<(), ValidationError> {
    let mut errors = Errors::default();
    check_name(&mut errors, &vm.metadata, true);
    if vm.spec.image.is_none() {
        errors.add("spec.image.oci", "", "an image is required");
    }
    check_spec(&mut errors, "spec", &vm.spec);
    errors.finish()
}

/// Validates a VM manifest given with `--config`: like [`validate_vm`] but the name may
/// still be generated and the image may come from the command line.
pub fn validate_vm_manifest(vm: &Vm) -> Result<(), ValidationError> {
    let mut errors = Errors::default();
    check_name(&mut errors, &vm.metadata, false);
    check_spec(&mut errors, "spec", &vm.spec);
    errors.finish()
}

/// Validates a Configuration, including its VM defaults.
pub fn validate_configuration(config: &Configuration) -> Result<(), ValidationError> {
    let mut errors = Errors::default();
    let spec = &config.spec;
    if let Some(rt) = &spec.runtime
        && !["containerd", "docker"].contains(&rt.as_str())
    {
        errors.add(
            "spec.runtime",
            rt,
            "must be containerd or docker (accepted for Ignite compatibility)",
        );
    }
    for (i, engine) in spec.engine_lookup.iter().flatten().enumerate() {
        if !["containerd", "docker"].contains(&engine.as_str()) {
            errors.add(
                format!("spec.engineLookup[{i}]"),
                engine,
                "must be containerd or docker",
            );
        }
    }
    if let Some(a) = &spec.accel
        && !["auto", "kvm", "tcg"].contains(&a.as_str())
    {
        errors.add("spec.accel", a, "must be auto, kvm or tcg");
    }
    if let Some(p) = &spec.network_plugin
        && !["cni", "docker-bridge"].contains(&p.as_str())
    {
        errors.add("spec.networkPlugin", p, "must be cni or docker-bridge");
    }
    if let Some(cni) = &spec.cni {
        if let Some(dir) = &cni.conf_dir {
            check_absolute(&mut errors, "spec.cni.confDir".into(), dir);
        }
        for (i, dir) in cni.bin_dirs.iter().enumerate() {
            check_absolute(&mut errors, format!("spec.cni.binDirs[{i}]"), dir);
        }
    }
    if let Some(dir) = &spec.registry_config_dir {
        check_absolute(&mut errors, "spec.registryConfigDir".into(), dir);
    }
    if let Some(prefix) = &spec.id_prefix
        && !(prefix.is_empty() || is_dns1123_subdomain(prefix))
    {
        errors.add(
            "spec.idPrefix",
            prefix,
            "must be lowercase letters, digits, '-' and '.'",
        );
    }
    check_spec(&mut errors, "spec.vmDefaults", &spec.vm_defaults);
    errors.finish()
}

fn check_spec(errors: &mut Errors, at: &str, spec: &VmSpec) {
    if let Some(cpus) = spec.cpus
        && !(1..=MAX_CPUS).contains(&cpus)
    {
        errors.add(
            format!("{at}.cpus"),
            cpus,
            format!("must be between 1 and {MAX_CPUS}"),
        );
    }
    if let Some(quota) = spec.cpu_quota
        && !(quota.is_finite() && (0.01..=MAX_CPUS as f64).contains(&quota))
    {
        errors.add(
            format!("{at}.cpuQuota"),
            quota,
            format!("must be a number of cores between 0.01 and {MAX_CPUS} (0.5: half a core)"),
        );
    }
    if let Some(memory) = spec.memory
        && memory.mib() == 0
    {
        errors.add(
            format!("{at}.memory"),
            memory.to_manifest_string(),
            "must be at least 1MB",
        );
    }
    if let Some(size) = spec.disk_size
        && size.is_zero()
    {
        errors.add(format!("{at}.diskSize"), "0B", "must be greater than zero");
    }
    if let Some(cmdline) = spec.kernel.as_ref().and_then(|k| k.cmd_line.as_ref())
        && (cmdline.len() > MAX_CMDLINE || cmdline.contains(['\n', '\0']))
    {
        errors.add(
            format!("{at}.kernel.cmdLine"),
            cmdline,
            format!("must be one line of at most {MAX_CMDLINE} characters"),
        );
    }

    if let Some(name) = &spec.network.cni_network
        && (name.is_empty() || name.len() > 128 || name.chars().any(char::is_control))
    {
        errors.add(
            format!("{at}.network.cniNetwork"),
            name,
            "must be the name of a CNI network configuration (1 to 128 characters)",
        );
    }
    let mut host_ports: Vec<(Option<IpAddr>, u16, crate::ports::Protocol)> = Vec::new();
    for (i, p) in spec.network.ports.iter().enumerate() {
        let field = format!("{at}.network.ports[{i}]");
        if p.host_port == 0 {
            errors.add(
                format!("{field}.hostPort"),
                0,
                "must be between 1 and 65535",
            );
        }
        if p.vm_port == 0 {
            errors.add(format!("{field}.vmPort"), 0, "must be between 1 and 65535");
        }
        let clash = host_ports.iter().any(|(addr, port, proto)| {
            *port == p.host_port
                && *proto == p.protocol()
                && (addr.is_none() || p.bind_address.is_none() || *addr == p.bind_address)
        });
        if clash {
            errors.add(
                field,
                p,
                "the same host port and protocol is forwarded twice",
            );
        }
        host_ports.push((p.bind_address, p.host_port, p.protocol()));
    }

    let mut volume_names = HashSet::new();
    let mut device_paths = HashSet::new();
    for (i, v) in spec.storage.volumes.iter().enumerate() {
        let field = format!("{at}.storage.volumes[{i}]");
        if v.name.is_empty() {
            errors.add(format!("{field}.name"), "", "a volume needs a name");
        } else if !volume_names.insert(v.name.as_str()) {
            errors.add(format!("{field}.name"), &v.name, "duplicate volume name");
        }
        match &v.block_device {
            None => errors.add(
                format!("{field}.blockDevice"),
                "",
                "a volume needs a blockDevice",
            ),
            Some(dev) => {
                check_absolute(errors, format!("{field}.blockDevice.path"), &dev.path);
                if !device_paths.insert(dev.path.as_path()) {
                    errors.add(
                        format!("{field}.blockDevice.path"),
                        dev.path.display(),
                        "the same device is used by two volumes",
                    );
                }
            }
        }
    }
    let mut mount_names = HashSet::new();
    let mut mount_paths = HashSet::new();
    for (i, m) in spec.storage.volume_mounts.iter().enumerate() {
        let field = format!("{at}.storage.volumeMounts[{i}]");
        if !volume_names.contains(m.name.as_str()) {
            errors.add(format!("{field}.name"), &m.name, "no volume has this name");
        }
        if !mount_names.insert(m.name.as_str()) {
            errors.add(
                format!("{field}.name"),
                &m.name,
                "the volume is mounted twice",
            );
        }
        check_absolute(errors, format!("{field}.mountPath"), &m.mount_path);
        if m.mount_path == Path::new("/") {
            errors.add(
                format!("{field}.mountPath"),
                "/",
                "a volume cannot be mounted over the root filesystem",
            );
        }
        if !mount_paths.insert(m.mount_path.as_path()) {
            errors.add(
                format!("{field}.mountPath"),
                m.mount_path.display(),
                "two volumes are mounted at the same path",
            );
        }
    }

    let mut vm_paths = HashSet::new();
    for (i, c) in spec.copy_files.iter().enumerate() {
        let field = format!("{at}.copyFiles[{i}]");
        check_absolute(errors, format!("{field}.hostPath"), &c.host_path);
        check_absolute(errors, format!("{field}.vmPath"), &c.vm_path);
        if !vm_paths.insert(c.vm_path.as_path()) {
            errors.add(
                format!("{field}.vmPath"),
                c.vm_path.display(),
                "two files are copied to the same path",
            );
        }
    }

    if let Some(Ssh::PublicKey(path)) = &spec.ssh {
        check_absolute(errors, format!("{at}.ssh"), path);
    }

    if let Some(cmd) = &spec.command
        && cmd.first().is_none_or(String::is_empty)
    {
        errors.add(
            format!("{at}.command"),
            format!("{cmd:?}"),
            "a command needs at least a program name",
        );
    }

    for (i, entry) in spec.env.iter().enumerate() {
        let key = entry.split_once('=').map_or("", |(k, _)| k);
        if key.is_empty() || key.contains(char::is_whitespace) || entry.contains('\0') {
            errors.add(
                format!("{at}.env[{i}]"),
                entry,
                "must be KEY=value with a key that has no spaces",
            );
        }
    }
    if let Some(dir) = &spec.working_dir
        && !dir.starts_with('/')
    {
        errors.add(
            format!("{at}.workingDir"),
            dir,
            "must be an absolute path in the VM",
        );
    }
    if let Some(user) = &spec.user
        && (user.is_empty()
            || user.starts_with(':')
            || user.ends_with(':')
            || user.contains(|c: char| c.is_whitespace() || c == '/'))
    {
        errors.add(
            format!("{at}.user"),
            user,
            "must be a user name or uid, optionally :group or :gid",
        );
    }
}
