//! The file-backed address allocator: `<dir>/addresses.json` maps each leased address to
//! the VM that owns it, under an exclusive lock on `<dir>/addresses.lock`, so concurrent
//! starts in separate processes never get the same address. A VM keeps its address until
//! it is released (when the VM is removed); leases of VMs that no longer exist are
//! reclaimed when the subnet runs out of addresses.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::Write;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::{NetError, Subnet};

const LEASES_FILE: &str = "addresses.json";
const LOCK_FILE: &str = "addresses.lock";

pub struct AddressBook {
    dir: PathBuf,
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct Leases {
    /// Address → owner (a VM uid).
    leases: BTreeMap<Ipv4Addr, String>,
}

impl AddressBook {
    pub fn new(dir: impl Into<PathBuf>) -> AddressBook {
        AddressBook { dir: dir.into() }
    }

    /// The owner's address in `subnet`: the one it already has, else the lowest free one.
    /// `exists` tells whether an owner still exists; when the subnet is full, leases of
    /// owners that do not are reclaimed.
    pub fn allocate(
        &self,
        owner: &str,
        subnet: Subnet,
        exists: impl Fn(&str) -> bool,
    ) -> Result<Ipv4Addr, NetError> {
        self.with_leases(|leases| {
            if let Some(ip) = leases.address_of(owner).filter(|ip| subnet.contains(*ip)) {
                return Ok((ip, false));
            }
            // A lease in another subnet (the configuration changed) goes.
            leases.leases.retain(|_, o| o != owner);
            let free = |leases: &Leases| {
                subnet
                    .vm_addresses()
                    .find(|ip| !leases.leases.contains_key(ip))
            };
            let ip = match free(leases) {
                Some(ip) => ip,
                None => {
                    leases.leases.retain(|_, o| exists(o));
                    free(leases).ok_or(NetError::Exhausted { subnet })?
                }
            };
            leases.leases.insert(ip, owner.to_string());
            Ok((ip, true))
        })
    }

    /// The owner's leased address, if any.
    pub fn lookup(&self, owner: &str) -> Result<Option<Ipv4Addr>, NetError> {
        self.with_leases(|leases| Ok((leases.address_of(owner), false)))
    }

    /// Gives the owner's address back. Releasing twice is not an error.
    pub fn release(&self, owner: &str) -> Result<(), NetError> {
        self.with_leases(|leases| {
            let before = leases.leases.len();
            leases.leases.retain(|_, o| o != owner);
            Ok(((), leases.leases.len() != before))
        })
    }

    /// Runs `f` on the leases under the lock; writes them back when it says they changed.
    fn with_leases<T>(
        &self,
        f: impl FnOnce(&mut Leases) -> Result<(T, bool), NetError>,
    ) -> Result<T, NetError> {
        let io = |action: &'static str, path: &Path| {
            let path = path.to_path_buf();
            move |source| NetError::Io(ignite_host_tools::PathError::new(action, path, source))
        };
        std::fs::create_dir_all(&self.dir).map_err(io("create", &self.dir))?;
        let lock_path = self.dir.join(LOCK_FILE);
        let lock = File::options()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(io("open", &lock_path))?;
        lock.lock().map_err(io("lock", &lock_path))?;
        let path = self.dir.join(LEASES_FILE);
        let mut leases: Leases = match std::fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes).map_err(|e| {
                NetError::Invalid(format!(
                    "the address leases in {} are damaged ({e}): remove the file and restart the VMs that use bridge networking",
                    path.display()
                ))
            })?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Leases::default(),
            Err(e) => return Err(io("read", &path)(e)),
        };
        let (value, changed) = f(&mut leases)?;
        if changed {
            // Written whole beside the old file, then renamed over it: a crash leaves
            // one version or the other.
            let tmp = self.dir.join(format!("{LEASES_FILE}.tmp"));
            let mut file = File::create(&tmp).map_err(io("create", &tmp))?;
            let json = serde_json::to_vec_pretty(&leases).expect("leases serialise");
            file.write_all(&json)
                .and_then(|()| file.sync_all())
                .map_err(io("write", &tmp))?;
            std::fs::rename(&tmp, &path).map_err(io("replace", &path))?;
        }
        Ok(value)
    }
}

impl Leases {
    fn address_of(&self, owner: &str) -> Option<Ipv4Addr> {
        self.leases
            .iter()
            .find(|(_, o)| o.as_str() == owner)
            .map(|(ip, _)| *ip)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_are_stable_per_owner_and_never_shared() {
        let dir = tempfile::tempdir().unwrap();
        let book = AddressBook::new(dir.path());
        let s = Subnet::DEFAULT;
        let a = book.allocate("a", s, |_| true).unwrap();
        let b = book.allocate("b", s, |_| true).unwrap();
        assert_eq!(a, Ipv4Addr::new(10, 61, 0, 2));
        assert_eq!(b, Ipv4Addr::new(10, 61, 0, 3));
        // Again (a restart) and from a new handle (another process): the same.
        assert_eq!(book.allocate("a", s, |_| true).unwrap(), a);
        assert_eq!(
            AddressBook::new(dir.path())
                .allocate("b", s, |_| true)
                .unwrap(),
            b
        );
        book.release("a").unwrap();
        book.release("a").unwrap();
        assert_eq!(book.lookup("a").unwrap(), None);
        assert_eq!(book.lookup("b").unwrap(), Some(b));
        // The freed address is reused.
        assert_eq!(book.allocate("c", s, |_| true).unwrap(), a);
    }

    #[test]
    fn concurrent_allocations_get_distinct_addresses() {
        let dir = tempfile::tempdir().unwrap();
        let threads: Vec<_> = (0..16)
            .map(|i| {
                let dir = dir.path().to_path_buf();
                std::thread::spawn(move || {
                    AddressBook::new(dir)
                        .allocate(&format!("vm{i}"), Subnet::DEFAULT, |_| true)
                        .unwrap()
                })
            })
            .collect();
        let mut all: Vec<Ipv4Addr> = threads.into_iter().map(|t| t.join().unwrap()).collect();
        all.sort();
        all.dedup();
        assert_eq!(all.len(), 16);
    }

    #[test]
    fn a_full_subnet_reclaims_leases_of_removed_owners_only() {
        let dir = tempfile::tempdir().unwrap();
        let book = AddressBook::new(dir.path());
        let tiny: Subnet = "192.168.9.0/29".parse().unwrap(); // .2 to .6
        for i in 0..5 {
            book.allocate(&format!("vm{i}"), tiny, |_| true).unwrap();
        }
        let e = book.allocate("late", tiny, |_| true).unwrap_err();
        assert!(e.to_string().contains("no free address"), "{e}");
        let ip = book.allocate("late", tiny, |o| o != "vm3").unwrap();
        assert_eq!(ip, Ipv4Addr::new(192, 168, 9, 5));
        // A new subnet moves an owner; its old lease goes.
        let moved = book.allocate("vm0", Subnet::DEFAULT, |_| true).unwrap();
        assert_eq!(moved, Ipv4Addr::new(10, 61, 0, 2));
        assert_eq!(book.lookup("vm0").unwrap(), Some(moved));
    }

    #[test]
    fn a_damaged_lease_file_is_reported_not_overwritten() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(LEASES_FILE), b"{not json").unwrap();
        let e = AddressBook::new(dir.path())
            .allocate("a", Subnet::DEFAULT, |_| true)
            .unwrap_err();
        assert!(e.to_string().contains("damaged"), "{e}");
        assert_eq!(
            std::fs::read(dir.path().join(LEASES_FILE)).unwrap(),
            b"{not json"
        );
    }
}
