//! `X0xBytes`: a byte buffer allocated by the library and freed only by `x0x_bytes_free`.

/// A byte buffer owned by the library. Free it with `x0x_bytes_free`, never with `free()`.
#[repr(C)]
#[derive(Debug)]
pub struct X0xBytes {
    /// The bytes; NULL exactly when the buffer is empty or freed.
    pub data: *mut u8,
    /// The number of bytes at `data`.
    pub len: usize,
}

impl X0xBytes {
    pub(crate) fn from_vec(bytes: Vec<u8>) -> Self {
        if bytes.is_empty() {
            return Self {
                data: std::ptr::null_mut(),
                len: 0,
            };
        }
        let boxed = bytes.into_boxed_slice();
        let len = boxed.len();
        Self {
            data: Box::into_raw(boxed).cast(),
            len,
        }
    }
}

/// Frees the buffer in `*bytes` and resets it to `{NULL, 0}`, so a second call is harmless.
///
/// `bytes` may be NULL (no-op). The buffer must have been filled by an x0x function.
#[no_mangle]
pub unsafe extern "C" fn x0x_bytes_free(bytes: *mut X0xBytes) {
    super::boundary::ffi_value((), || {
        let Some(bytes) = bytes.as_mut() else { return };
        if !bytes.data.is_null() {
            drop(Box::from_raw(std::ptr::slice_from_raw_parts_mut(
                bytes.data, bytes.len,
            )));
        }
        bytes.data = std::ptr::null_mut();
        bytes.len = 0;
    })
}

/// An async operation's byte result: handed to C as a heap `X0xBytes *` (see
/// `x0x_bytes_destroy`), or freed here if nobody takes it.
pub(crate) struct BytesResult(pub(crate) Vec<u8>);

impl super::op::OpOutput for BytesResult {
    fn into_raw(self: Box<Self>) -> *mut std::ffi::c_void {
        Box::into_raw(Box::new(X0xBytes::from_vec(self.0))).cast()
    }
}

/// Frees an `X0xBytes` that the library allocated itself, struct and buffer: the result of an
/// async operation that produces bytes (`x0x_agent_request`). NULL is a no-op.
///
/// (An `X0xBytes` of yours that a synchronous call filled is emptied with `x0x_bytes_free`
/// instead; never pass one of those here.)
#[no_mangle]
pub unsafe extern "C" fn x0x_bytes_destroy(bytes: *mut X0xBytes) {
    super::boundary::ffi_value((), || {
        if !bytes.is_null() {
            x0x_bytes_free(bytes);
            drop(Box::from_raw(bytes));
        }
    })
}
