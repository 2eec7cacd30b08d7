//! The pulled streams' shared body: `x0x_{subscription,inbox,event_stream}_*` each call these.
//!
//! A stream handle owns an `Arc` of a core queue; `next` waits for a batch in an operation,
//! `try_next` takes one without waiting, and freeing the handle closes the queue.

use std::ffi::c_void;
use std::future::Future;
use std::sync::Arc;

use super::boundary::{arg_out, arg_ref, ffi_status, ffi_value};
use super::op::{spawn_op, OpOutput, X0xCallback, X0xOp};
use super::status::X0xStatus;
use super::subscription::X0X_MAX_BATCH;
use crate::error::{Error, ErrorKind};

/// The core queue behind a stream handle, and the batch type its items reach C in.
pub(crate) trait Pulled: Send + Sync + 'static {
    type Item: Send;
    type Batch: OpOutput + Send;
    /// Up to `max` items, waiting for at least one; `None` once closed and drained.
    fn next_batch(&self, max: usize) -> impl Future<Output = Option<Vec<Self::Item>>> + Send;
    /// Up to `max` items without waiting (possibly none); `None` once closed and drained.
    fn try_next_batch(&self, max: usize) -> Option<Vec<Self::Item>>;
    fn dropped(&self) -> u64;
    fn close(&self);
    fn batch(items: Vec<Self::Item>) -> Self::Batch;
}

/// Implements [`Pulled`] for a core stream type by its inherent methods of the same names;
/// `$batch` makes the C batch of a `Vec<$item>`.
macro_rules! impl_pulled {
    ($queue:ty, $item:ty, $batch:ty, $make:expr) => {
        impl $crate::ffi::stream::Pulled for $queue {
            type Item = $item;
            type Batch = $batch;
            fn next_batch(
                &self,
                max: usize,
            ) -> impl std::future::Future<Output = Option<Vec<$item>>> + Send {
                <$queue>::next_batch(self, max)
            }
            fn try_next_batch(&self, max: usize) -> Option<Vec<$item>> {
                <$queue>::try_next_batch(self, max)
            }
            fn dropped(&self) -> u64 {
                <$queue>::dropped(self)
            }
            fn close(&self) {
                <$queue>::close(self)
            }
            fn batch(items: Vec<$item>) -> $batch {
                $make(items)
            }
        }
    };
}
pub(crate) use impl_pulled;

/// An opaque stream handle (`X0xSubscription`, ...).
pub(crate) trait PulledHandle: 'static {
    type Queue: Pulled;
    /// The handle parameter's name, for INVALID_ARGUMENT messages.
    const ARG: &'static str;
    /// The message of `X0X_CLOSED`.
    const CLOSED: &'static str;
    fn queue(&self) -> &Arc<Self::Queue>;
}

fn closed<H: PulledHandle>() -> Error {
    Error::new(ErrorKind::Closed, H::CLOSED)
}

fn clamp(max: usize) -> usize {
    max.clamp(1, X0X_MAX_BATCH)
}

/// `x0x_*_next`: an operation completing with a non-empty batch, or CLOSED.
///
/// # Safety
/// As the extern fn: `handle` NULL or live, `op_out` NULL or writable.
pub(crate) unsafe fn stream_next<H: PulledHandle>(
    handle: *const H,
    max: usize,
    callback: X0xCallback,
    user_data: *mut c_void,
    op_out: *mut *mut X0xOp,
) -> X0xStatus {
    ffi_status(|| {
        let queue = Arc::clone(arg_ref(handle, H::ARG)?.queue());
        spawn_op(callback, user_data, op_out, async move {
            let items = queue.next_batch(clamp(max)).await.ok_or_else(closed::<H>)?;
            Ok(<H::Queue as Pulled>::batch(items))
        });
        Ok(())
    })
}

/// `x0x_*_try_next`: `*out` is a batch the caller owns, or NULL when nothing waits.
///
/// # Safety
/// As the extern fn: `handle` NULL or live, `out` NULL or writable.
pub(crate) unsafe fn stream_try_next<H: PulledHandle>(
    handle: *const H,
    max: usize,
    out: *mut *mut <H::Queue as Pulled>::Batch,
) -> X0xStatus {
    ffi_status(|| {
        let handle = arg_ref(handle, H::ARG)?;
        let out = arg_out(out, "out")?;
        *out = std::ptr::null_mut();
        let items = handle
            .queue()
            .try_next_batch(clamp(max))
            .ok_or_else(closed::<H>)?;
        if !items.is_empty() {
            *out = Box::into_raw(Box::new(<H::Queue as Pulled>::batch(items)));
        }
        Ok(())
    })
}

/// `x0x_*_dropped`: the items lost to a full queue.
///
/// # Safety
/// As the extern fn: `handle` NULL or live, `out` NULL or writable.
pub(crate) unsafe fn stream_dropped<H: PulledHandle>(handle: *const H, out: *mut u64) -> X0xStatus {
    ffi_status(|| {
        let handle = arg_ref(handle, H::ARG)?;
        *arg_out(out, "out")? = handle.queue().dropped();
        Ok(())
    })
}

/// `x0x_*_close`: closes the queue (idempotent); what is queued can still be read.
///
/// # Safety
/// As the extern fn: `handle` NULL or live.
pub(crate) unsafe fn stream_close<H: PulledHandle>(handle: *const H) -> X0xStatus {
    ffi_status(|| {
        arg_ref(handle, H::ARG)?.queue().close();
        Ok(())
    })
}

/// `x0x_*_free`: closes the queue and releases the caller's handle; NULL is a no-op.
///
/// # Safety
/// As the extern fn: `handle` NULL or from `Box::into_raw`, not used afterwards.
pub(crate) unsafe fn stream_free<H: PulledHandle>(handle: *mut H) {
    ffi_value((), || {
        if let Some(handle) = handle.as_mut() {
            // Freeing is closing: a pending next gets X0X_CLOSED rather than waiting forever.
            handle.queue().close();
            drop(Box::from_raw(handle));
        }
    })
}
