//! The `Image` kind: an OCI image imported as a root filesystem.

use serde::{Deserialize, Serialize};

use crate::meta::{ObjectMeta, api_version};
use crate::size::Size;
use crate::source::ImageSource;
use crate::vm::OciImageSource;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Image {
    #[serde(with = "crate::kind_tag::image")]
    pub kind: (),
    #[serde(with = "api_version")]
    pub api_version: (),
    #[serde(default)]
    pub metadata: ObjectMeta,
    pub spec: ImageSpec,
    #[serde(default)]
    pub status: ImageStatus,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ImageSpec {
    pub oci: ImageSource,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ImageStatus {
    /// Where the image came from (`oci://<repository>@<manifest digest>` for a registry,
    /// `docker://<config digest>` for a local source) and the size of its layers.
    #[serde(default)]
    pub oci_source: OciImageSource,
    /// The digest of the image's config: the same content has the same id, whatever its
    /// source, and shares one root disk (an addition to Ignite's model).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image_id: Option<String>,
    /// How to run the image, from its config (an addition).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config: Option<ImageRunConfig>,
    /// The platform the image was built for, e.g. `linux/amd64` (an addition).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub platform: Option<String>,
    /// Size of the unpacked files (an addition).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unpacked_size: Option<Size>,
    /// Size of the root disk built from it (an addition).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub disk_size: Option<Size>,
    /// Whether it has a /sbin/init, which VMs of it run in auto mode when no command is
    /// given (an addition; absent for images imported before it was recorded).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub has_init: Option<bool>,
}

/// How an image runs: its config's Entrypoint, Cmd, Env, WorkingDir and User.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ImageRunConfig {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub entrypoint: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub cmd: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub env: Vec<String>,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub working_dir: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub user: String,
}

impl Image {
    pub fn new(metadata: ObjectMeta, oci: ImageSource) -> Image {
        Image {
            kind: (),
            api_version: (),
            metadata,
            spec: ImageSpec { oci },
            status: ImageStatus::default(),
        }
    }
}
