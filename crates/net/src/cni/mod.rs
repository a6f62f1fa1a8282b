//! CNI networking (the Container Network Interface, spec 1.0.0; results of 0.3.x/0.4.0
//! plugins are read too): network configurations found in a configuration directory
//! ([`config`]), plugins found in binary directories and run as the spec says
//! ([`plugin`]), their results ([`result`]), and each VM's network namespace, where tc
//! redirects join the VM's tap to the interface the plugins made ([`sandbox`]).
//!
//! Ignite knows no plugin: whatever the configuration names runs, so a VM joins any CNI
//! network (bridge, ptp, macvlan, Flannel, Calico, Weave Net...) the way a container would.

pub mod config;
pub mod plugin;
pub mod result;
pub mod sandbox;

use std::path::PathBuf;

pub use config::{DEFAULT_CONF_DIR, DEFAULT_FILE, NetworkConfig};
pub use plugin::{Cni, DEFAULT_BIN_DIRS, Invocation, PortMapping, RuntimeConfig};
pub use result::CniResult;

/// What went wrong with a CNI network, naming the network (and the plugin) and what to do.
#[derive(Debug, thiserror::Error)]
pub enum CniError {
    #[error(
        "no CNI network configuration in {dir} (write a .conflist there, or let Ignite write its default)"
    )]
    NoConfig { dir: PathBuf },
    #[error("no CNI network named {name:?} in {dir} (found: {found})")]
    NotFound {
        name: String,
        dir: PathBuf,
        found: String,
    },
    #[error("bad CNI network configuration {file}: {message}")]
    BadConfig { file: PathBuf, message: String },
    #[error(
        "CNI network {network:?}: plugin {plugin:?} is in none of {dirs} (install containernetworking-plugins, or set the Configuration's spec.cni.binDirs)"
    )]
    MissingPlugin {
        network: String,
        plugin: String,
        dirs: String,
    },
    #[error("CNI network {network:?}: plugin {plugin:?} failed to {command}: {message}")]
    Plugin {
        network: String,
        plugin: String,
        command: &'static str,
        /// The spec's error code (0 when the plugin gave none).
        code: u32,
        message: String,
    },
    #[error("CNI network {network:?}: cannot run plugin {plugin:?} ({path}): {source}")]
    Run {
        network: String,
        plugin: String,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Io(#[from] ignite_host_tools::PathError),
}
