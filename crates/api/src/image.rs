//! The `Image` kind: an OCI image imported as a root filesystem.

use serde::{Deserialize, Serialize};

use crate::meta::{ObjectMeta, api_version};
use crate::reference::ImageReference;
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
    pub oci: ImageReference,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ImageStatus {
    #[serde(default)]
    pub oci_source: OciImageSource,
}

impl Image {
    pub fn new(metadata: ObjectMeta, oci: ImageReference) -> Image {
        Image {
            kind: (),
            api_version: (),
            metadata,
            spec: ImageSpec { oci },
            status: ImageStatus::default(),
        }
    }
}
