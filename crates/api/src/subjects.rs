//! How each kind presents itself to templates and filters (see [`crate::template`]).

use std::path::PathBuf;

use chrono::{DateTime, Utc};
use serde_json::Value;

use crate::image::Image;
use crate::kernel::Kernel;
use crate::meta::{ObjectMeta, Time, Uid};
use crate::ports::{PortMapping, Protocol, join_ports};
use crate::size::Size;
use crate::source::ImageSource;
use crate::template::{TemplateSubject, humanize_time};
use crate::vm::{
    BlockDeviceVolume, ExitRecord, FileMapping, GuestMode, NetworkMode, NetworkStatus,
    OciImageSource, ProcessRef, RuntimeStatus, Ssh, Vm, VmImageSpec, VmKernelSpec, VmNetworkSpec,
    VmSpec, VmStatus, VmStorageSpec, VmmKind, VmmStatus, Volume, VolumeMount, join_ips,
};

fn sample_meta() -> ObjectMeta {
    ObjectMeta {
        name: "sample".into(),
        uid: Some(Uid::from_bytes([0; 8])),
        created: Some(Time(DateTime::UNIX_EPOCH)),
        labels: [("key".to_string(), String::new())].into(),
        annotations: [("key".to_string(), String::new())].into(),
    }
}

fn sample_ref() -> ImageSource {
    ImageSource::parse("sample").expect("a valid reference")
}

fn sample_source() -> OciImageSource {
    OciImageSource {
        id: Some("docker://sha256:0".into()),
        size: Size::ZERO,
    }
}

fn shared_display(meta: &ObjectMeta, pointer: &str, now: DateTime<Utc>) -> Option<String> {
    match pointer {
        "/metadata/created" => meta.created.as_ref().map(|t| humanize_time(t, now)),
        _ => None,
    }
}

impl TemplateSubject for Vm {
    const KIND: &'static str = "VM";

    fn schema() -> Value {
        let mut vm = Vm::new(
            sample_meta(),
            VmSpec {
                image: Some(VmImageSpec { oci: sample_ref() }),
                sandbox: Some(VmImageSpec { oci: sample_ref() }),
                kernel: Some(VmKernelSpec {
                    oci: Some(sample_ref()),
                    cmd_line: Some(String::new()),
                }),
                cpus: Some(1),
                memory: Some(Size::ZERO),
                cpu_quota: Some(0.0),
                disk_size: Some(Size::ZERO),
                network: VmNetworkSpec {
                    ports: vec![PortMapping {
                        bind_address: Some([0, 0, 0, 0].into()),
                        host_port: 1,
                        vm_port: 1,
                        protocol: Some(Protocol::Tcp),
                    }],
                    mode: Some(NetworkMode::None),
                    cni_network: Some(String::new()),
                },
                storage: VmStorageSpec {
                    volumes: vec![Volume {
                        name: String::new(),
                        block_device: Some(BlockDeviceVolume {
                            path: PathBuf::new(),
                        }),
                    }],
                    volume_mounts: vec![VolumeMount {
                        name: String::new(),
                        mount_path: PathBuf::new(),
                    }],
                },
                copy_files: vec![FileMapping {
                    host_path: PathBuf::new(),
                    vm_path: PathBuf::new(),
                }],
                ssh: Some(Ssh::Generate),
                vmm: Some(VmmKind::Auto),
                command: Some(vec![String::new()]),
                mode: Some(GuestMode::Auto),
                env: vec![String::new()],
                entrypoint: Some(vec![String::new()]),
                working_dir: Some(String::new()),
                user: Some(String::new()),
                tty: Some(false),
            },
        );
        vm.status = VmStatus {
            running: false,
            runtime: Some(RuntimeStatus::default()),
            start_time: Some(Time(DateTime::UNIX_EPOCH)),
            network: Some(NetworkStatus::default()),
            image: sample_source(),
            kernel: sample_source(),
            id_prefix: "x".into(),
            supervisor: Some(ProcessRef {
                pid: 1,
                start_ticks: 1,
            }),
            vmm: Some(VmmStatus {
                name: VmmKind::Qemu,
                process: ProcessRef {
                    pid: 1,
                    start_ticks: 1,
                },
                accel: crate::Accel::Kvm,
                memory_reporting: true,
                cgroup: Some(String::new()),
                user: Some(0),
            }),
            exit: Some(ExitRecord {
                status: Some(0),
                reason: crate::ExitReason::PoweredOff,
                detail: Some(String::new()),
                time: Time(DateTime::UNIX_EPOCH),
            }),
            ssh_address: Some(String::new()),
            boot_millis: Some(0),
            paused: true,
            boot_phases: Some(crate::BootPhases {
                prepare_millis: Some(0),
                vmm_start_millis: Some(0),
                kernel_millis: Some(0),
                init_millis: Some(0),
                ready_millis: Some(0),
            }),
            error: Some(String::new()),
            auto_remove: true,
            restored_from: Some(String::new()),
            memory: None,
        };
        serde_json::to_value(vm).expect("a VM serializes")
    }

    fn display(&self, pointer: &str, now: DateTime<Utc>) -> Option<String> {
        match pointer {
            "/spec/memory" => Some(self.spec.memory().to_string()),
            // Ignite's SSH spec is a struct {Generate bool; PublicKey string}, printed by Go
            // as `{true }` when a key pair is generated (a public key here is its file).
            "/spec/ssh" => Some(match &self.spec.ssh {
                None => "<nil>".to_string(),
                Some(Ssh::Generate) => "{true }".to_string(),
                Some(Ssh::PublicKey(path)) => format!("{{false {}}}", path.display()),
            }),
            "/spec/diskSize" => Some(self.spec.disk_size().to_string()),
            "/spec/network/ports" => Some(join_ports(&self.spec.network.ports)),
            "/status/network/ipAddresses" => Some(join_ips(self.status.ip_addresses())),
            "/status/image/size" => Some(self.status.image.size.to_string()),
            "/status/kernel/size" => Some(self.status.kernel.size.to_string()),
            "/status/startTime" => self
                .status
                .start_time
                .as_ref()
                .map(|t| humanize_time(t, now)),
            _ => shared_display(&self.metadata, pointer, now),
        }
    }
}

impl TemplateSubject for Image {
    const KIND: &'static str = "Image";

    fn schema() -> Value {
        let mut image = Image::new(sample_meta(), sample_ref());
        image.status = crate::image::ImageStatus {
            oci_source: sample_source(),
            image_id: Some(String::new()),
            config: Some(crate::image::ImageRunConfig {
                entrypoint: vec![String::new()],
                cmd: vec![String::new()],
                env: vec![String::new()],
                working_dir: "x".into(),
                user: "x".into(),
            }),
            platform: Some(String::new()),
            unpacked_size: Some(Size::ZERO),
            disk_size: Some(Size::ZERO),
            has_init: Some(true),
        };
        serde_json::to_value(image).expect("an Image serializes")
    }

    fn display(&self, pointer: &str, now: DateTime<Utc>) -> Option<String> {
        match pointer {
            "/status/ociSource/size" => Some(self.status.oci_source.size.to_string()),
            "/status/unpackedSize" => self.status.unpacked_size.map(|s| s.to_string()),
            "/status/diskSize" => self.status.disk_size.map(|s| s.to_string()),
            _ => shared_display(&self.metadata, pointer, now),
        }
    }
}

impl TemplateSubject for Kernel {
    const KIND: &'static str = "Kernel";

    fn schema() -> Value {
        let mut kernel = Kernel::new(sample_meta(), sample_ref());
        kernel.status.oci_source = sample_source();
        serde_json::to_value(kernel).expect("a Kernel serializes")
    }

    fn display(&self, pointer: &str, now: DateTime<Utc>) -> Option<String> {
        match pointer {
            "/status/ociSource/size" => Some(self.status.oci_source.size.to_string()),
            _ => shared_display(&self.metadata, pointer, now),
        }
    }
}
