//! What `ignite version` and `ignited version` print: the same fields in the same shapes
//! (the full line, `-o short`, `-o json`, `-o yaml`). The build facts come from each
//! binary's build script, so they are passed in.

use serde::Serialize;

/// One binary's build.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct VersionInfo {
    pub version: &'static str,
    pub git_commit: &'static str,
    pub git_tree_state: &'static str,
    pub build_date: &'static str,
    pub rust_version: &'static str,
    pub platform: String,
}

#[derive(Serialize)]
struct Versions<'a> {
    ignite: &'a VersionInfo,
}

/// `-o`'s formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VersionFormat {
    Short,
    Json,
    Yaml,
}

/// The platform as Go and OCI write it (`linux/amd64`).
pub fn platform() -> String {
    let arch = match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        other => other,
    };
    format!("{}/{arch}", std::env::consts::OS)
}

/// The text `version` prints: the full line without a format.
pub fn render(info: &VersionInfo, format: Option<VersionFormat>) -> String {
    match format {
        None => format!(
            "Ignite version: {} (commit {}, {}, built {}, {}, {})\n",
            info.version,
            info.git_commit,
            info.git_tree_state,
            info.build_date,
            info.rust_version,
            info.platform
        ),
        Some(VersionFormat::Short) => format!("Ignite version: {}\n", info.version),
        Some(VersionFormat::Json) => crate::manifest::to_json(&Versions { ignite: info }),
        Some(VersionFormat::Yaml) => crate::manifest::to_yaml(&Versions { ignite: info }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shapes() {
        let info = VersionInfo {
            version: "v1.2.3",
            git_commit: "abc",
            git_tree_state: "clean",
            build_date: "2026-01-01T00:00:00Z",
            rust_version: "rustc 1.90.0",
            platform: "linux/amd64".into(),
        };
        assert_eq!(
            render(&info, Some(VersionFormat::Short)),
            "Ignite version: v1.2.3\n"
        );
        let json: serde_json::Value =
            serde_json::from_str(&render(&info, Some(VersionFormat::Json))).unwrap();
        assert_eq!(json["ignite"]["gitCommit"], "abc");
        assert!(render(&info, Some(VersionFormat::Yaml)).contains("  version: v1.2.3"));
        assert!(render(&info, None).starts_with("Ignite version: v1.2.3 (commit abc"));
    }
}
