//! Async operations: `X0xOp`, the completion callback, and the callback thread.
//!
//! An async extern fn starts its future and hands the caller an `X0xOp`. The future's outcome
//! goes into a `Completion`, a value that is consumed when it fires and that fires
//! `X0X_CLOSED` (or `X0X_PANIC`) from `Drop` if the future never finished: so the callback runs
//! exactly once by construction, not by bookkeeping.
//!
//! The future is polled once on the caller's thread before it is spawned: an operation that can
//! finish at once (a queued message, a cheap lookup) settles before the start function returns,
//! and a caller that started it without a callback collects the result with
//! `x0x_op_wait(op, 0, …)` — no thread hop at all. Otherwise the caller attaches a callback
//! (`x0x_op_then`) or passes one at the start.
//!
//! An event loop can instead attach a completion queue (`x0x_op_then_queue`, see `queue.rs`):
//! the settling worker then only makes a file descriptor readable.
//!
//! Callbacks never run on a tokio worker: completions are queued to one dedicated thread,
//! `x0x-callbacks`. A callback that blocks (or waits for Python's GIL) delays other callbacks
//! but never the network, and no library lock is held while it runs.

use std::cell::Cell;
use std::ffi::{c_char, c_void, CString};
use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc::{self, Sender};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use once_cell::sync::Lazy;
use tokio::sync::Notify;

use super::boundary::{arg_out, arg_ref, ffi_status, ffi_value, to_c_string};
use super::queue::{self, QueueShared, X0xCompletionQueue};
use super::status::{status_of, X0xStatus, X0X_CLOSED, X0X_OK, X0X_PANIC};
use crate::error::{Error, ErrorKind, Result};
use crate::runtime;

/// Completion callback of an async operation.
///
/// Called exactly once per operation, on the library's callback thread, with no library lock
/// held. `status` is `X0X_OK`, an error, `X0X_CANCELLED` or `X0X_CLOSED`. On `X0X_OK`, `result`
/// is the operation's result (its type is given by the starting function; NULL for none) and the
/// callee owns it, and `message` is NULL. On failure `result` is NULL and `message` says why;
/// `message` is borrowed and valid only during the call. The callback may call any x0x function, but must not
/// `x0x_op_wait` for an operation that has a callback (that would wait for itself).
pub type X0xCallback = Option<
    unsafe extern "C" fn(
        user_data: *mut c_void,
        status: X0xStatus,
        result: *mut c_void,
        message: *const c_char,
    ),
>;

type CallbackFn = unsafe extern "C" fn(*mut c_void, X0xStatus, *mut c_void, *const c_char);

/// `timeout_ms` for `x0x_op_wait` that means "no limit" (`UINT32_MAX`).
pub const X0X_WAIT_FOREVER: u32 = 0xFFFF_FFFF;

/// A pending or finished async operation. Opaque; release it with `x0x_op_free`.
pub struct X0xOp {
    shared: Arc<OpShared>,
}

/// What an operation's result turns into when it crosses to C.
pub(crate) trait OpOutput: Send + 'static {
    /// Gives up ownership: the C caller now frees the result with the matching `*_free`.
    fn into_raw(self: Box<Self>) -> *mut c_void;
}

impl OpOutput for () {
    fn into_raw(self: Box<Self>) -> *mut c_void {
        std::ptr::null_mut()
    }
}

struct Settled {
    status: X0xStatus,
    message: CString,
    /// Held until a callback or `x0x_op_wait` takes it; freed with the op otherwise.
    output: Option<Box<dyn OpOutput>>,
}

/// Who learns of the outcome: a callback, or a completion queue.
enum Waiter {
    Callback(CallbackFn, UserData),
    Queue(Arc<QueueShared>, u64),
}

#[derive(Default)]
struct OpState {
    /// Who is waiting for the outcome (set at start, by `x0x_op_then` or `x0x_op_then_queue`).
    waiter: Option<Waiter>,
    /// Whether a callback was ever attached (then `x0x_op_wait` on the callback thread would
    /// wait for itself).
    had_callback: bool,
    /// Whether a callback or queue was ever attached: only one may be.
    had_waiter: bool,
    /// The outcome, once settled (for a callback op: once its callback returned).
    settled: Option<Settled>,
}

struct OpShared {
    cancel_requested: AtomicBool,
    cancel: Notify,
    state: Mutex<OpState>,
    settled_changed: Condvar,
}

impl OpShared {
    fn lock(&self) -> MutexGuard<'_, OpState> {
        // A poisoned lock only means a panic elsewhere; the state itself is always consistent.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn settle(&self, settled: Settled) {
        self.lock().settled = Some(settled);
        self.settled_changed.notify_all();
    }

    fn request_cancel(&self) {
        if !self.cancel_requested.swap(true, Ordering::AcqRel) {
            // notify_one stores a permit, so a task that starts waiting later still sees it.
            self.cancel.notify_one();
        }
    }
}

/// A raw `user_data` pointer, carried across threads for the C caller, who vouches for it
/// (completion callbacks here, the log callback in `ffi::log`).
pub(crate) struct UserData(pub(crate) *mut c_void);
// SAFETY: x0x never dereferences user_data; it only hands it back to the caller's callback.
unsafe impl Send for UserData {}
// SAFETY: as above; x0x only copies the pointer, whichever thread holds a reference.
unsafe impl Sync for UserData {}

impl UserData {
    // A method, so closures capture the Send wrapper rather than its !Send field.
    pub(crate) fn get(&self) -> *mut c_void {
        self.0
    }
}

/// Fires an operation's outcome exactly once: by [`Completion::finish`], or by `Drop` if the
/// future was dropped without finishing (runtime shut down, or a panic in the future).
struct Completion {
    shared: Arc<OpShared>,
    fired: bool,
}

impl Completion {
    fn finish(mut self, outcome: Result<Box<dyn OpOutput>>) {
        match outcome {
            Ok(output) => self.fire(X0X_OK, "", Some(output)),
            Err(error) => self.fire(status_of(error.kind()), error.message(), None),
        }
    }

    fn fire(&mut self, status: X0xStatus, message: &str, output: Option<Box<dyn OpOutput>>) {
        self.fired = true;
        let settled = Settled {
            status,
            message: to_c_string(message),
            output,
        };
        let mut state = self.shared.lock();
        match state.waiter.take() {
            Some(Waiter::Callback(callback, user_data)) => {
                drop(state); // never hold the op's lock across the hand-off
                dispatch(Job {
                    callback,
                    user_data,
                    shared: Arc::clone(&self.shared),
                    settled,
                });
            }
            waiter => {
                state.settled = Some(settled);
                drop(state);
                self.shared.settled_changed.notify_all();
                if let Some(Waiter::Queue(queue, token)) = waiter {
                    queue.push(token); // after settling: the taker's x0x_op_wait finds it
                }
            }
        }
    }
}

impl Drop for Completion {
    fn drop(&mut self) {
        if self.fired {
            return;
        }
        if std::thread::panicking() {
            let message =
                "internal error in x0x (a bug, please report it): an async operation panicked";
            self.fire(X0X_PANIC, message, None);
        } else {
            let message = "the operation was abandoned because the x0x runtime shut down";
            self.fire(X0X_CLOSED, message, None);
        }
    }
}

struct Job {
    callback: CallbackFn,
    user_data: UserData,
    shared: Arc<OpShared>,
    settled: Settled,
}

static CLOSING: AtomicBool = AtomicBool::new(false);
static IN_CALLBACK: AtomicUsize = AtomicUsize::new(0);

thread_local! {
    static ON_CALLBACK_THREAD: Cell<bool> = const { Cell::new(false) };
}

static CALLBACK_QUEUE: Lazy<Mutex<Sender<Job>>> = Lazy::new(|| {
    let (tx, rx) = mpsc::channel::<Job>();
    std::thread::Builder::new()
        .name("x0x-callbacks".into())
        .spawn(move || {
            ON_CALLBACK_THREAD.with(|flag| flag.set(true));
            for job in rx {
                run_job(job);
            }
        })
        .expect("x0x: cannot start the callback thread");
    Mutex::new(tx)
});

fn dispatch(job: Job) {
    let queue = CALLBACK_QUEUE.lock().unwrap_or_else(|e| e.into_inner());
    // The receiver lives as long as the process; a failed send drops the job, which frees it.
    let _ = queue.send(job);
}

fn run_job(job: Job) {
    let Job {
        callback,
        user_data,
        shared,
        mut settled,
    } = job;
    unless_shut_down(|| {
        let result = settled
            .output
            .take()
            .map_or(std::ptr::null_mut(), OpOutput::into_raw);
        let message = if settled.status == X0X_OK {
            std::ptr::null()
        } else {
            settled.message.as_ptr()
        };
        // SAFETY: the caller supplied this callback and user_data for exactly this call.
        unsafe { callback(user_data.get(), settled.status, result, message) };
    });
    shared.settle(settled);
}

/// Runs `callback` (a call into the C caller) unless `x0x_shutdown` was called; a shutdown
/// waits for callbacks running here. Every callback into the caller goes through this.
pub(crate) fn unless_shut_down(callback: impl FnOnce()) {
    // Count ourselves in before reading CLOSING, so x0x_shutdown either sees us or we see it.
    IN_CALLBACK.fetch_add(1, Ordering::SeqCst);
    if !CLOSING.load(Ordering::SeqCst) {
        let was = ON_CALLBACK_THREAD.with(|flag| flag.replace(true));
        callback();
        ON_CALLBACK_THREAD.with(|flag| flag.set(was));
    }
    IN_CALLBACK.fetch_sub(1, Ordering::SeqCst);
}

/// Starts `future` as an operation, with `callback` (may be `None`) attached, and stores its
/// handle in `*op_out` (if `op_out` is not NULL). The future is polled once right here, so a
/// callback-less operation may already be settled when this returns.
///
/// # Safety
/// `op_out` must be NULL or valid for a write.
pub(crate) unsafe fn spawn_op<T, F>(
    callback: X0xCallback,
    user_data: *mut c_void,
    op_out: *mut *mut X0xOp,
    future: F,
) where
    T: OpOutput,
    F: Future<Output = Result<T>> + Send + 'static,
{
    let shared = Arc::new(OpShared {
        cancel_requested: AtomicBool::new(false),
        cancel: Notify::new(),
        state: Mutex::new(OpState {
            waiter: callback.map(|cb| Waiter::Callback(cb, UserData(user_data))),
            had_callback: callback.is_some(),
            had_waiter: callback.is_some(),
            settled: None,
        }),
        settled_changed: Condvar::new(),
    });
    if let Some(out) = op_out.as_mut() {
        *out = Box::into_raw(Box::new(X0xOp {
            shared: Arc::clone(&shared),
        }));
    }
    let completion = Completion {
        shared: Arc::clone(&shared),
        fired: false,
    };
    let mut task = Box::pin(async move {
        let outcome = tokio::select! {
            biased;
            () = shared.cancel.notified() => {
                Err(Error::new(ErrorKind::Cancelled, "the operation was cancelled"))
            }
            result = future => result.map(|value| Box::new(value) as Box<dyn OpOutput>),
        };
        completion.finish(outcome);
    });
    let runtime = runtime::handle();
    let _context = runtime.enter();
    // Polling with a no-op waker is sound: a pending future re-registers the real waker when
    // the runtime polls it again after the spawn.
    if task.as_mut().poll(&mut Context::from_waker(Waker::noop())) == Poll::Pending {
        runtime.spawn(task);
    }
}

/// Asks the operation to stop. Idempotent, and safe to race with completion: if the operation has
/// not completed yet, it settles with `X0X_CANCELLED`; if it has, nothing changes.
///
/// Returns `X0X_OK`, or `X0X_INVALID_ARGUMENT` if `op` is NULL.
#[no_mangle]
pub unsafe extern "C" fn x0x_op_cancel(op: *const X0xOp) -> X0xStatus {
    ffi_status(|| {
        arg_ref(op, "op")?.shared.request_cancel();
        Ok(())
    })
}

/// Attaches `callback` to an operation started without one. It runs exactly once, on the
/// callback thread, as if it had been passed at the start: right away (queued) if the operation
/// has already settled, with its result unless `x0x_op_wait` took it (then `result` is NULL).
///
/// Returns `X0X_OK`, or `X0X_INVALID_ARGUMENT` if `op` or `callback` is NULL or the operation
/// already has a callback or queue (then `callback` never runs).
#[no_mangle]
pub unsafe extern "C" fn x0x_op_then(
    op: *const X0xOp,
    callback: X0xCallback,
    user_data: *mut c_void,
) -> X0xStatus {
    ffi_status(|| {
        let shared = &arg_ref(op, "op")?.shared;
        let callback =
            callback.ok_or_else(|| Error::invalid_argument("callback must not be NULL"))?;
        let mut state = shared.lock();
        check_no_waiter(&state)?;
        state.had_callback = true;
        state.had_waiter = true;
        match state.settled.take() {
            None => state.waiter = Some(Waiter::Callback(callback, UserData(user_data))),
            Some(settled) => {
                drop(state);
                dispatch(Job {
                    callback,
                    user_data: UserData(user_data),
                    shared: Arc::clone(shared),
                    settled,
                });
            }
        }
        Ok(())
    })
}

/// Attaches a completion queue to an operation started without a callback: when the operation
/// settles (at once if it already has), `token` is queued and the queue's descriptor becomes
/// readable. Nothing calls back; collect the outcome with `x0x_op_wait(op, 0, …)` after taking
/// the token (`x0x_completion_queue_take`). The operation keeps the queue alive until then.
///
/// Returns `X0X_OK`, or `X0X_INVALID_ARGUMENT` if `op` or `queue` is NULL or the operation
/// already has a callback or queue (then nothing is queued).
#[no_mangle]
pub unsafe extern "C" fn x0x_op_then_queue(
    op: *const X0xOp,
    queue: *const X0xCompletionQueue,
    token: u64,
) -> X0xStatus {
    ffi_status(|| {
        let shared = &arg_ref(op, "op")?.shared;
        let queue = queue::shared(arg_ref(queue, "queue")?);
        let mut state = shared.lock();
        check_no_waiter(&state)?;
        state.had_waiter = true;
        if state.settled.is_none() {
            state.waiter = Some(Waiter::Queue(queue, token));
        } else {
            drop(state);
            queue.push(token);
        }
        Ok(())
    })
}

fn check_no_waiter(state: &OpState) -> Result<()> {
    if state.had_waiter {
        return Err(Error::invalid_argument(
            "the operation already has a callback or queue; it can have only one",
        ));
    }
    Ok(())
}

/// Blocks until the operation has settled (its callback, if any, has returned) or `timeout_ms`
/// passed (`X0X_WAIT_FOREVER`: no limit; 0: just poll).
///
/// Returns `X0X_OK` once settled, with the operation's own status in `*op_status_out` and, for an
/// operation without a callback, its result in `*result_out` (ownership passes to the caller;
/// later calls give NULL). Returns `X0X_TIMEOUT` if not settled in time, and
/// `X0X_INVALID_ARGUMENT` for NULL `op`/`op_status_out` or when called on the callback thread for
/// a pending operation that has a callback (it would wait for itself). `result_out` may be NULL.
#[no_mangle]
pub unsafe extern "C" fn x0x_op_wait(
    op: *const X0xOp,
    timeout_ms: u32,
    op_status_out: *mut X0xStatus,
    result_out: *mut *mut c_void,
) -> X0xStatus {
    ffi_status(|| {
        let shared = &arg_ref(op, "op")?.shared;
        let op_status_out = arg_out(op_status_out, "op_status_out")?;
        let mut state = shared.lock();
        if state.settled.is_none()
            && state.had_callback
            && timeout_ms > 0
            && ON_CALLBACK_THREAD.with(|flag| flag.get())
        {
            return Err(Error::invalid_argument(
                "x0x_op_wait was called on the callback thread for an operation with a callback: it would wait for itself",
            ));
        }
        let deadline = (timeout_ms != X0X_WAIT_FOREVER)
            .then(|| Instant::now() + Duration::from_millis(timeout_ms.into()));
        while state.settled.is_none() {
            let left = match deadline {
                None => Duration::MAX,
                Some(deadline) => deadline.saturating_duration_since(Instant::now()),
            };
            if left.is_zero() {
                return Err(Error::new(
                    ErrorKind::Timeout,
                    format!("the operation has not finished after {timeout_ms} ms"),
                ));
            }
            state = if deadline.is_none() {
                let waited = shared.settled_changed.wait(state);
                waited.unwrap_or_else(|e| e.into_inner())
            } else {
                let waited = shared.settled_changed.wait_timeout(state, left);
                waited.unwrap_or_else(|e| e.into_inner()).0
            };
        }
        let settled = state
            .settled
            .as_mut()
            .expect("the loop exits only when settled");
        *op_status_out = settled.status;
        if let Some(result_out) = result_out.as_mut() {
            *result_out = settled
                .output
                .take()
                .map_or(std::ptr::null_mut(), OpOutput::into_raw);
        }
        Ok(())
    })
}

/// The failure message of a settled operation ("" while pending or after success).
///
/// The string is owned by the operation and valid until `x0x_op_free`. Returns NULL if `op` is
/// NULL.
#[no_mangle]
pub unsafe extern "C" fn x0x_op_error_message(op: *const X0xOp) -> *const c_char {
    ffi_value(std::ptr::null(), || {
        let Some(op) = op.as_ref() else {
            return std::ptr::null();
        };
        match op.shared.lock().settled.as_ref() {
            // The CString lives in the op's shared state, which this handle keeps alive.
            Some(settled) => settled.message.as_ptr(),
            None => c"".as_ptr(),
        }
    })
}

/// Releases the caller's handle. It does not cancel: the operation runs on and its callback still
/// fires exactly once. An unclaimed result of a callback-less operation is freed. NULL is a no-op.
#[no_mangle]
pub unsafe extern "C" fn x0x_op_free(op: *mut X0xOp) {
    ffi_value((), || {
        if !op.is_null() {
            drop(Box::from_raw(op));
        }
    })
}

/// Stops delivering callbacks, for good, waiting up to `timeout_ms` for callbacks that are
/// running.
///
/// Call it once at process exit (the Python package does so from `atexit`): a callback into an
/// interpreter that is shutting down can crash it. After this call, completions are dropped and
/// their results freed, and no callback runs (operations still settle for `x0x_op_wait`), so
/// call it last. Returns `X0X_OK`, or `X0X_TIMEOUT` if a callback
/// was still running when the time was up.
#[no_mangle]
pub extern "C" fn x0x_shutdown(timeout_ms: u32) -> X0xStatus {
    ffi_status(|| {
        CLOSING.store(true, Ordering::SeqCst);
        // From inside a callback, that callback is one of the running ones: don't wait for it.
        let own = usize::from(ON_CALLBACK_THREAD.with(|flag| flag.get()));
        let deadline = Instant::now() + Duration::from_millis(timeout_ms.into());
        while IN_CALLBACK.load(Ordering::SeqCst) > own {
            if Instant::now() >= deadline {
                return Err(Error::new(
                    ErrorKind::Timeout,
                    "a callback was still running when x0x_shutdown timed out",
                ));
            }
            std::thread::sleep(Duration::from_millis(1));
        }
        Ok(())
    })
}

/// Completes after `ms` milliseconds with `X0X_OK` and a NULL result (`ms` = 0: at once, so
/// it settles before this returns).
///
/// A diagnostic: it exercises the completion path (for testing callback plumbing, and for
/// measuring the cost of awaiting a native operation). Returns `X0X_OK` once started.
#[no_mangle]
pub unsafe extern "C" fn x0x_sleep(
    ms: u32,
    callback: X0xCallback,
    user_data: *mut c_void,
    op_out: *mut *mut X0xOp,
) -> X0xStatus {
    ffi_status(|| {
        spawn_op(callback, user_data, op_out, async move {
            if ms > 0 {
                tokio::time::sleep(Duration::from_millis(ms.into())).await;
            }
            Ok(())
        });
        Ok(())
    })
}
