//! `X0xAgentBuilder`: configures an agent, then builds it asynchronously.

use std::ffi::{c_char, c_void};
use std::net::SocketAddr;
use std::sync::{Mutex, MutexGuard};

use super::agent::X0xAgent;
use super::boundary::{arg_bytes, arg_path, arg_ref, arg_str, ffi_status, ffi_value};
use super::op::{spawn_op, X0xCallback, X0xOp};
use super::status::X0xStatus;
use crate::agent::AgentBuilder;
use crate::error::{Error, Result};
use crate::identity::Keypair;

/// Agent configuration. Opaque; create with `x0x_agent_builder_new`, free with
/// `x0x_agent_builder_free`. Thread-safe.
pub struct X0xAgentBuilder {
    inner: Mutex<AgentBuilder>,
}

pub(crate) unsafe fn builder<'a>(
    builder: *const X0xAgentBuilder,
) -> Result<MutexGuard<'a, AgentBuilder>> {
    Ok(arg_ref(builder, "builder")?
        .inner
        .lock()
        .unwrap_or_else(|e| e.into_inner()))
}

/// A new builder with the defaults: machine key at `$HOME/.x0x/machine.key` (shared by every
/// agent on the machine), an ephemeral agent key (a new agent id on every build), bind
/// `0.0.0.0:0`.
///
/// The caller owns the result and frees it with `x0x_agent_builder_free`. Returns NULL only if
/// the library failed internally (`x0x_last_error_message` says why).
#[no_mangle]
pub extern "C" fn x0x_agent_builder_new() -> *mut X0xAgentBuilder {
    ffi_value(std::ptr::null_mut(), || {
        Box::into_raw(Box::new(X0xAgentBuilder {
            inner: Mutex::new(AgentBuilder::new()),
        }))
    })
}

/// Frees a builder. NULL is a no-op. Builds already started are unaffected.
#[no_mangle]
pub unsafe extern "C" fn x0x_agent_builder_free(builder: *mut X0xAgentBuilder) {
    ffi_value((), || {
        if !builder.is_null() {
            drop(Box::from_raw(builder));
        }
    })
}

/// Uses (or creates, mode 0600) the machine key file at `path` (NUL-terminated UTF-8, copied).
///
/// Returns `X0X_OK` or `X0X_INVALID_ARGUMENT` (NULL, bad UTF-8, empty). The file itself is read
/// at build time.
#[no_mangle]
pub unsafe extern "C" fn x0x_agent_builder_with_machine_key(
    builder: *mut X0xAgentBuilder,
    path: *const c_char,
) -> X0xStatus {
    ffi_status(|| {
        let path = arg_path(path, "path")?;
        self::builder(builder)?.with_machine_key(path);
        Ok(())
    })
}

/// Uses a fresh machine key that is never written to disk: for agents that must leave no file
/// behind. Not needed for several agents on one machine (they share the machine key).
///
/// Returns `X0X_OK` or `X0X_INVALID_ARGUMENT` (NULL builder).
#[no_mangle]
pub unsafe extern "C" fn x0x_agent_builder_with_ephemeral_machine_key(
    builder: *mut X0xAgentBuilder,
) -> X0xStatus {
    ffi_status(|| {
        self::builder(builder)?.with_ephemeral_machine_key();
        Ok(())
    })
}

/// Uses the serialized agent key pair in `key[0..len]` (copied; format at
/// `x0x_agent_key_generate`).
///
/// Returns `X0X_OK` or `X0X_INVALID_ARGUMENT` (NULL, wrong length, damaged or not an x0x key);
/// the builder is unchanged on failure.
#[no_mangle]
pub unsafe extern "C" fn x0x_agent_builder_with_agent_key(
    builder: *mut X0xAgentBuilder,
    key: *const u8,
    len: usize,
) -> X0xStatus {
    ffi_status(|| {
        let keypair = Keypair::from_bytes(arg_bytes(key, len, "key")?)?;
        self::builder(builder)?.with_agent_key(keypair);
        Ok(())
    })
}

/// Keeps the agent key in the file at `path` (NUL-terminated UTF-8, copied): created (mode
/// 0600) on first build, loaded after, so the agent keeps its id across restarts. It wins over
/// the data dir's key. While the agent runs `<path>.lock` is locked: a second build fails with
/// `X0X_IN_USE`.
///
/// Returns `X0X_OK` or `X0X_INVALID_ARGUMENT` (NULL, bad UTF-8, empty). The file itself is read
/// at build time.
#[no_mangle]
pub unsafe extern "C" fn x0x_agent_builder_with_agent_key_file(
    builder: *mut X0xAgentBuilder,
    path: *const c_char,
) -> X0xStatus {
    ffi_status(|| {
        let path = arg_path(path, "path")?;
        self::builder(builder)?.with_agent_key_file(path);
        Ok(())
    })
}

/// Binds the agent's UDP socket to `addr`, an `ip:port` such as `"127.0.0.1:0"` (copied).
///
/// Returns `X0X_OK` or `X0X_INVALID_ARGUMENT` (NULL, bad UTF-8, not an ip:port).
#[no_mangle]
pub unsafe extern "C" fn x0x_agent_builder_with_bind(
    builder: *mut X0xAgentBuilder,
    addr: *const c_char,
) -> X0xStatus {
    ffi_status(|| {
        let text = arg_str(addr, "addr")?;
        let addr: SocketAddr = text.parse().map_err(|_| {
            Error::invalid_argument(format!(
                "invalid bind address {text:?}: expected ip:port, e.g. 127.0.0.1:0 or [::1]:0"
            ))
        })?;
        self::builder(builder)?.with_bind(addr);
        Ok(())
    })
}

/// Adds a bootstrap peer `host:port` (copied). Call once per peer.
///
/// Returns `X0X_OK` or `X0X_INVALID_ARGUMENT` (NULL, bad UTF-8, not host:port).
#[no_mangle]
pub unsafe extern "C" fn x0x_agent_builder_with_bootstrap(
    builder: *mut X0xAgentBuilder,
    addr: *const c_char,
) -> X0xStatus {
    ffi_status(|| {
        let addr = arg_str(addr, "addr")?;
        self::builder(builder)?.with_bootstrap(addr)?;
        Ok(())
    })
}

/// Makes the directory `path` (NUL-terminated UTF-8, copied; created at build if missing) the
/// agent's home: its agent key (`agent.key`, unless one is given otherwise) and its task lists
/// live there, so a build with the same directory is the same agent with its lists. While the
/// agent runs `agent.lock` there is locked: a second build fails with `X0X_IN_USE`. Without a
/// data dir (or key), the agent key is ephemeral and task lists live in memory only.
///
/// Returns `X0X_OK` or `X0X_INVALID_ARGUMENT` (NULL, bad UTF-8, empty).
#[no_mangle]
pub unsafe extern "C" fn x0x_agent_builder_with_data_dir(
    builder: *mut X0xAgentBuilder,
    path: *const c_char,
) -> X0xStatus {
    ffi_status(|| {
        let path = arg_path(path, "path")?;
        self::builder(builder)?.with_data_dir(path);
        Ok(())
    })
}

/// Builds an agent from a snapshot of the builder's configuration (the builder stays usable and
/// may be freed at once).
///
/// Async: on success the callback's `result` is an `X0xAgent *` that the callee owns and frees
/// with `x0x_agent_free`. Failures: `X0X_IO` (key file unreadable or not creatable),
/// `X0X_CORRUPT` (key file damaged; it is left untouched), `X0X_IN_USE` (another running agent
/// holds the data dir or agent key file; the message names the path and the process),
/// `X0X_CRYPTO`, `X0X_CANCELLED`.
/// Returns `X0X_OK` once started (the callback may already have run), or `X0X_INVALID_ARGUMENT`
/// for a NULL builder (then no callback runs). `op_out` may be NULL.
#[no_mangle]
pub unsafe extern "C" fn x0x_agent_builder_build(
    builder: *const X0xAgentBuilder,
    callback: X0xCallback,
    user_data: *mut c_void,
    op_out: *mut *mut X0xOp,
) -> X0xStatus {
    ffi_status(|| {
        let config = self::builder(builder)?.clone();
        spawn_op(callback, user_data, op_out, async move {
            config.build().await.map(X0xAgent::new)
        });
        Ok(())
    })
}
