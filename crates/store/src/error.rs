use std::path::PathBuf;

use ignite_api::Kind;
use ignite_api::manifest::DecodeError;

/// What went wrong with the state store.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error(transparent)]
    Io(#[from] ignite_host_tools::PathError),
    #[error(
        "{} is damaged and was skipped: {source}; fix or delete that directory",
        path.display()
    )]
    Corrupt {
        path: PathBuf,
        #[source]
        source: DecodeError,
    },
    #[error("can't find {kind}: no ID or name matches {query:?}")]
    NotFound { kind: Kind, query: String },
    #[error(
        "ambiguous {kind} query: {query:?} matched the following IDs/names: {}; give more characters",
        candidates.join(", ")
    )]
    Ambiguous {
        kind: Kind,
        query: String,
        candidates: Vec<String>,
    },
    #[error(
        "the {kind} name {name:?} is already used by {uid}; choose another name or remove that {kind}"
    )]
    NameTaken {
        kind: Kind,
        name: String,
        uid: String,
    },
    #[error("the {kind} uid {uid} is already in use")]
    UidTaken { kind: Kind, uid: String },
    #[error("a {kind} needs a name to be stored")]
    NameRequired { kind: Kind },
}

pub type Result<T> = std::result::Result<T, StoreError>;

pub(crate) fn io(
    action: &'static str,
    path: impl Into<PathBuf>,
) -> impl FnOnce(std::io::Error) -> StoreError {
    let path = path.into();
    move |source| StoreError::Io(ignite_host_tools::PathError::new(action, path, source))
}
