//! Which host runs a manifest's VM: the label `ignite.rs/host: NAME`. Several `ignited`
//! following one Git repository each run the VMs placed on them; a VM with no placement
//! runs only on a host that adopts unplaced VMs, so two hosts never both run one VM.
//!
//! Host names come from Git (written by anyone who can push) and become file names
//! (`hosts/NAME.yaml`): only DNS-like names are accepted, never a path.

use std::fmt;

use super::manifests::Desired;

/// The label that places a VM on a host.
pub const HOST_LABEL: &str = "ignite.rs/host";
/// The apiVersion and kind of a host's heartbeat file (`hosts/NAME.yaml` in a fleet's
/// repository): not a VM, so manifest directories pass over it.
pub const HEARTBEAT_API_VERSION: &str = "ignite.rs/v1alpha1";
pub const HEARTBEAT_KIND: &str = "Host";
/// The longest host name (a DNS name's limit).
pub const MAX_HOST_NAME: usize = 253;

/// A host name that is safe as a label value and as a file name.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct HostName(String);

/// Why a host name was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "{name:?} is not a host name ({why}): use letters, digits, '-', '_' and '.', starting and ending with a letter or digit, at most {MAX_HOST_NAME} characters"
)]
pub struct HostNameError {
    name: String,
    why: &'static str,
}

impl HostName {
    pub fn new(name: &str) -> Result<HostName, HostNameError> {
        let fail = |why| {
            // The name is shown in logs: a hostile one is cut short there too.
            let shown: String = name.chars().take(80).collect();
            Err(HostNameError { name: shown, why })
        };
        if name.is_empty() {
            return fail("it is empty");
        }
        if name.len() > MAX_HOST_NAME {
            return fail("it is too long");
        }
        if !name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
        {
            return fail("it holds a character other than a letter, digit, '-', '_' or '.'");
        }
        let edge_ok = |b: Option<u8>| b.is_some_and(|b| b.is_ascii_alphanumeric());
        if !edge_ok(name.bytes().next()) || !edge_ok(name.bytes().last()) {
            return fail("it starts or ends with '-', '_' or '.'");
        }
        if name.contains("..") {
            return fail("it holds '..'");
        }
        Ok(HostName(name.to_string()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for HostName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The host a reconciler runs for, and whether it takes VMs that name no host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Placement {
    pub host: HostName,
    pub adopt_unplaced: bool,
}

/// Where a manifest places its VM, as seen from one host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// On this host (named, or unplaced and adopted).
    Here,
    /// On another host.
    Elsewhere(HostName),
    /// On no host, and this host does not adopt unplaced VMs.
    Unplaced,
    /// The label is not a host name: the VM runs nowhere until it is fixed.
    Invalid(HostNameError),
}

/// Manifests sorted by where they run.
#[derive(Debug, Default)]
pub struct Split {
    pub here: Vec<Desired>,
    pub elsewhere: Vec<(Desired, HostName)>,
    pub unplaced: Vec<Desired>,
    pub invalid: Vec<(Desired, HostNameError)>,
}

impl Split {
    /// Names of VMs this host must leave as they are (neither run nor prune): unplaced
    /// ones it does not adopt, and those whose placement cannot be read. A VM placed
    /// elsewhere is not among them: it has moved, and goes from here.
    pub fn untouchable(&self) -> impl Iterator<Item = &str> {
        self.unplaced
            .iter()
            .map(Desired::name)
            .chain(self.invalid.iter().map(|(d, _)| d.name()))
    }
}

impl Placement {
    pub fn judge(&self, desired: &Desired) -> Verdict {
        match desired.vm.metadata.labels.get(HOST_LABEL) {
            None if self.adopt_unplaced => Verdict::Here,
            None => Verdict::Unplaced,
            Some(name) => match HostName::new(name) {
                Ok(host) if host == self.host => Verdict::Here,
                Ok(host) => Verdict::Elsewhere(host),
                Err(e) => Verdict::Invalid(e),
            },
        }
    }

    pub fn split(&self, desired: Vec<Desired>) -> Split {
        let mut split = Split::default();
        for d in desired {
            match self.judge(&d) {
                Verdict::Here => split.here.push(d),
                Verdict::Elsewhere(h) => split.elsewhere.push((d, h)),
                Verdict::Unplaced => split.unplaced.push(d),
                Verdict::Invalid(e) => split.invalid.push((d, e)),
            }
        }
        split
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    fn desired(name: &str, host: Option<&str>) -> Desired {
        let labels = host.map_or(String::new(), |h| {
            format!("  labels:\n    ignite.rs/host: {h:?}\n")
        });
        let text = format!(
            "apiVersion: ignite.weave.works/v1alpha4\nkind: VM\nmetadata:\n  name: {name}\n{labels}spec:\n  image: {{oci: busybox}}\n"
        );
        Desired {
            vm: ignite_api::manifest::decode(&text).unwrap(),
            running: true,
            file: PathBuf::from(format!("{name}.yaml")),
            text,
        }
    }

    #[test]
    fn host_names_are_dns_like_and_never_paths() {
        for good in [
            "node1",
            "a",
            "node-1.example.org",
            "Rack_3-b",
            &"a".repeat(253),
        ] {
            assert!(HostName::new(good).is_ok(), "{good}");
        }
        for bad in [
            "",
            ".",
            "..",
            "../etc",
            "a/b",
            "/abs",
            "a..b",
            ".hidden",
            "-x",
            "x-",
            "tab\there",
            "new\nline",
            "esc\u{1b}[31m",
            "space here",
            "héllo",
            &"a".repeat(254),
        ] {
            assert!(HostName::new(bad).is_err(), "{bad:?}");
        }
        let e = HostName::new(&format!("{}/x", "a".repeat(300))).unwrap_err();
        assert!(
            e.to_string().len() < 400,
            "a hostile name is cut short: {e}"
        );
    }

    #[test]
    fn each_manifest_runs_on_its_host_and_unplaced_ones_only_where_adopted() {
        let here = Placement {
            host: HostName::new("a").unwrap(),
            adopt_unplaced: false,
        };
        let set = vec![
            desired("mine", Some("a")),
            desired("theirs", Some("b")),
            desired("nobodys", None),
            desired("evil", Some("../../etc")),
        ];
        let split = here.split(set.clone());
        let names = |v: &[Desired]| v.iter().map(|d| d.name().to_string()).collect::<Vec<_>>();
        assert_eq!(names(&split.here), ["mine"]);
        assert_eq!(split.elsewhere.len(), 1);
        assert_eq!(split.elsewhere[0].1.as_str(), "b");
        assert_eq!(names(&split.unplaced), ["nobodys"]);
        assert_eq!(split.invalid.len(), 1);
        assert_eq!(split.untouchable().collect::<Vec<_>>(), ["nobodys", "evil"]);
        let adopting = Placement {
            adopt_unplaced: true,
            ..here
        };
        let split = adopting.split(set);
        assert_eq!(names(&split.here), ["mine", "nobodys"]);
        assert!(split.unplaced.is_empty());
    }
}
