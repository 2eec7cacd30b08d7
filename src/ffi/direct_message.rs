//! `X0xDirectMessage`: a message or request another agent sent to this one, and
//! `X0xDirectMessageBatch`, what `x0x_inbox_next` hands out.
//!
//! Unlike a subscription's `X0xMessage` views, a direct message is a handle of its own: a
//! request is answered through it, possibly long after its batch is gone and from any thread,
//! and freeing it unanswered refuses the request.

use std::ffi::{c_char, c_void};

use bytes::Bytes;

use super::boundary::{arg_bytes, arg_out, arg_ref, arg_str, ffi_status, ffi_value};
use super::identity::{write_id, X0xId};
use super::op::OpOutput;
use super::status::X0xStatus;
use crate::direct::DirectMessage;

/// A direct message or request. Opaque; taken from an `X0xDirectMessageBatch` with
/// `x0x_direct_message_batch_take`, released with `x0x_direct_message_free`. Thread-safe: it
/// may be read and answered from any thread.
pub struct X0xDirectMessage {
    inner: DirectMessage,
}

/// Direct messages from an inbox, oldest first. Opaque; `x0x_direct_message_batch_len` counts
/// them, `x0x_direct_message_batch_take` hands each out as a handle of its own, and
/// `x0x_direct_message_batch_free` frees the batch with the messages not taken (requests among
/// them are refused).
pub struct X0xDirectMessageBatch {
    messages: Vec<Option<DirectMessage>>,
}

impl X0xDirectMessageBatch {
    pub(crate) fn new(messages: Vec<DirectMessage>) -> Self {
        Self {
            messages: messages.into_iter().map(Some).collect(),
        }
    }
}

impl OpOutput for X0xDirectMessageBatch {
    fn into_raw(self: Box<Self>) -> *mut c_void {
        Box::into_raw(self).cast()
    }
}

/// The number of messages in `batch`, taken ones included (0 for NULL).
#[no_mangle]
pub unsafe extern "C" fn x0x_direct_message_batch_len(
    batch: *const X0xDirectMessageBatch,
) -> usize {
    ffi_value(0, || batch.as_ref().map_or(0, |b| b.messages.len()))
}

/// Takes the message at `index` out of `batch`: the caller owns it and frees it with
/// `x0x_direct_message_free`. NULL if `batch` is NULL, `index` is out of range, or the message
/// was taken already.
#[no_mangle]
pub unsafe extern "C" fn x0x_direct_message_batch_take(
    batch: *mut X0xDirectMessageBatch,
    index: usize,
) -> *mut X0xDirectMessage {
    ffi_value(std::ptr::null_mut(), || {
        batch
            .as_mut()
            .and_then(|b| b.messages.get_mut(index))
            .and_then(Option::take)
            .map_or(std::ptr::null_mut(), |inner| {
                Box::into_raw(Box::new(X0xDirectMessage { inner }))
            })
    })
}

/// Frees a batch and the messages not taken from it (each request among them is refused: its
/// requester gets `X0X_REMOTE`). NULL is a no-op.
#[no_mangle]
pub unsafe extern "C" fn x0x_direct_message_batch_free(batch: *mut X0xDirectMessageBatch) {
    ffi_value((), || {
        if !batch.is_null() {
            drop(Box::from_raw(batch));
        }
    })
}

/// Writes where the payload is to `*data_out` (NULL when it is empty) and its length to
/// `*len_out`. The bytes are borrowed from `message`: valid until `x0x_direct_message_free`.
/// Returns `X0X_OK` or `X0X_INVALID_ARGUMENT` (NULL).
#[no_mangle]
pub unsafe extern "C" fn x0x_direct_message_payload(
    message: *const X0xDirectMessage,
    data_out: *mut *const u8,
    len_out: *mut usize,
) -> X0xStatus {
    ffi_status(|| {
        let payload = arg_ref(message, "message")?.inner.payload();
        let data_out = arg_out(data_out, "data_out")?;
        let len_out = arg_out(len_out, "len_out")?;
        *data_out = if payload.is_empty() {
            std::ptr::null()
        } else {
            payload.as_ptr()
        };
        *len_out = payload.len();
        Ok(())
    })
}

/// Writes the sender's agent id to `*out` (proven by the direct connection's handshake).
/// Returns `X0X_OK` or `X0X_INVALID_ARGUMENT` (NULL).
#[no_mangle]
pub unsafe extern "C" fn x0x_direct_message_sender(
    message: *const X0xDirectMessage,
    out: *mut X0xId,
) -> X0xStatus {
    ffi_status(|| write_id(out, arg_ref(message, "message")?.inner.sender().0))
}

/// Writes one of `message`'s numbers to `*out`; INVALID_ARGUMENT for NULL.
///
/// # Safety
/// As the extern fns that call it: `message` NULL or live, `out` NULL or writable.
unsafe fn write_u64(
    message: *const X0xDirectMessage,
    out: *mut u64,
    field: fn(&DirectMessage) -> u64,
) -> X0xStatus {
    ffi_status(|| {
        let message = arg_ref(message, "message")?;
        *arg_out(out, "out")? = field(&message.inner);
        Ok(())
    })
}

/// Writes when the sender sent it to `*out`: milliseconds since the Unix epoch, by the
/// sender's clock. Returns `X0X_OK` or `X0X_INVALID_ARGUMENT` (NULL).
#[no_mangle]
pub unsafe extern "C" fn x0x_direct_message_timestamp_ms(
    message: *const X0xDirectMessage,
    out: *mut u64,
) -> X0xStatus {
    write_u64(message, out, DirectMessage::timestamp_ms)
}

/// Writes the request's id to `*out` (unique per sender), or 0 for a plain message, which
/// expects no reply. Returns `X0X_OK` or `X0X_INVALID_ARGUMENT` (NULL).
#[no_mangle]
pub unsafe extern "C" fn x0x_direct_message_request_id(
    message: *const X0xDirectMessage,
    out: *mut u64,
) -> X0xStatus {
    write_u64(message, out, DirectMessage::request_id)
}

/// Answers the request with `payload[0..len]` (copied; at most `X0X_MAX_PAYLOAD_LEN` bytes):
/// its requester's `x0x_agent_request` completes with these bytes. Synchronous and never
/// blocks: the reply is handed to the connection, which sends it.
///
/// Returns `X0X_OK`; `X0X_CANCELLED` when the requester stopped waiting (it cancelled, timed
/// out or left: nobody reads the reply); `X0X_INVALID_ARGUMENT` for NULL, a payload over the
/// limit, a plain message (request id 0) or a request answered already.
#[no_mangle]
pub unsafe extern "C" fn x0x_direct_message_reply(
    message: *const X0xDirectMessage,
    payload: *const u8,
    len: usize,
) -> X0xStatus {
    ffi_status(|| {
        let message = arg_ref(message, "message")?;
        let payload = arg_bytes(payload, len, "payload")?;
        message.inner.reply(Bytes::copy_from_slice(payload))
    })
}

/// Answers the request with a failure: its requester's `x0x_agent_request` completes with
/// `X0X_REMOTE` and `reason` (NUL-terminated UTF-8, copied, cut to 1,024 bytes) as its message.
/// Synchronous and never blocks.
///
/// Returns `X0X_OK`, `X0X_CANCELLED` (the requester stopped waiting) or `X0X_INVALID_ARGUMENT`
/// (NULL, bad UTF-8, a plain message, a request answered already).
#[no_mangle]
pub unsafe extern "C" fn x0x_direct_message_reply_error(
    message: *const X0xDirectMessage,
    reason: *const c_char,
) -> X0xStatus {
    ffi_status(|| {
        let message = arg_ref(message, "message")?;
        let reason = arg_str(reason, "reason")?;
        message.inner.reply_error(reason)
    })
}

/// Frees a message taken from a batch. A request freed unanswered is refused: its requester
/// gets `X0X_REMOTE` ("dropped the request without replying"). NULL is a no-op.
#[no_mangle]
pub unsafe extern "C" fn x0x_direct_message_free(message: *mut X0xDirectMessage) {
    ffi_value((), || {
        if !message.is_null() {
            drop(Box::from_raw(message));
        }
    })
}
