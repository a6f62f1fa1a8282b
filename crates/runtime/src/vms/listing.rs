//! The VM list's rows as the store's summary index keeps them (one tab-separated line per
//! VM, rebuilt when a VM's record changes), so `ps` lists a thousand VMs without reading a
//! thousand records. Presentation (ages, columns) is the caller's.

use std::borrow::Cow;

use ignite_api::ports::join_ports;
use ignite_api::{ImageSource, ProcessRef, Vm, join_ips};

/// Names the layout of [`VmRow::encode`]; change it whenever that layout changes.
pub const ROW_FORMAT: &str = "ps-row-v4";

/// What one line of the table needs, with times kept raw so ages are always current.
/// Rows read from the summary index borrow their text from it.
pub struct VmRow<'a> {
    pub uid: Cow<'a, str>,
    pub running: bool,
    /// Running with its vCPUs frozen (`ignite pause`).
    pub paused: bool,
    /// The supervisor recorded for a running VM, checked before the VM is shown as Up.
    pub supervisor: Option<ProcessRef>,
    pub created: Option<i64>,
    pub started: Option<i64>,
    /// IMAGE, KERNEL, SIZE, CPUS, MEMORY (columns 2 to 6).
    pub spec: [Cow<'a, str>; 5],
    pub ips: Cow<'a, str>,
    pub ports: Cow<'a, str>,
    pub name: Cow<'a, str>,
    /// Running, though the record says stopped (set by [`VmRow::checked`]).
    pub outdated: bool,
}

/// The KERNEL column: the kernel image's reference, as Ignite showed it, or for a kernel
/// imported from a file (a `.deb`, a vmlinux), the file's name without its directories.
fn kernel_column(source: &ImageSource) -> String {
    match source {
        ImageSource::File(path) => path.file_name().map_or_else(
            || path.display().to_string(),
            |n| n.to_string_lossy().into_owned(),
        ),
        other => other.to_string(),
    }
}

impl<'a> VmRow<'a> {
    pub fn of(vm: &Vm) -> VmRow<'a> {
        let spec = &vm.spec;
        let owned = |s: String| Cow::Owned(s);
        VmRow {
            uid: owned(
                vm.metadata
                    .uid
                    .as_ref()
                    .map_or_else(String::new, ToString::to_string),
            ),
            running: vm.status.running,
            paused: vm.status.running && vm.status.paused,
            supervisor: vm.status.supervisor,
            created: vm.metadata.created.map(|t| t.0.timestamp()),
            started: vm.status.start_time.map(|t| t.0.timestamp()),
            spec: [
                spec.image_ref()
                    .map_or_else(String::new, ToString::to_string),
                spec.kernel_ref().map_or_else(String::new, kernel_column),
                spec.disk_size().to_string(),
                spec.cpus().to_string(),
                spec.memory().to_string(),
            ]
            .map(owned),
            ips: owned(join_ips(vm.status.ip_addresses())),
            ports: owned(join_ports(&spec.network.ports)),
            name: owned(vm.metadata.name.clone()),
            outdated: false,
        }
    }

    /// One tab-separated line. No field can hold a tab or newline (names, references,
    /// sizes, addresses and ports are all validated), but they are replaced to be sure.
    pub fn encode(&self) -> String {
        let time = |t: Option<i64>| t.map_or_else(|| "-".to_string(), |t| t.to_string());
        let mut fields = vec![
            self.uid.to_string(),
            // 0 stopped, 1 running, 2 running and paused.
            (match (self.running, self.paused) {
                (true, true) => "2",
                (true, false) => "1",
                _ => "0",
            })
            .to_string(),
            self.supervisor.map_or_else(
                || "-".to_string(),
                |p| format!("{}:{}", p.pid, p.start_ticks),
            ),
            time(self.created),
            time(self.started),
        ];
        fields.extend(self.spec.iter().map(ToString::to_string));
        fields.extend([
            self.ips.to_string(),
            self.ports.to_string(),
            self.name.to_string(),
        ]);
        fields
            .iter()
            .map(|f| f.replace(['\t', '\n'], " "))
            .collect::<Vec<_>>()
            .join("\t")
    }

    /// Running only while the recorded supervisor is (a host reboot or a `kill -9` leaves
    /// the record behind; `start` and `rm` repair it).
    /// A row recorded stopped whose supervisor runs is running, and marked `outdated`.
    pub fn checked(mut self) -> VmRow<'a> {
        let alive = self
            .supervisor
            .as_ref()
            .is_some_and(super::process::is_alive);
        self.outdated = alive && !self.running;
        self.running = alive;
        self.paused &= alive;
        self
    }

    pub fn decode(line: &'a str) -> Option<VmRow<'a>> {
        let mut f = line.split('\t');
        let mut next = || f.next().map(Cow::Borrowed);
        let (uid, running, supervisor, created, started) =
            (next()?, next()?, next()?, next()?, next()?);
        let spec = [next()?, next()?, next()?, next()?, next()?];
        let (ips, ports, name) = (next()?, next()?, next()?);
        if next().is_some() {
            return None;
        }
        let time = |t: &str| t.parse::<i64>().ok();
        let supervisor = supervisor.split_once(':').and_then(|(pid, ticks)| {
            Some(ProcessRef {
                pid: pid.parse().ok()?,
                start_ticks: ticks.parse().ok()?,
            })
        });
        Some(VmRow {
            uid,
            running: running == "1" || running == "2",
            paused: running == "2",
            supervisor,
            created: time(&created),
            started: time(&started),
            spec,
            ips,
            ports,
            name,
            outdated: false,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_round_trip_and_bad_lines_are_refused() {
        let mut vm = Vm::new(
            ignite_api::ObjectMeta {
                name: "web".into(),
                uid: Some("599615df99804ae8".parse().unwrap()),
                ..Default::default()
            },
            ignite_api::VmSpec::default(),
        );
        vm.status.running = true;
        vm.status.supervisor = Some(ProcessRef {
            pid: 42,
            start_ticks: 7,
        });
        let line = VmRow::of(&vm).encode();
        let row = VmRow::decode(&line).unwrap();
        assert_eq!(row.uid, "599615df99804ae8");
        assert_eq!(row.name, "web");
        assert!(row.running);
        assert_eq!(row.supervisor.map(|p| p.pid), Some(42));
        assert_eq!(row.encode(), line);
        assert!(VmRow::decode(&format!("{line}\textra")).is_none());
        assert!(VmRow::decode("too\tshort").is_none());
    }

    #[test]
    fn a_row_recorded_stopped_with_a_live_supervisor_is_up_and_marked() {
        let mut vm = Vm::new(
            ignite_api::ObjectMeta {
                name: "web".into(),
                uid: Some("599615df99804ae8".parse().unwrap()),
                ..Default::default()
            },
            ignite_api::VmSpec::default(),
        );
        // This test process stands for a live supervisor.
        vm.status.supervisor = Some(super::super::process::current());
        vm.status.running = false;
        let row = VmRow::of(&vm).checked();
        assert!(row.running && row.outdated);
        vm.status.running = true;
        let row = VmRow::of(&vm).checked();
        assert!(row.running && !row.outdated);
        // A dead supervisor: stopped, whatever the record says.
        vm.status.supervisor = Some(ProcessRef {
            pid: u32::MAX - 1,
            start_ticks: 1,
        });
        let row = VmRow::of(&vm).checked();
        assert!(!row.running && !row.outdated);
    }
}
