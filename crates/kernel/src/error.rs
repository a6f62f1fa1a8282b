#[derive(Debug, thiserror::Error)]
pub enum KernelError {
    #[error("not a usable kernel: {0}")]
    NotAKernel(String),
    #[error("cannot decompress the kernel: {0}")]
    Decompress(String),
    #[error("{0}")]
    Unsupported(String),
    #[error(transparent)]
    Io(#[from] ignite_host_tools::PathError),
    #[error(
        "the kernel's release {release:?} (from its `Linux version` banner) {reason}: a release may only hold letters, digits and . _ + ~ - (it names directories on the host); refusing this kernel image, which is malformed or hostile"
    )]
    BadRelease {
        release: String,
        reason: &'static str,
    },
    #[error("module {module}: {reason}")]
    Module { module: String, reason: String },
}
