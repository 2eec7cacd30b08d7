//! The C ABI. `include/x0x.h` is generated from this module by cbindgen; this is the only place
//! in x0x with `extern "C"` functions and raw pointers.
//!
//! # Conventions
//! * **Names**: functions `x0x_<noun>_<verb>`, types `X0x<Noun>`, constants `X0X_<NAME>`.
//! * **Status**: every fallible function returns an `X0xStatus` (`X0X_OK` = 0) and writes results
//!   through out-parameters. The numbers never change. After a failed synchronous call,
//!   `x0x_last_error_message()` gives that thread's message; async results carry their own.
//! * **Inputs** are borrowed for the duration of the call and copied if kept: `(const uint8_t *,
//!   size_t)` byte ranges or NUL-terminated UTF-8 strings. NULL where a value is needed, invalid
//!   UTF-8 and impossible lengths give `X0X_INVALID_ARGUMENT`, never a crash.
//! * **Outputs** allocated by the library are freed by the library (`x0x_bytes_free`,
//!   `x0x_agent_free`, …), never with `free()`. Every `*_free` accepts NULL. An async result
//!   of bytes (`x0x_agent_request`) is an `X0xBytes *` allocated struct and all:
//!   `x0x_bytes_destroy`.
//! * **Handles** are opaque and thread-safe. Freeing a handle releases only the caller's
//!   reference: operations in flight hold their own and finish normally.
//! * **Async** functions take `(X0xCallback callback, void *user_data, X0xOp **op_out)`. The
//!   callback runs exactly once, on the library's callback thread, with no library lock held:
//!   with `X0X_OK`, an error, `X0X_CANCELLED` or `X0X_CLOSED`. It may run before the starting
//!   function returns. A NULL callback is allowed: then `x0x_op_wait` hands out the result.
//!   `x0x_op_cancel` is idempotent and safe against completion. `op_out` may be NULL.
//!   An event loop may attach a completion queue instead (`x0x_op_then_queue`, `queue.rs`).
//! * **Panics** never cross the boundary: they become `X0X_PANIC` (or NULL for functions that
//!   return pointers) with a message.
//! * **Shutdown**: call `x0x_shutdown()` before the process exits if callbacks call into a
//!   runtime that is being torn down (Python does this from `atexit`).

// C callers cannot see Rust's `unsafe`; each function's doc states its pointer contract, and the
// module doc above states the rules they share.
#![allow(clippy::missing_safety_doc)]

use std::ffi::c_char;

pub mod agent;
pub mod boundary;
pub mod builder;
pub mod bytes;
pub mod direct_message;
pub mod events;
pub mod identity;
pub mod inbox;
pub mod log;
pub mod message;
pub mod op;
pub mod presence;
pub mod queue;
pub mod status;
mod stream;
pub mod subscription;
pub mod tasklist;

/// Major version of the library this header belongs to.
pub const X0X_VERSION_MAJOR: u32 = 0;
/// Minor version of the library this header belongs to.
pub const X0X_VERSION_MINOR: u32 = 3;
/// Patch version of the library this header belongs to.
pub const X0X_VERSION_PATCH: u32 = 0;

/// The library's version, `"MAJOR.MINOR.PATCH"`. Static: never free it. Compare with the
/// `X0X_VERSION_*` macros to detect a header/library mismatch.
#[no_mangle]
pub extern "C" fn x0x_version() -> *const c_char {
    concat!(env!("CARGO_PKG_VERSION"), "\0").as_ptr().cast()
}
