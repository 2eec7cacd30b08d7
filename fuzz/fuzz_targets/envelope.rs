//! Signed envelopes (`wire::parse` + `Unverified::verify`, `wire::open_verified`), the content
//! of every data message.
//!
//! The reader parses an envelope, picks the key of the sender it names and verifies it, and the
//! node delivers what it decoded; should the gossip layer ever pass on an envelope the reader
//! did not hand it just then, the node decodes those bytes (`open_verified`), trusting that a
//! reader checked the signature. They must agree: on what decodes, on the sender (also as `claimed_sender`, which
//! the writer picks lanes and keys by), the topic (also as `claimed_topic`, which traffic is
//! counted by), the sequence number and the items; they differ only on a bad signature. Another sender's key is always refused.
//!
//! Input: byte 0 is the mode, the rest its argument.
//! * even: the rest is an envelope as received;
//! * odd: the rest is an `EnvelopeBody`, which the target signs with a fixed key, so that the
//!   checks behind the signature (version, sender = id of the key, the items) are reached with
//!   arbitrary bodies.
#![no_main]

use libfuzzer_sys::fuzz_target;
use std::sync::OnceLock;
use x0x::Keypair;

static KEY: OnceLock<Keypair> = OnceLock::new();

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    if mode & 1 == 0 {
        x0x_fuzz::check_open(rest);
    } else {
        let key = KEY.get_or_init(|| x0x_fuzz::keypair(3));
        x0x_fuzz::check_open(&x0x_fuzz::sign_envelope(key, rest));
    }
});
