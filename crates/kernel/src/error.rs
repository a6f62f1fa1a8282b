use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum KernelError {
    #[error("not a usable kernel: {0}")]
    NotAKernel(String),
    #[error("cannot decompress the kernel: {0}")]
    Decompress(String),
    #[error("{0}")]
    Unsupported(String),
    #[error("cannot {action} {}: {source}", path.display())]
    Io {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("module {module}: {reason}")]
    Module { module: String, reason: String },
}
