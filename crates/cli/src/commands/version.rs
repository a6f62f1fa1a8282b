//! `ignite version`.

use serde::Serialize;

use crate::args::{VersionArgs, VersionFormat};

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct VersionInfo {
    version: &'static str,
    git_commit: &'static str,
    git_tree_state: &'static str,
    build_date: &'static str,
    rust_version: &'static str,
    platform: String,
}

#[derive(Serialize)]
struct Versions {
    ignite: VersionInfo,
}

fn versions() -> Versions {
    Versions {
        ignite: VersionInfo {
            version: concat!("v", env!("CARGO_PKG_VERSION")),
            git_commit: env!("IGNITE_GIT_COMMIT"),
            git_tree_state: env!("IGNITE_GIT_TREE_STATE"),
            build_date: env!("IGNITE_BUILD_DATE"),
            rust_version: env!("IGNITE_RUSTC_VERSION"),
            platform: format!(
                "{}/{}",
                std::env::consts::OS,
                go_arch(std::env::consts::ARCH)
            ),
        },
    }
}

/// Platforms are written as Go and OCI write them (`linux/amd64`).
fn go_arch(arch: &str) -> &str {
    match arch {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        other => other,
    }
}

pub fn run(args: &VersionArgs) -> anyhow::Result<()> {
    let v = versions();
    let text = match args.output {
        None => {
            let i = &v.ignite;
            format!(
                "Ignite version: {} (commit {}, {}, built {}, {}, {})\n",
                i.version, i.git_commit, i.git_tree_state, i.build_date, i.rust_version, i.platform
            )
        }
        Some(VersionFormat::Short) => format!("Ignite version: {}\n", v.ignite.version),
        Some(VersionFormat::Json) => ignite_api::manifest::to_json(&v),
        Some(VersionFormat::Yaml) => ignite_api::manifest::to_yaml(&v),
    };
    super::write_stdout(&text)
}
