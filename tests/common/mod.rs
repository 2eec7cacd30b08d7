//! Helpers shared by the integration tests: agents (`network.rs`, `direct.rs` and the rogue-peer
//! tests), and for the rogue-peer tests (`hostile.rs`, `reliability.rs`) the background-panic
//! watch, drop counters, and forged envelopes.
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
use x0x::testing::wire::{self, EnvelopeBody, Item, Rejection, SignedEnvelope};
use x0x::{AgentId, Keypair, PublicKey};

/// Invalid messages tolerated from one connection (the core's rule, as a count).
pub const MAX_STRIKES: usize = x0x::testing::MAX_STRIKES as usize;

pub fn localhost() -> SocketAddr {
    "127.0.0.1:0".parse().unwrap()
}

/// An agent from the default builder (as users build one), not joined yet.
pub async fn agent(bootstrap: &[SocketAddr]) -> x0x::Agent {
    let mut builder = x0x::Agent::builder();
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

/// One message, for an envelope.
pub fn items(payload: &[u8]) -> Vec<Item> {
    vec![Item {
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

/// Checks that the core, holding `key` (the only key the sender announces), rejects `bytes`
/// for `expected`, then hands them back.
pub fn expect_rejection(bytes: Bytes, key: &PublicKey, expected: Rejection) -> Bytes {
    let found = wire::parse(&bytes).and_then(|envelope| match envelope.sender() {
        sender if sender == key.agent_id() => envelope.verify(key).map(|_| ()),
        _ => Err(Rejection::WrongSender),
    });
    assert_eq!(
        found,
        Err(expected),
        "the forgery is not what this test means to send"
    );
    bytes
}

/// A well-formed envelope from `key` whose signature is by `other` (over the right bytes).
pub fn forged_signature(
    key: &Keypair,
    other: &Keypair,
    topic: &str,
    seq: u64,
    payload: &[u8],
) -> Bytes {
    let (mut envelope, _) = unseal(&wire::seal(key, seq, topic, items(payload)).unwrap());
    envelope.signature = sign_body(other, &envelope.body);
    expect_rejection(
        Bytes::from(wire::encode(&envelope).unwrap()),
        key.public_key(),
        Rejection::BadSignature,
    )
}

/// A sealed envelope whose payload was changed afterwards (not re-signed).
pub fn tampered_payload(key: &Keypair, topic: &str, seq: u64, payload: &[u8]) -> Bytes {
    let (envelope, mut body) = unseal(&wire::seal(key, seq, topic, items(payload)).unwrap());
    body.items[0].payload = Bytes::from([payload, b" (tampered)"].concat());
    expect_rejection(
        reseal(envelope, &body, None),
        key.public_key(),
        Rejection::BadSignature,
    )
}

/// Claims `victim` as sender, with a valid signature by `key` (the only key its sender
/// announces: it does not hold the victim's).
pub fn wrong_sender(
    key: &Keypair,
    victim: AgentId,
    topic: &str,
    seq: u64,
    payload: &[u8],
) -> Bytes {
    let (envelope, mut body) = unseal(&wire::seal(key, seq, topic, items(payload)).unwrap());
    body.sender = victim.0;
    expect_rejection(
        reseal(envelope, &body, Some(key)),
        key.public_key(),
        Rejection::WrongSender,
    )
}

/// How many kinds of undecodable envelope [`malformed`] makes.
pub const MALFORMED_KINDS: usize = 5;

/// Envelope bytes that do not decode, of kind `kind % MALFORMED_KINDS` (each signed by `key`
/// where there is something to sign); distinct for distinct `seq` and `payload`.
pub fn malformed(key: &Keypair, topic: &str, seq: u64, payload: &[u8], kind: usize) -> Bytes {
    let sealed = || wire::seal(key, seq, topic, items(payload)).unwrap();
    let bytes = match kind % MALFORMED_KINDS {
        0 => Bytes::from([b"not an envelope ", payload].concat()),
        1 => {
            let sealed = sealed();
            sealed.slice(..sealed.len() / 2)
        }
        2 => {
            // An unknown version.
            let (envelope, mut body) = unseal(&sealed());
            body.version = body.version.wrapping_add(97);
            reseal(envelope, &body, Some(key))
        }
        3 => {
            // A body cut inside the sender id.
            let (mut envelope, _) = unseal(&sealed());
            envelope.body = envelope.body.slice(..20);
            envelope.signature = sign_body(key, &envelope.body);
            Bytes::from(wire::encode(&envelope).unwrap())
        }
        _ => {
            // A body that is not an EnvelopeBody.
            let (mut envelope, _) = unseal(&sealed());
            envelope.body = Bytes::from([&[0xff; 64][..], payload].concat());
            envelope.signature = sign_body(key, &envelope.body);
            Bytes::from(wire::encode(&envelope).unwrap())
        }
    };
    expect_rejection(bytes, key.public_key(), Rejection::Malformed)
}
