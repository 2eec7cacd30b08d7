//! Helpers shared by the integration tests that play a rogue peer (`hostile.rs`,
//! `reliability.rs`): agents, the background-panic watch, drop counters, and forged envelopes.
//! Each test binary compiles this module on its own and uses part of it.
#![allow(dead_code)]

use std::cell::Cell;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Once;
use std::time::Duration;

use bytes::Bytes;
use x0x::stats::Stats;
use x0x::wire::{self, EnvelopeBody, Item, Rejection, SignedEnvelope};
use x0x::Keypair;

/// Invalid messages tolerated from one connection (the core's rule, as a count).
pub const MAX_STRIKES: usize = x0x::gossip::MAX_STRIKES as usize;

pub fn localhost() -> SocketAddr {
    "127.0.0.1:0".parse().unwrap()
}

/// An agent bound to 127.0.0.1 with a throwaway machine key, not joined yet.
pub async fn agent(bootstrap: &[SocketAddr]) -> x0x::Agent {
    let mut builder = x0x::Agent::builder();
    builder.with_ephemeral_machine_key().with_bind(localhost());
    for addr in bootstrap {
        builder.with_bootstrap(&addr.to_string()).unwrap();
    }
    builder.build().await.unwrap()
}

// ---------------------------------------------------------------------------------------------
// Panics in background tasks are swallowed by tokio; count them instead.

static BACKGROUND_PANICS: AtomicUsize = AtomicUsize::new(0);

thread_local! {
    /// Set on a test's own thread, where its body runs (`block_on`).
    static TEST_THREAD: Cell<bool> = const { Cell::new(false) };
}

/// Counts panics on every thread but a test's own (tokio workers, the signer, the blocking
/// pool...), so a failing assertion is not counted but a panicking background task is.
pub fn watch_panics() {
    TEST_THREAD.with(|t| t.set(true));
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let default = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if !TEST_THREAD.with(Cell::get) {
                BACKGROUND_PANICS.fetch_add(1, Ordering::SeqCst);
            }
            default(info);
        }));
    });
}

pub fn assert_no_background_panics() {
    assert_eq!(
        BACKGROUND_PANICS.load(Ordering::SeqCst),
        0,
        "a background task or thread panicked (see stderr)"
    );
}

/// Runs a test body with the panic watch on and an overall time limit.
pub async fn bounded(limit: Duration, body: impl Future<Output = ()>) {
    watch_panics();
    tokio::time::timeout(limit, body)
        .await
        .expect("the test did not finish in time");
    assert_no_background_panics();
}

// ---------------------------------------------------------------------------------------------
// Drop counters.

/// The drop counters, for exact before/after comparisons.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Drops {
    pub bad_signature: u64,
    pub wrong_sender: u64,
    pub malformed: u64,
    pub oversized: u64,
}

impl Drops {
    pub fn of(stats: Stats) -> Self {
        Self {
            bad_signature: stats.dropped_bad_signature,
            wrong_sender: stats.dropped_wrong_sender,
            malformed: stats.dropped_malformed,
            oversized: stats.dropped_oversized,
        }
    }

    pub fn plus(self, other: Drops) -> Self {
        Self {
            bad_signature: self.bad_signature + other.bad_signature,
            wrong_sender: self.wrong_sender + other.wrong_sender,
            malformed: self.malformed + other.malformed,
            oversized: self.oversized + other.oversized,
        }
    }

    pub fn minus(self, other: Drops) -> Self {
        Self {
            bad_signature: self.bad_signature - other.bad_signature,
            wrong_sender: self.wrong_sender - other.wrong_sender,
            malformed: self.malformed - other.malformed,
            oversized: self.oversized - other.oversized,
        }
    }

    pub fn times(self, n: u64) -> Self {
        Self {
            bad_signature: self.bad_signature * n,
            wrong_sender: self.wrong_sender * n,
            malformed: self.malformed * n,
            oversized: self.oversized * n,
        }
    }

    pub fn total(self) -> u64 {
        self.bad_signature + self.wrong_sender + self.malformed + self.oversized
    }
}

// ---------------------------------------------------------------------------------------------
// Envelopes, taken apart and put together again.

/// One message on `topic`.
pub fn items(topic: &str, payload: &[u8]) -> Vec<Item> {
    vec![Item {
        topic: topic.into(),
        timestamp_ms: 1,
        payload: Bytes::copy_from_slice(payload),
    }]
}

/// A signature by `key` over an envelope body, as the core signs one.
pub fn sign_body(key: &Keypair, body: &[u8]) -> Vec<u8> {
    key.sign(&[wire::MESSAGE_DOMAIN, body].concat()).unwrap()
}

pub fn unseal(sealed: &[u8]) -> (SignedEnvelope, EnvelopeBody) {
    let envelope: SignedEnvelope = postcard::from_bytes(sealed).unwrap();
    let body: EnvelopeBody = postcard::from_bytes(&envelope.body).unwrap();
    (envelope, body)
}

/// Re-encodes `body` into `envelope`, re-signed by `signer` if given.
pub fn reseal(
    mut envelope: SignedEnvelope,
    body: &EnvelopeBody,
    signer: Option<&Keypair>,
) -> Bytes {
    envelope.body = Bytes::from(wire::encode(body).unwrap());
    if let Some(signer) = signer {
        envelope.signature = sign_body(signer, &envelope.body);
    }
    Bytes::from(wire::encode(&envelope).unwrap())
}

/// Checks that the core rejects `bytes` for `expected`, then hands them back.
pub fn expect_rejection(bytes: Bytes, expected: Rejection) -> Bytes {
    assert_eq!(
        wire::open(&bytes).map(|_| ()),
        Err(expected),
        "the forgery is not what this test means to send"
    );
    bytes
}
