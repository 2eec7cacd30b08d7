//! `X0xAgent`: a built agent.

use std::ffi::c_void;
use std::sync::Arc;

use super::boundary::{arg_out, arg_ref, ffi_status, ffi_value};
use super::bytes::X0xBytes;
use super::identity::{write_id, X0xId};
use super::op::{spawn_op, OpOutput, X0xCallback, X0xOp};
use super::status::X0xStatus;
use crate::agent::Agent;

/// An agent. Opaque; obtained from `x0x_agent_builder_build`, released with `x0x_agent_free`.
/// Thread-safe: any function may be called from any thread.
pub struct X0xAgent {
    inner: Arc<Agent>,
}

impl X0xAgent {
    pub(crate) fn new(agent: Agent) -> Self {
        Self {
            inner: Arc::new(agent),
        }
    }
}

impl OpOutput for X0xAgent {
    fn into_raw(self: Box<Self>) -> *mut c_void {
        Box::into_raw(self).cast()
    }
}

/// Writes the agent's id to `*out`. Returns `X0X_OK` or `X0X_INVALID_ARGUMENT` (NULL).
#[no_mangle]
pub unsafe extern "C" fn x0x_agent_agent_id(agent: *const X0xAgent, out: *mut X0xId) -> X0xStatus {
    ffi_status(|| write_id(out, arg_ref(agent, "agent")?.inner.agent_id().0))
}

/// Writes the agent's machine id to `*out`. Returns `X0X_OK` or `X0X_INVALID_ARGUMENT` (NULL).
#[no_mangle]
pub unsafe extern "C" fn x0x_agent_machine_id(
    agent: *const X0xAgent,
    out: *mut X0xId,
) -> X0xStatus {
    ffi_status(|| write_id(out, arg_ref(agent, "agent")?.inner.machine_id().0))
}

/// Writes the agent's ML-DSA-65 public key (`X0X_PUBLIC_KEY_LEN` bytes) to `*out`; free it with
/// `x0x_bytes_free`. Returns `X0X_OK` or `X0X_INVALID_ARGUMENT` (NULL).
#[no_mangle]
pub unsafe extern "C" fn x0x_agent_public_key(
    agent: *const X0xAgent,
    out: *mut X0xBytes,
) -> X0xStatus {
    ffi_status(|| {
        // Check every pointer before allocating: an early return must not strand a buffer.
        let agent = arg_ref(agent, "agent")?;
        let out = arg_out(out, "out")?;
        *out = X0xBytes::from_vec(agent.inner.public_key().as_bytes().to_vec());
        Ok(())
    })
}

/// Writes the agent's key pair, serialized (format at `x0x_agent_key_generate`; secret), to
/// `*out`; free it with `x0x_bytes_free`. Returns `X0X_OK` or `X0X_INVALID_ARGUMENT` (NULL).
#[no_mangle]
pub unsafe extern "C" fn x0x_agent_keypair_bytes(
    agent: *const X0xAgent,
    out: *mut X0xBytes,
) -> X0xStatus {
    ffi_status(|| {
        let agent = arg_ref(agent, "agent")?;
        let out = arg_out(out, "out")?;
        *out = X0xBytes::from_vec(agent.inner.agent_keypair_bytes());
        Ok(())
    })
}

/// Closes the agent (idempotent). Async; the callback's `result` is NULL. The handle stays valid
/// until `x0x_agent_free`. Returns `X0X_OK` once started, or `X0X_INVALID_ARGUMENT` (NULL agent;
/// then no callback runs). `op_out` may be NULL.
#[no_mangle]
pub unsafe extern "C" fn x0x_agent_close(
    agent: *const X0xAgent,
    callback: X0xCallback,
    user_data: *mut c_void,
    op_out: *mut *mut X0xOp,
) -> X0xStatus {
    ffi_status(|| {
        let agent = Arc::clone(&arg_ref(agent, "agent")?.inner);
        spawn_op(
            callback,
            user_data,
            op_out,
            async move { agent.close().await },
        );
        Ok(())
    })
}

/// Releases the caller's reference. NULL is a no-op. Operations in flight keep the agent alive
/// until they complete.
#[no_mangle]
pub unsafe extern "C" fn x0x_agent_free(agent: *mut X0xAgent) {
    ffi_value((), || {
        if !agent.is_null() {
            drop(Box::from_raw(agent));
        }
    })
}
