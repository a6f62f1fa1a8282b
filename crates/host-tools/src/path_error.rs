//! The I/O error every crate reports for a file it works on: what was being done, to which
//! path, and why. One type instead of a copy per crate's error enum.

use std::fmt;
use std::io;
use std::path::PathBuf;

/// `cannot read /var/lib/ignite/vms/x/metadata.json: No such file or directory`. Its
/// message holds its cause, so it reports no separate source: a caller printing the whole
/// chain shows the cause once.
#[derive(Debug)]
pub struct PathError {
    pub action: &'static str,
    pub path: PathBuf,
    pub cause: io::Error,
}

impl PathError {
    pub fn new(action: &'static str, path: impl Into<PathBuf>, cause: io::Error) -> PathError {
        PathError {
            action,
            path: path.into(),
            cause,
        }
    }

    pub fn kind(&self) -> io::ErrorKind {
        self.cause.kind()
    }
}

impl fmt::Display for PathError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "cannot {} {}: {}",
            self.action,
            self.path.display(),
            self.cause
        )
    }
}

impl std::error::Error for PathError {}

/// For `map_err`: turns an I/O error on `path` into any error that wraps a [`PathError`].
pub fn path_error<E: From<PathError>>(
    action: &'static str,
    path: impl Into<PathBuf>,
) -> impl FnOnce(io::Error) -> E {
    let path = path.into();
    move |cause| PathError::new(action, path, cause).into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_message_says_what_where_and_why_once() {
        let e = PathError::new("read", "/x/y", io::Error::from(io::ErrorKind::NotFound));
        assert_eq!(e.to_string(), "cannot read /x/y: entity not found");
        assert!(std::error::Error::source(&e).is_none());
        assert_eq!(e.kind(), io::ErrorKind::NotFound);
    }
}
