//! nftables transactions for vznet.
//!
//! Rulesets are built as typed documents with the [`nftables`] crate (re-exported
//! as [`schema`]), never as text, so no user-supplied string is ever parsed as nft
//! syntax. A [`Nft`] runs documents as single atomic transactions through an
//! in-process libnftables context that lives on a dedicated thread inside the
//! chosen network namespace. That avoids a fork/exec of `nft` per change (about
//! 4 ms here), which matters for load-balancer map edits. When libnftables cannot
//! be loaded, the same JSON is piped to `nft -j -f -` instead.
//!
//! What libnftables 1.0.6 cannot read as JSON (dynamic maps written from the
//! packet path, `dup`) goes as a [`script::Script`]: native syntax rendered
//! from typed values only.

mod executor;
mod libnftables;
pub mod matching;
pub mod script;

pub use executor::{Backend, Nft};
pub use nftables as schema;

use std::path::PathBuf;

/// What can go wrong running a transaction.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The netns file could not be opened or entered.
    #[error("network namespace {path}: {source}")]
    Netns {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// Neither libnftables nor the `nft` binary could be used.
    #[error("no nftables backend: {0}")]
    NoBackend(String),
    /// The kernel or libnftables refused the transaction; nothing was changed.
    #[error("nftables refused the transaction: {0}")]
    Refused(String),
    /// The executor thread is gone.
    #[error("nftables executor thread stopped")]
    Stopped,
    /// A document could not be serialized or a listing could not be parsed.
    #[error("nftables JSON: {0}")]
    Json(#[from] serde_json::Error),
}
