//! The `Kernel` kind: a kernel (and its modules) imported to boot VMs with.

use serde::{Deserialize, Serialize};

use crate::meta::{ObjectMeta, api_version};
use crate::source::ImageSource;
use crate::vm::OciImageSource;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Kernel {
    #[serde(with = "crate::kind_tag::kernel")]
    pub kind: (),
    #[serde(with = "api_version")]
    pub api_version: (),
    #[serde(default)]
    pub metadata: ObjectMeta,
    pub spec: KernelSpec,
    #[serde(default)]
    pub status: KernelStatus,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KernelSpec {
    pub oci: ImageSource,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct KernelStatus {
    /// The kernel's version (`uname -r`), `<unknown>` when it could not be read.
    #[serde(default)]
    pub version: String,
    #[serde(default)]
    pub oci_source: OciImageSource,
}

impl Kernel {
    pub fn new(metadata: ObjectMeta, oci: ImageSource) -> Kernel {
        Kernel {
            kind: (),
            api_version: (),
            metadata,
            spec: KernelSpec { oci },
            status: KernelStatus::default(),
        }
    }
}
