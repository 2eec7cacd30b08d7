//! `X0xInbox`: a pulled stream of the direct messages and requests other agents send.

use std::ffi::c_void;
use std::sync::Arc;

use super::boundary::{arg_out, arg_ref, ffi_status, ffi_value};
use super::direct_message::X0xDirectMessageBatch;
use super::op::{spawn_op, X0xCallback, X0xOp};
use super::status::X0xStatus;
use super::subscription::X0X_MAX_BATCH;
use crate::direct::Inbox;
use crate::error::{Error, ErrorKind};

/// An agent's inbox. Opaque; from `x0x_agent_inbox`, released with `x0x_inbox_free`.
/// Thread-safe, but keep at most one `x0x_inbox_next` outstanding.
pub struct X0xInbox {
    inner: Arc<Inbox>,
}

impl X0xInbox {
    pub(crate) fn new(inbox: Inbox) -> Self {
        Self {
            inner: Arc::new(inbox),
        }
    }
}

fn closed() -> Error {
    Error::new(ErrorKind::Closed, "the inbox is closed")
}

fn clamp(max: usize) -> usize {
    max.clamp(1, X0X_MAX_BATCH)
}

/// Waits for direct messages and hands out up to `max` of them (oldest first) as one batch.
///
/// Async: on success the callback's `result` is a non-empty `X0xDirectMessageBatch *` that the
/// callee owns: take the messages out with `x0x_direct_message_batch_take`, then free it with
/// `x0x_direct_message_batch_free`. `X0X_CLOSED` once the inbox is closed and drained.
/// Cancelling loses no message. Returns `X0X_OK` once started, or `X0X_INVALID_ARGUMENT` (NULL
/// inbox; then no callback runs). `op_out` may be NULL.
#[no_mangle]
pub unsafe extern "C" fn x0x_inbox_next(
    inbox: *const X0xInbox,
    max: usize,
    callback: X0xCallback,
    user_data: *mut c_void,
    op_out: *mut *mut X0xOp,
) -> X0xStatus {
    ffi_status(|| {
        let inner = Arc::clone(&arg_ref(inbox, "inbox")?.inner);
        spawn_op(callback, user_data, op_out, async move {
            let messages = inner.next_batch(clamp(max)).await.ok_or_else(closed)?;
            Ok(X0xDirectMessageBatch::new(messages))
        });
        Ok(())
    })
}

/// Takes up to `max` waiting messages without blocking: `*out` is a batch (the caller owns it:
/// `x0x_direct_message_batch_free`) or NULL when none are waiting.
///
/// Returns `X0X_OK`, `X0X_CLOSED` (closed and drained; `*out` is NULL) or
/// `X0X_INVALID_ARGUMENT` (NULL).
#[no_mangle]
pub unsafe extern "C" fn x0x_inbox_try_next(
    inbox: *const X0xInbox,
    max: usize,
    out: *mut *mut X0xDirectMessageBatch,
) -> X0xStatus {
    ffi_status(|| {
        let inbox = arg_ref(inbox, "inbox")?;
        let out = arg_out(out, "out")?;
        *out = std::ptr::null_mut();
        let messages = inbox.inner.try_next_batch(clamp(max)).ok_or_else(closed)?;
        if !messages.is_empty() {
            *out = Box::into_raw(Box::new(X0xDirectMessageBatch::new(messages)));
        }
        Ok(())
    })
}

/// Writes how many messages this inbox lost because it was full (the oldest are dropped first;
/// a dropped request is refused) to `*out`. Returns `X0X_OK` or `X0X_INVALID_ARGUMENT`.
#[no_mangle]
pub unsafe extern "C" fn x0x_inbox_dropped(inbox: *const X0xInbox, out: *mut u64) -> X0xStatus {
    ffi_status(|| {
        let inbox = arg_ref(inbox, "inbox")?;
        *arg_out(out, "out")? = inbox.inner.dropped();
        Ok(())
    })
}

/// Closes the inbox (idempotent): senders are refused from now on (`X0X_REMOTE`), and the
/// agent may open another inbox. Messages already queued can still be read; after them
/// `x0x_inbox_next` completes with `X0X_CLOSED`. Returns `X0X_OK` or `X0X_INVALID_ARGUMENT`.
#[no_mangle]
pub unsafe extern "C" fn x0x_inbox_close(inbox: *const X0xInbox) -> X0xStatus {
    ffi_status(|| {
        arg_ref(inbox, "inbox")?.inner.close();
        Ok(())
    })
}

/// Closes the inbox and releases the caller's handle: a pending `x0x_inbox_next` completes
/// with `X0X_CLOSED`, and requests still queued are refused once no operation uses the inbox
/// any more. NULL is a no-op.
#[no_mangle]
pub unsafe extern "C" fn x0x_inbox_free(inbox: *mut X0xInbox) {
    ffi_value((), || {
        if let Some(inbox) = inbox.as_mut() {
            // Freeing is closing: a pending next gets X0X_CLOSED rather than waiting forever.
            inbox.inner.close();
            drop(Box::from_raw(inbox));
        }
    })
}
