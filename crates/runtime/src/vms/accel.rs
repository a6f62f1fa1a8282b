//! Which accelerator a VM gets: `--accel`, then `IGNITE_ACCEL`, then the Configuration,
//! then `auto` (KVM when /dev/kvm can be opened for reading and writing, TCG otherwise).

use ignite_vmm::Accel;

pub const ACCEL_ENV: &str = "IGNITE_ACCEL";
pub const KVM_DEVICE: &str = "/dev/kvm";

pub fn parse(value: &str) -> Result<Option<Accel>, String> {
    match value {
        "auto" | "" => Ok(None),
        "kvm" => Ok(Some(Accel::Kvm)),
        "tcg" => Ok(Some(Accel::Tcg)),
        other => Err(format!(
            "unknown accelerator {other:?}: use auto, kvm or tcg"
        )),
    }
}

/// Resolves the accelerator from the flag, then `IGNITE_ACCEL`, then the Configuration.
pub fn resolve(flag: Option<&str>, configured: Option<&str>) -> Result<Accel, String> {
    let env = std::env::var(ACCEL_ENV).ok();
    let asked = match flag.or(env.as_deref()).or(configured) {
        Some(v) => parse(v)?,
        None => None,
    };
    match asked {
        Some(Accel::Kvm) if !kvm_usable() => Err(format!(
            "KVM was asked for, but {KVM_DEVICE} cannot be opened: load the kvm module and join the kvm group, or use --accel tcg"
        )),
        Some(a) => Ok(a),
        None if kvm_usable() => Ok(Accel::Kvm),
        None => Ok(Accel::Tcg),
    }
}

pub fn kvm_usable() -> bool {
    std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(KVM_DEVICE)
        .is_ok()
}

pub fn name(accel: Accel) -> &'static str {
    match accel {
        Accel::Kvm => "kvm",
        Accel::Tcg => "tcg",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_parse_and_bad_ones_say_what_is_allowed() {
        assert_eq!(parse("tcg").unwrap(), Some(Accel::Tcg));
        assert_eq!(parse("kvm").unwrap(), Some(Accel::Kvm));
        assert_eq!(parse("auto").unwrap(), None);
        assert!(parse("hvf").unwrap_err().contains("auto, kvm or tcg"));
        assert_eq!(resolve(Some("tcg"), Some("kvm")).unwrap(), Accel::Tcg);
        assert!(resolve(Some("nope"), None).is_err());
    }
}
