//! The ABI boundary: panic catching, the thread-local last error, and argument checks.
//!
//! Every `extern "C"` function's body is one call to `ffi_status` or `ffi_value`, so no panic
//! ever unwinds into C and every failure leaves a message behind.

use std::any::Any;
use std::cell::RefCell;
use std::ffi::{c_char, CStr, CString};
use std::panic::{catch_unwind, AssertUnwindSafe};

use super::status::{status_of, X0xStatus, X0X_OK, X0X_PANIC};
use crate::error::{Error, Result};

thread_local! {
    static LAST_ERROR: RefCell<CString> = RefCell::new(CString::default());
}

/// Records `message` as this thread's last error.
pub(crate) fn set_last_error(message: &str) {
    LAST_ERROR.with(|slot| *slot.borrow_mut() = to_c_string(message));
}

/// A C string of `text`; interior NULs (which C cannot carry) become U+FFFD.
pub(crate) fn to_c_string(text: &str) -> CString {
    CString::new(text.replace('\0', "\u{fffd}")).expect("NULs were replaced")
}

/// The message of the last failed synchronous x0x call on this thread ("" if none has failed).
///
/// The string is owned by the library and stays valid until the next failing x0x call on the same
/// thread. Never free it. Successful calls leave it unchanged, like `errno`.
#[no_mangle]
pub extern "C" fn x0x_last_error_message() -> *const c_char {
    LAST_ERROR.with(|slot| slot.borrow().as_ptr())
}

fn panic_message(payload: &(dyn Any + Send)) -> String {
    let detail = payload
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "no message".to_owned());
    format!("internal error in x0x (a bug, please report it): {detail}")
}

/// Runs `body` for a status-returning extern fn: `Ok` → `X0X_OK`; an error or a panic → its
/// status, with its message as the thread's last error.
pub(crate) fn ffi_status(body: impl FnOnce() -> Result<()>) -> X0xStatus {
    match catch_unwind(AssertUnwindSafe(body)) {
        Ok(Ok(())) => X0X_OK,
        Ok(Err(error)) => {
            set_last_error(error.message());
            status_of(error.kind())
        }
        Err(payload) => {
            set_last_error(&panic_message(payload.as_ref()));
            X0X_PANIC
        }
    }
}

/// Runs `body` for an extern fn that returns a value; a panic returns `on_panic` and records it.
pub(crate) fn ffi_value<T>(on_panic: T, body: impl FnOnce() -> T) -> T {
    catch_unwind(AssertUnwindSafe(body)).unwrap_or_else(|payload| {
        set_last_error(&panic_message(payload.as_ref()));
        on_panic
    })
}

fn null_argument(name: &str) -> Error {
    Error::invalid_argument(format!("{name} must not be NULL"))
}

/// Borrows `*ptr`, or fails with INVALID_ARGUMENT when it is NULL.
///
/// # Safety
/// A non-NULL `ptr` must point to a live `T` for `'a`.
pub(crate) unsafe fn arg_ref<'a, T>(ptr: *const T, name: &str) -> Result<&'a T> {
    ptr.as_ref().ok_or_else(|| null_argument(name))
}

/// Mutably borrows `*ptr` (an out-parameter), or fails with INVALID_ARGUMENT when it is NULL.
///
/// # Safety
/// A non-NULL `ptr` must point to writable memory for a `T`, valid for `'a`.
pub(crate) unsafe fn arg_out<'a, T>(ptr: *mut T, name: &str) -> Result<&'a mut T> {
    ptr.as_mut().ok_or_else(|| null_argument(name))
}

/// Borrows a NUL-terminated UTF-8 string.
///
/// # Safety
/// A non-NULL `ptr` must point to a NUL-terminated string that stays valid for `'a`.
pub(crate) unsafe fn arg_str<'a>(ptr: *const c_char, name: &str) -> Result<&'a str> {
    if ptr.is_null() {
        return Err(null_argument(name));
    }
    CStr::from_ptr(ptr).to_str().map_err(|e| {
        Error::invalid_argument(format!(
            "{name} is not valid UTF-8 (invalid byte at offset {})",
            e.valid_up_to()
        ))
    })
}

/// Borrows a NUL-terminated UTF-8 file system path, which must not be empty.
///
/// # Safety
/// As [`arg_str`].
pub(crate) unsafe fn arg_path<'a>(ptr: *const c_char, name: &str) -> Result<&'a str> {
    let path = arg_str(ptr, name)?;
    if path.is_empty() {
        return Err(Error::invalid_argument(format!("{name} must not be empty")));
    }
    Ok(path)
}

/// Borrows `len` bytes at `ptr`; `(NULL, 0)` is the empty slice, `(NULL, n > 0)` an error.
///
/// # Safety
/// A non-NULL `ptr` must point to `len` readable bytes that stay valid for `'a`.
pub(crate) unsafe fn arg_bytes<'a>(ptr: *const u8, len: usize, name: &str) -> Result<&'a [u8]> {
    match (ptr.is_null(), len) {
        (true, 0) => Ok(&[]),
        (true, _) => Err(null_argument(name)),
        (false, _) if len > isize::MAX as usize => Err(Error::invalid_argument(format!(
            "{name}: length {len} is impossibly large"
        ))),
        (false, _) => Ok(std::slice::from_raw_parts(ptr, len)),
    }
}

/// A batch handed to C: plain `Item` views (borrowed by index until the batch is freed) and
/// whatever they point into. Each `x0x_*_batch_{len,get,free}` triple is these three functions.
pub(crate) trait Batch {
    type Item;
    fn items(&self) -> &[Self::Item];
}

/// `x0x_*_batch_len`: the number of items (0 for NULL).
pub(crate) unsafe fn batch_len<B: Batch>(batch: *const B) -> usize {
    ffi_value(0, || batch.as_ref().map_or(0, |b| b.items().len()))
}

/// `x0x_*_batch_get`: the item at `index`, borrowed from `batch`; NULL if `batch` is NULL or
/// `index` is out of range.
pub(crate) unsafe fn batch_get<B: Batch>(batch: *const B, index: usize) -> *const B::Item {
    ffi_value(std::ptr::null(), || {
        batch
            .as_ref()
            .and_then(|b| b.items().get(index))
            .map_or(std::ptr::null(), |item| item as *const B::Item)
    })
}

/// `x0x_*_batch_free`: frees the batch and everything its items point into; NULL is a no-op.
pub(crate) unsafe fn batch_free<B: Batch>(batch: *mut B) {
    ffi_value((), || {
        if !batch.is_null() {
            drop(Box::from_raw(batch));
        }
    })
}
