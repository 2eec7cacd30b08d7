//! Status codes. The numbers are part of the ABI: never renumber, only append.

use std::ffi::c_char;

use crate::error::ErrorKind;

/// The result of every fallible x0x function and of every async operation.
pub type X0xStatus = i32;

/// Success.
pub const X0X_OK: X0xStatus = 0;
/// An argument was NULL, not valid UTF-8, or otherwise unusable.
pub const X0X_INVALID_ARGUMENT: X0xStatus = 1;
/// The named thing does not exist.
pub const X0X_NOT_FOUND: X0xStatus = 2;
/// The operating system refused a file or socket operation.
pub const X0X_IO: X0xStatus = 3;
/// A cryptographic operation failed.
pub const X0X_CRYPTO: X0xStatus = 4;
/// The agent is not connected to the network.
pub const X0X_NOT_CONNECTED: X0xStatus = 5;
/// The object was closed.
pub const X0X_CLOSED: X0xStatus = 6;
/// The operation was cancelled.
pub const X0X_CANCELLED: X0xStatus = 7;
/// The operation did not finish in time.
pub const X0X_TIMEOUT: X0xStatus = 8;
/// A peer broke the wire protocol.
pub const X0X_PROTOCOL: X0xStatus = 9;
/// A bug inside x0x (a Rust panic) was caught at the ABI boundary.
pub const X0X_PANIC: X0xStatus = 10;
/// Stored data (a key file, a persisted list) is damaged; it was left untouched.
pub const X0X_CORRUPT: X0xStatus = 11;
/// The agent's identity is in use by another running agent (its data dir or key file is
/// locked by another process, or another process runs with the same agent key).
pub const X0X_IN_USE: X0xStatus = 12;
/// The other agent refused a direct message or request (no inbox open, the request was
/// dropped unanswered) or its handler failed; the error message is its reason.
pub const X0X_REMOTE: X0xStatus = 13;

/// Every status with its name, in numeric order.
pub(crate) const STATUS_NAMES: [(X0xStatus, &str); 14] = [
    (X0X_OK, "OK\0"),
    (X0X_INVALID_ARGUMENT, "INVALID_ARGUMENT\0"),
    (X0X_NOT_FOUND, "NOT_FOUND\0"),
    (X0X_IO, "IO\0"),
    (X0X_CRYPTO, "CRYPTO\0"),
    (X0X_NOT_CONNECTED, "NOT_CONNECTED\0"),
    (X0X_CLOSED, "CLOSED\0"),
    (X0X_CANCELLED, "CANCELLED\0"),
    (X0X_TIMEOUT, "TIMEOUT\0"),
    (X0X_PROTOCOL, "PROTOCOL\0"),
    (X0X_PANIC, "PANIC\0"),
    (X0X_CORRUPT, "CORRUPT\0"),
    (X0X_IN_USE, "IN_USE\0"),
    (X0X_REMOTE, "REMOTE\0"),
];

pub(crate) fn status_of(kind: ErrorKind) -> X0xStatus {
    match kind {
        ErrorKind::InvalidArgument => X0X_INVALID_ARGUMENT,
        ErrorKind::NotFound => X0X_NOT_FOUND,
        ErrorKind::Io => X0X_IO,
        ErrorKind::Crypto => X0X_CRYPTO,
        ErrorKind::Corrupt => X0X_CORRUPT,
        ErrorKind::NotConnected => X0X_NOT_CONNECTED,
        ErrorKind::Closed => X0X_CLOSED,
        ErrorKind::Cancelled => X0X_CANCELLED,
        ErrorKind::Timeout => X0X_TIMEOUT,
        ErrorKind::Protocol => X0X_PROTOCOL,
        ErrorKind::InUse => X0X_IN_USE,
        ErrorKind::Remote => X0X_REMOTE,
    }
}

/// The name of `status` without the `X0X_` prefix (`"INVALID_ARGUMENT"`), or `"UNKNOWN"`.
///
/// The returned string is static: never free it.
#[no_mangle]
pub extern "C" fn x0x_status_str(status: X0xStatus) -> *const c_char {
    let name = STATUS_NAMES
        .iter()
        .find(|(code, _)| *code == status)
        .map_or("UNKNOWN\0", |(_, name)| name);
    name.as_ptr().cast()
}
