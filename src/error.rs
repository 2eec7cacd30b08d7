//! The core error type. Every error carries a [`ErrorKind`] (mapped 1:1 to C status codes) and a
//! message that tells the user what went wrong and, where it helps, what to do.

use std::fmt;

/// What kind of failure an [`Error`] is; stable, and mapped 1:1 to `X0xStatus` codes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ErrorKind {
    /// The caller passed something unusable (bad address, bad hex, NULL, bad UTF-8, bad key bytes).
    InvalidArgument,
    /// A named thing (task, list, subscription) does not exist.
    NotFound,
    /// The operating system refused a file or socket operation.
    Io,
    /// A cryptographic operation failed (key generation, signing).
    Crypto,
    /// Stored data (a key file, a persisted list) is damaged; it was left untouched.
    Corrupt,
    /// The agent is not connected to the network.
    NotConnected,
    /// The object was closed.
    Closed,
    /// The operation was cancelled.
    Cancelled,
    /// The operation did not finish in time.
    Timeout,
    /// A peer broke the wire protocol.
    Protocol,
    /// The agent's identity is in use by another running agent (its data dir or key file is
    /// locked, or a peer showed the network this agent's id from another process).
    InUse,
    /// The other agent refused a direct message or request, or its handler failed; the
    /// message is the other agent's reason.
    Remote,
}

/// A core error: a kind plus a human-readable message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Error {
    kind: ErrorKind,
    message: String,
}

/// Result alias used throughout the core.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// An error of `kind` with `message`.
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        Self {
            kind,
            message: message.into(),
        }
    }

    /// Shorthand for an [`ErrorKind::InvalidArgument`] error.
    pub fn invalid_argument(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::InvalidArgument, message)
    }

    /// An [`ErrorKind::Io`] error that names what was being done and the OS reason.
    pub fn io(context: impl fmt::Display, source: &std::io::Error) -> Self {
        Self::new(ErrorKind::Io, format!("{context}: {source}"))
    }

    /// The kind of this error.
    pub fn kind(&self) -> ErrorKind {
        self.kind
    }

    /// The message of this error.
    pub fn message(&self) -> &str {
        &self.message
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Error {}
