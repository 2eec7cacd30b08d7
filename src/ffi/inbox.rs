//! `X0xInbox`: a pulled stream of the direct messages and requests other agents send.

use std::ffi::c_void;
use std::sync::Arc;

use super::direct_message::X0xDirectMessageBatch;
use super::op::{X0xCallback, X0xOp};
use super::status::X0xStatus;
use super::stream::{
    impl_pulled, stream_close, stream_dropped, stream_free, stream_next, stream_try_next,
    PulledHandle,
};
use crate::direct::{DirectMessage, Inbox};

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

impl PulledHandle for X0xInbox {
    type Queue = Inbox;
    const ARG: &'static str = "inbox";
    const CLOSED: &'static str = "the inbox is closed";
    fn queue(&self) -> &Arc<Inbox> {
        &self.inner
    }
}

impl_pulled!(
    Inbox,
    DirectMessage,
    X0xDirectMessageBatch,
    X0xDirectMessageBatch::new
);

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
    stream_next(inbox, max, callback, user_data, op_out)
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
    stream_try_next(inbox, max, out)
}

/// Writes how many messages this inbox lost because it was full (the oldest are dropped first;
/// a dropped request is refused) to `*out`. Returns `X0X_OK` or `X0X_INVALID_ARGUMENT`.
#[no_mangle]
pub unsafe extern "C" fn x0x_inbox_dropped(inbox: *const X0xInbox, out: *mut u64) -> X0xStatus {
    stream_dropped(inbox, out)
}

/// Closes the inbox (idempotent): senders are refused from now on (`X0X_REMOTE`), and the
/// agent may open another inbox. Messages already queued can still be read; after them
/// `x0x_inbox_next` completes with `X0X_CLOSED`. Returns `X0X_OK` or `X0X_INVALID_ARGUMENT`.
#[no_mangle]
pub unsafe extern "C" fn x0x_inbox_close(inbox: *const X0xInbox) -> X0xStatus {
    stream_close(inbox)
}

/// Closes the inbox and releases the caller's handle: a pending `x0x_inbox_next` completes
/// with `X0X_CLOSED`, and requests still queued are refused once no operation uses the inbox
/// any more. NULL is a no-op.
#[no_mangle]
pub unsafe extern "C" fn x0x_inbox_free(inbox: *mut X0xInbox) {
    stream_free(inbox)
}
