//! Everything that crosses the network, and its limits.
//!
//! * A connection carries **frames**: a big-endian `u32` length, then that many bytes, at most
//!   [`MAX_FRAME_LEN`]. The first frame each way on the first (bidirectional) stream is a
//!   [`Hello`]. Every later frame, there and on the payload lanes (unidirectional streams, see
//!   `streams::lane_of`), starts with a [`FrameKind`] byte: a postcard-encoded
//!   `iroh_gossip::proto::Message` follows, a publisher's public key (see `streams`), or a
//!   directory message (`overlay::directory`).
//! * Application messages travel as the content of gossip data messages, as a [`SignedEnvelope`]:
//!   one ML-DSA-65 signature over a batch of [`Item`]s from one sender (group commit). The
//!   envelope names its sender by id only; the sender's key travels once per stream.
//! * A small batch also goes, unsigned and ahead of its envelope, to the publisher's
//!   neighbours in the topic's swarm as an [`Origin`] frame (never forwarded).
//!
//! [`MAX_FRAME_LEN`]: crate::wire::MAX_FRAME_LEN
//! [`Hello`]: crate::wire::Hello
//! [`FrameKind`]: crate::wire::FrameKind
//! [`SignedEnvelope`]: crate::wire::SignedEnvelope
//! [`Item`]: crate::wire::Item
//! [`Origin`]: crate::wire::Origin
//!
//! One file per layer: `frame` (framing and frame kinds), `hello`, `envelope` (signed batches
//! and publish limits), `origin` (unsigned first copies of small batches), `gossip_layout` (iroh-gossip's byte layout). Their items are
//! re-exported here: `wire::Hello`, `wire::seal`, ...

use serde::Serialize;

use crate::error::{Error, ErrorKind, Result};

mod direct;
mod envelope;
mod frame;
mod gossip_layout;
mod hello;
mod origin;

pub use direct::*;
pub use envelope::*;
pub use frame::*;
pub use gossip_layout::*;
pub use hello::*;
pub use origin::*;

/// The gossip swarm that carries `topic`'s envelopes: only agents that subscribe to the topic
/// or publish on it join it (the frames of a swarm name it by this id).
pub fn topic_swarm(topic: &str) -> [u8; 32] {
    blake3::derive_key("x0x 2026 topic swarm v1", topic.as_bytes())
}

/// Where in the id space the members of `topic`'s swarm register (see `overlay::directory`).
/// Not the swarm id: the agents that keep the records learn neither the topic nor how to join
/// its swarm (for a task list's topic, a hash of its id, they cannot work either out).
pub fn rendezvous_key(topic: &str) -> [u8; 32] {
    blake3::derive_key("x0x 2026 topic rendezvous v1", topic.as_bytes())
}

/// postcard-encodes `value`.
pub fn encode<T: Serialize + ?Sized>(value: &T) -> Result<Vec<u8>> {
    postcard::to_stdvec(value).map_err(|e| protocol(format!("encoding failed: {e}")))
}

pub(crate) fn protocol(message: impl Into<String>) -> Error {
    Error::new(ErrorKind::Protocol, message)
}

/// Appends `value` as a postcard (LEB128) varint.
pub(crate) fn put_varint(out: &mut Vec<u8>, mut value: u64) {
    while value >= 0x80 {
        out.push((value as u8) | 0x80);
        value >>= 7;
    }
    out.push(value as u8);
}

/// Reads a postcard (LEB128) varint: the value and the bytes after it.
pub(crate) fn read_varint(bytes: &[u8]) -> Option<(u64, &[u8])> {
    let mut value = 0u64;
    for (i, byte) in bytes.iter().enumerate().take(10) {
        value |= u64::from(byte & 0x7f) << (7 * i);
        if byte & 0x80 == 0 {
            return Some((value, &bytes[i + 1..]));
        }
    }
    None
}
