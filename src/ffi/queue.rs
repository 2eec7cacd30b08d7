//! Completion queues: operations that report to a file descriptor instead of a callback.
//!
//! An event loop (asyncio, trio, libuv, epoll) already waits on file descriptors. A queue gives
//! it one: an operation attached with `x0x_op_then_queue` pushes its token when it settles and
//! makes the descriptor readable; the loop then takes the tokens and collects each result with
//! `x0x_op_wait(op, 0, …)`. The runtime worker that settles the operation wakes the loop
//! directly: no callback thread, no second wake-up, and nothing ever calls into the caller.
//!
//! The descriptor is a non-blocking eventfd, written only when the queue goes from empty to
//! non-empty and read back (reset) when `x0x_completion_queue_take` empties it, under the same
//! lock: readable exactly while tokens wait, at most one write per batch of completions.

use std::collections::VecDeque;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::sync::{Arc, Mutex, MutexGuard};

use super::boundary::{arg_out, arg_ref, ffi_status, ffi_value};
use super::status::X0xStatus;
use crate::error::{Error, Result};

/// A completion queue. Opaque; create it with `x0x_completion_queue_new`, release it with
/// `x0x_completion_queue_free`.
pub struct X0xCompletionQueue {
    shared: Arc<QueueShared>,
}

pub(crate) struct QueueShared {
    ready: OwnedFd,
    state: Mutex<QueueState>,
}

#[derive(Default)]
struct QueueState {
    tokens: VecDeque<u64>,
    /// Whether the eventfd holds a count (was written since the queue was last emptied).
    signalled: bool,
}

impl QueueShared {
    fn new() -> Result<Self> {
        // SAFETY: eventfd takes no pointers; a non-negative result is a descriptor we now own.
        let fd = unsafe { libc::eventfd(0, libc::EFD_NONBLOCK | libc::EFD_CLOEXEC) };
        if fd < 0 {
            let error = std::io::Error::last_os_error();
            return Err(Error::io(
                "cannot create the completion queue's eventfd",
                &error,
            ));
        }
        Ok(Self {
            // SAFETY: fd is a fresh descriptor owned by nobody else.
            ready: unsafe { OwnedFd::from_raw_fd(fd) },
            state: Mutex::new(QueueState::default()),
        })
    }

    fn lock(&self) -> MutexGuard<'_, QueueState> {
        // A poisoned lock only means a panic elsewhere; the token list is always consistent.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Queues `token` and makes the descriptor readable if it was not.
    pub(crate) fn push(&self, token: u64) {
        let mut state = self.lock();
        state.tokens.push_back(token);
        if !state.signalled {
            state.signalled = true;
            let one = 1u64.to_ne_bytes();
            // SAFETY: writes 8 bytes from a live buffer to our own eventfd. It cannot block
            // (non-blocking) and cannot overflow: the count is reset before it is written again.
            unsafe { libc::write(self.ready.as_raw_fd(), one.as_ptr().cast(), one.len()) };
        }
    }

    fn take(&self, out: &mut [u64]) -> usize {
        let mut state = self.lock();
        let count = out.len().min(state.tokens.len());
        for (slot, token) in out.iter_mut().zip(state.tokens.drain(..count)) {
            *slot = token;
        }
        if state.tokens.is_empty() && state.signalled {
            state.signalled = false;
            let mut count = [0u8; 8];
            // SAFETY: reads 8 bytes into a live buffer from our own non-blocking eventfd.
            unsafe {
                libc::read(
                    self.ready.as_raw_fd(),
                    count.as_mut_ptr().cast(),
                    count.len(),
                )
            };
        }
        count
    }
}

/// Creates a completion queue and stores it in `*out`.
///
/// Returns `X0X_OK`, `X0X_IO` (no descriptor could be created) or `X0X_INVALID_ARGUMENT` (NULL).
#[no_mangle]
pub unsafe extern "C" fn x0x_completion_queue_new(out: *mut *mut X0xCompletionQueue) -> X0xStatus {
    ffi_status(|| {
        let out = arg_out(out, "out")?;
        let queue = X0xCompletionQueue {
            shared: Arc::new(QueueShared::new()?),
        };
        *out = Box::into_raw(Box::new(queue));
        Ok(())
    })
}

/// Writes the queue's file descriptor to `*fd_out`: readable while completions wait to be
/// taken. Watch it for reading (`epoll`, `poll`, `loop.add_reader`); never read, write or close
/// it yourself: `x0x_completion_queue_take` resets it and the queue closes it.
///
/// Returns `X0X_OK` or `X0X_INVALID_ARGUMENT` (NULL).
#[no_mangle]
pub unsafe extern "C" fn x0x_completion_queue_fd(
    queue: *const X0xCompletionQueue,
    fd_out: *mut i32,
) -> X0xStatus {
    ffi_status(|| {
        let queue = arg_ref(queue, "queue")?;
        *arg_out(fd_out, "fd_out")? = queue.shared.ready.as_raw_fd();
        Ok(())
    })
}

/// Takes up to `max` tokens of settled operations, oldest first, into `tokens` and writes how
/// many to `*count_out` (0 when none wait). The descriptor stops being readable once the queue
/// is empty. Collect each operation's outcome with `x0x_op_wait(op, 0, …)`.
///
/// Returns `X0X_OK` or `X0X_INVALID_ARGUMENT` (NULL `queue`/`count_out`, or NULL `tokens` with
/// `max` > 0).
#[no_mangle]
pub unsafe extern "C" fn x0x_completion_queue_take(
    queue: *const X0xCompletionQueue,
    tokens: *mut u64,
    max: usize,
    count_out: *mut usize,
) -> X0xStatus {
    ffi_status(|| {
        let queue = arg_ref(queue, "queue")?;
        let count_out = arg_out(count_out, "count_out")?;
        let out: &mut [u64] = if max == 0 {
            &mut []
        } else if tokens.is_null() {
            return Err(Error::invalid_argument("tokens must not be NULL"));
        } else {
            // SAFETY: the caller passes a writable array of `max` tokens.
            std::slice::from_raw_parts_mut(tokens, max)
        };
        *count_out = queue.shared.take(out);
        Ok(())
    })
}

/// Releases the caller's handle. Operations attached to the queue keep it (and its descriptor)
/// alive until they settle; their tokens are then dropped unread. NULL is a no-op.
#[no_mangle]
pub unsafe extern "C" fn x0x_completion_queue_free(queue: *mut X0xCompletionQueue) {
    ffi_value((), || {
        if !queue.is_null() {
            drop(Box::from_raw(queue));
        }
    })
}

/// The queue's shared part, for `x0x_op_then_queue`.
pub(crate) fn shared(queue: &X0xCompletionQueue) -> Arc<QueueShared> {
    Arc::clone(&queue.shared)
}
