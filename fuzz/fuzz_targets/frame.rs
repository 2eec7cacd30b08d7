//! The bytes a connected peer sends on one stream after the hellos, through everything an agent
//! does with them: the reader's length-prefixed framing (`net::read_frame_checked`), its
//! per-stream reader (`streams::StreamReader`: frame kinds, announced publisher keys, the
//! verification of data messages, the decode of `iroh_gossip::proto::Message`, strikes), then
//! the real sans-IO overlay node, `overlay::node::Node` (through `x0x::fuzzing::NodeHarness`):
//! its links, duplicate filter, IHave holds and recent-payload announcements, the proto state
//! machine inside it, its timers (fired in simulated time), the peer data it keeps, and the
//! delivery of received envelopes to subscriptions. See `x0x_fuzz::Node` for the checks:
//! * a frame that decodes to a data message had its content verified, under the publisher it
//!   names, and the node delivers only items of envelopes the reader verified;
//! * decoded messages re-encode stably, and the frames the node sends decode and fit the frame
//!   limit;
//! * nothing panics (the node runs on the driver's tokio task: a panic kills the agent's
//!   networking).
//!
//! Input: the byte stream as received (u32 big-endian length, frame, repeat; each frame a kind
//! byte, then a gossip message or a public key). It is fed twice: to the first node of a
//! network, which the sender dialed (peers join through it), and to a node that dialed the
//! sender as its bootstrap peer and joined through it.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    x0x_fuzz::Node::new(false).connection(data);
    x0x_fuzz::Node::new(true).connection(data);
});
