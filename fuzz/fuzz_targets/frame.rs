//! The bytes a connected peer sends on one stream after the hellos, through everything an agent
//! does with them: the reader's length-prefixed framing (`net::read_frame_checked`), its
//! per-stream reader (`streams::StreamReader`: frame kinds, announced publisher keys, the
//! verification of data messages, the decode of `iroh_gossip::proto::Message`), then the actor:
//! the proto state machine, its timers, the peer data it reports, and the delivery of received
//! envelopes (`wire::open_verified` + the replay window). See `x0x_fuzz::Node` for the checks:
//! * a frame that decodes to a data message had its content verified, under the publisher it
//!   names, and the gossip layer delivers only verified content;
//! * decoded messages re-encode stably, and outgoing frames fit the frame limit;
//! * nothing panics (the actor runs on a tokio task: a panic kills the agent's networking).
//!
//! Input: the byte stream as received (u32 big-endian length, frame, repeat; each frame a kind
//! byte, then a gossip message or a public key). It is fed twice: to a node that peers join
//! through, and to a node that joined through the sender.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    x0x_fuzz::Node::new(false).connection(data);
    x0x_fuzz::Node::new(true).connection(data);
});
