//! `X0xSubscription`: a pulled stream of message batches for one topic.

use std::ffi::c_void;
use std::sync::Arc;

use super::boundary::{arg_out, arg_ref, ffi_status, ffi_value};
use super::message::X0xMessageBatch;
use super::op::{spawn_op, X0xCallback, X0xOp};
use super::status::X0xStatus;
use crate::error::{Error, ErrorKind};
use crate::pubsub::Subscription;

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

fn closed() -> Error {
    Error::new(ErrorKind::Closed, "the subscription is closed")
}

fn clamp(max: usize) -> usize {
    max.clamp(1, X0X_MAX_BATCH)
}

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
    ffi_status(|| {
        let inner = Arc::clone(&arg_ref(subscription, "subscription")?.inner);
        spawn_op(callback, user_data, op_out, async move {
            let messages = inner.next_batch(clamp(max)).await.ok_or_else(closed)?;
            Ok(X0xMessageBatch::new(messages))
        });
        Ok(())
    })
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
    ffi_status(|| {
        let subscription = arg_ref(subscription, "subscription")?;
        let out = arg_out(out, "out")?;
        *out = std::ptr::null_mut();
        let messages = subscription
            .inner
            .try_next_batch(clamp(max))
            .ok_or_else(closed)?;
        if !messages.is_empty() {
            *out = Box::into_raw(Box::new(X0xMessageBatch::new(messages)));
        }
        Ok(())
    })
}

/// Writes how many messages this subscription lost because its queue was full (the oldest are
/// dropped first) to `*out`. Returns `X0X_OK` or `X0X_INVALID_ARGUMENT`.
#[no_mangle]
pub unsafe extern "C" fn x0x_subscription_dropped(
    subscription: *const X0xSubscription,
    out: *mut u64,
) -> X0xStatus {
    ffi_status(|| {
        let subscription = arg_ref(subscription, "subscription")?;
        *arg_out(out, "out")? = subscription.inner.dropped();
        Ok(())
    })
}

/// Unsubscribes (idempotent). Messages already queued can still be read; after them
/// `x0x_subscription_next` completes with `X0X_CLOSED`. Returns `X0X_OK` or
/// `X0X_INVALID_ARGUMENT`.
#[no_mangle]
pub unsafe extern "C" fn x0x_subscription_close(subscription: *const X0xSubscription) -> X0xStatus {
    ffi_status(|| {
        arg_ref(subscription, "subscription")?.inner.close();
        Ok(())
    })
}

/// Releases the caller's handle; the subscription ends when no operation uses it any more.
/// NULL is a no-op.
#[no_mangle]
pub unsafe extern "C" fn x0x_subscription_free(subscription: *mut X0xSubscription) {
    ffi_value((), || {
        if let Some(subscription) = subscription.as_mut() {
            // Freeing is unsubscribing: a pending next gets X0X_CLOSED rather than waiting forever.
            subscription.inner.close();
            drop(Box::from_raw(subscription));
        }
    })
}
