//! `X0xMessage` and `X0xMessageBatch`: what a subscription hands out.

use std::collections::HashMap;
use std::ffi::{c_char, c_void, CString};
use std::sync::Arc;

use super::boundary::{batch_free, batch_get, batch_len, Batch};
use super::identity::X0xId;
use super::op::OpOutput;
use crate::pubsub::Message;

/// One received message: a read-only view into its `X0xMessageBatch`, valid until the batch is
/// freed. Copy what you keep.
#[repr(C)]
#[derive(Debug)]
pub struct X0xMessage {
    /// The topic, NUL-terminated UTF-8.
    pub topic: *const c_char,
    /// The payload bytes (NULL when `payload_len` is 0).
    pub payload: *const u8,
    /// The number of payload bytes.
    pub payload_len: usize,
    /// The agent that published and signed it (verified).
    pub sender: X0xId,
    /// When the sender published it, in milliseconds since the Unix epoch (the sender's clock).
    pub timestamp_ms: u64,
    /// Links it crossed from the publisher to this agent: 0 for the agent's own messages, 1
    /// from a direct neighbour, more when relayed through the overlay.
    pub hops: u32,
}

/// A batch of messages, oldest first. Opaque; read it with `x0x_message_batch_len` and
/// `x0x_message_batch_get`, free it with `x0x_message_batch_free`.
pub struct X0xMessageBatch {
    views: Vec<X0xMessage>,
    // The views point into these; they must outlive the views and never move their heap data.
    _messages: Vec<Message>,
    _topics: Vec<CString>,
}

impl Batch for X0xMessageBatch {
    type Item = X0xMessage;
    fn items(&self) -> &[X0xMessage] {
        &self.views
    }
}

// SAFETY: the raw pointers in `views` point into data owned by the same batch, which is only
// read after construction.
unsafe impl Send for X0xMessageBatch {}

impl X0xMessageBatch {
    pub(crate) fn new(messages: Vec<Message>) -> Self {
        let mut topics: HashMap<Arc<str>, CString> = HashMap::new();
        let views = messages
            .iter()
            .map(|m| {
                let topic = topics
                    .entry(Arc::clone(&m.topic))
                    .or_insert_with(|| super::boundary::to_c_string(&m.topic));
                X0xMessage {
                    topic: topic.as_ptr(),
                    payload: if m.payload.is_empty() {
                        std::ptr::null()
                    } else {
                        m.payload.as_ptr()
                    },
                    payload_len: m.payload.len(),
                    sender: X0xId::from(m.sender.0),
                    timestamp_ms: m.timestamp_ms,
                    hops: m.hops,
                }
            })
            .collect();
        Self {
            views,
            _messages: messages,
            _topics: topics.into_values().collect(),
        }
    }
}

impl OpOutput for X0xMessageBatch {
    fn into_raw(self: Box<Self>) -> *mut c_void {
        Box::into_raw(self).cast()
    }
}

/// The number of messages in `batch` (0 for NULL).
#[no_mangle]
pub unsafe extern "C" fn x0x_message_batch_len(batch: *const X0xMessageBatch) -> usize {
    batch_len(batch)
}

/// The message at `index`, borrowed from `batch` (valid until the batch is freed); NULL if
/// `batch` is NULL or `index` is out of range.
#[no_mangle]
pub unsafe extern "C" fn x0x_message_batch_get(
    batch: *const X0xMessageBatch,
    index: usize,
) -> *const X0xMessage {
    batch_get(batch, index)
}

/// Frees a batch and every message in it. NULL is a no-op.
#[no_mangle]
pub unsafe extern "C" fn x0x_message_batch_free(batch: *mut X0xMessageBatch) {
    batch_free(batch)
}
