//! `X0xSubscription`: a pulled stream of message batches for one topic.

use std::ffi::c_void;
use std::sync::Arc;

use super::message::X0xMessageBatch;
use super::op::{X0xCallback, X0xOp};
use super::status::X0xStatus;
use super::stream::{
    impl_pulled, stream_close, stream_dropped, stream_free, stream_next, stream_try_next,
    PulledHandle,
};
use crate::pubsub::{Message, Subscription};

/// The largest batch `max` is clamped to.
pub const X0X_MAX_BATCH: usize = 4096;

/// A subscription. Opaque; from `x0x_agent_subscribe`, released with `x0x_subscription_free`.
/// Thread-safe, but keep at most one `x0x_subscription_next` outstanding.
pub struct X0xSubscription {
    inner: Arc<Subscription>,
}

impl X0xSubscription {
    pub(crate) fn new(subscription: Subscription) -> Self {
        Self {
            inner: Arc::new(subscription),
        }
    }
}

impl PulledHandle for X0xSubscription {
    type Queue = Subscription;
    const ARG: &'static str = "subscription";
    const CLOSED: &'static str = "the subscription is closed";
    fn queue(&self) -> &Arc<Subscription> {
        &self.inner
    }
}

impl_pulled!(Subscription, Message, X0xMessageBatch, X0xMessageBatch::new);

/// Waits for messages and hands out up to `max` of them (oldest first) as one batch.
///
/// Async: on success the callback's `result` is a non-empty `X0xMessageBatch *` that the callee
/// frees with `x0x_message_batch_free`. `X0X_CLOSED` once the subscription is closed and drained.
/// Cancelling loses no message. Returns `X0X_OK` once started, or `X0X_INVALID_ARGUMENT` (NULL
/// subscription; then no callback runs). `op_out` may be NULL.
#[no_mangle]
pub unsafe extern "C" fn x0x_subscription_next(
    subscription: *const X0xSubscription,
    max: usize,
    callback: X0xCallback,
    user_data: *mut c_void,
    op_out: *mut *mut X0xOp,
) -> X0xStatus {
    stream_next(subscription, max, callback, user_data, op_out)
}

/// Takes up to `max` waiting messages without blocking: `*out` is a batch (free it with
/// `x0x_message_batch_free`) or NULL when none are waiting.
///
/// Returns `X0X_OK`, `X0X_CLOSED` (closed and drained; `*out` is NULL) or `X0X_INVALID_ARGUMENT`.
#[no_mangle]
pub unsafe extern "C" fn x0x_subscription_try_next(
    subscription: *const X0xSubscription,
    max: usize,
    out: *mut *mut X0xMessageBatch,
) -> X0xStatus {
    stream_try_next(subscription, max, out)
}

/// Writes how many messages this subscription lost because its queue was full (the oldest are
/// dropped first) to `*out`. Returns `X0X_OK` or `X0X_INVALID_ARGUMENT`.
#[no_mangle]
pub unsafe extern "C" fn x0x_subscription_dropped(
    subscription: *const X0xSubscription,
    out: *mut u64,
) -> X0xStatus {
    stream_dropped(subscription, out)
}

/// Unsubscribes (idempotent). Messages already queued can still be read; after them
/// `x0x_subscription_next` completes with `X0X_CLOSED`. Returns `X0X_OK` or
/// `X0X_INVALID_ARGUMENT`.
#[no_mangle]
pub unsafe extern "C" fn x0x_subscription_close(subscription: *const X0xSubscription) -> X0xStatus {
    stream_close(subscription)
}

/// Releases the caller's handle; the subscription ends when no operation uses it any more.
/// NULL is a no-op.
#[no_mangle]
pub unsafe extern "C" fn x0x_subscription_free(subscription: *mut X0xSubscription) {
    stream_free(subscription)
}
