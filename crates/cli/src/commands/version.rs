//! `ignite version` (its shapes are shared with `ignited version`).

use ignite_api::version::{self, VersionInfo};

use crate::args::{VersionArgs, VersionFormat};

pub fn run(args: &VersionArgs) -> anyhow::Result<()> {
    let info = VersionInfo {
        version: concat!("v", env!("CARGO_PKG_VERSION")),
        git_commit: env!("IGNITE_GIT_COMMIT"),
        git_tree_state: env!("IGNITE_GIT_TREE_STATE"),
        build_date: env!("IGNITE_BUILD_DATE"),
        rust_version: env!("IGNITE_RUSTC_VERSION"),
        platform: version::platform(),
    };
    let format = args.output.map(|f| match f {
        VersionFormat::Short => version::VersionFormat::Short,
        VersionFormat::Json => version::VersionFormat::Json,
        VersionFormat::Yaml => version::VersionFormat::Yaml,
    });
    super::write_stdout(&version::render(&info, format))
}
