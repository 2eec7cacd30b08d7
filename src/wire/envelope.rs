//! Envelopes: one ML-DSA-65 signature over a batch of messages one sender published on one
//! topic, and the limits of what one `publish` may carry.

use bytes::Bytes;
use serde::{Deserialize, Serialize};

use super::{encode, read_varint};
use crate::error::{Error, Result};
use crate::identity::{AgentId, Keypair, PublicKey, ID_LEN};

/// The largest payload one `publish` accepts.
pub const MAX_PAYLOAD_LEN: usize = 256 * 1024;
/// The longest topic name, in bytes.
pub const MAX_TOPIC_LEN: usize = 256;
/// A batch is cut when its payloads reach this many bytes (so an envelope always fits a frame).
pub const MAX_BATCH_BYTES: usize = 512 * 1024;
/// A batch holds at most this many messages.
pub const MAX_BATCH_ITEMS: usize = 256;
pub const MESSAGE_DOMAIN: &[u8] = b"x0x-msg-v4";
/// Version 4 names the topic once per envelope (version 3: once per message, so one envelope
/// could mix topics); an envelope is what a topic's traffic is counted, and carried, in.
const ENVELOPE_VERSION: u8 = 4;

/// One published message inside an envelope.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Item {
    /// Milliseconds since the Unix epoch, at publish time.
    pub timestamp_ms: u64,
    /// The application's bytes.
    pub payload: Bytes,
}

/// What the sender signs: who it is, a per-sender sequence number, the topic, and the batch.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct EnvelopeBody {
    /// The envelope format (`ENVELOPE_VERSION`).
    pub version: u8,
    /// The sender's `AgentId`: the id of the key that made the signature.
    pub sender: [u8; ID_LEN],
    /// Increases with every envelope from this sender (microseconds at start, then +1).
    pub seq: u64,
    /// The topic name every message in the batch was published on.
    pub topic: String,
    /// The messages, in publish order.
    pub items: Vec<Item>,
}

/// An envelope as it travels: the encoded body and the signature over it.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct SignedEnvelope {
    /// postcard of an [`EnvelopeBody`].
    pub body: Bytes,
    /// ML-DSA-65 over `"x0x-msg-v4" ‖ body`.
    #[serde(with = "serde_bytes")]
    pub signature: Vec<u8>,
}

fn signed_bytes(body: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(MESSAGE_DOMAIN.len() + body.len());
    out.extend_from_slice(MESSAGE_DOMAIN);
    out.extend_from_slice(body);
    out
}

/// A verified envelope: the sender and the messages, ready to deliver.
#[derive(Clone, Debug)]
pub struct VerifiedEnvelope {
    /// The sender.
    pub sender: AgentId,
    /// The sender's sequence number.
    pub seq: u64,
    /// The topic.
    pub topic: String,
    /// The messages.
    pub items: Vec<Item>,
}

/// Why an envelope was rejected (each has its own counter).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Rejection {
    /// The bytes do not decode, or the version is unknown.
    Malformed,
    /// The envelope names a sender whose key the receiver was not given (on its stream), or
    /// another sender than the key it is checked with.
    WrongSender,
    /// The signature does not verify.
    BadSignature,
}

/// Signs `items`, published on `topic`, as one envelope from `agent_key`.
pub fn seal(agent_key: &Keypair, seq: u64, topic: &str, items: Vec<Item>) -> Result<Bytes> {
    let public_key = agent_key.public_key();
    let body = EnvelopeBody {
        version: ENVELOPE_VERSION,
        sender: public_key.agent_id().0,
        seq,
        topic: topic.to_owned(),
        items,
    };
    let body = Bytes::from(encode(&body)?);
    let signature = agent_key.sign(&signed_bytes(&body))?;
    Ok(Bytes::from(encode(&SignedEnvelope { body, signature })?))
}

/// Decodes an envelope and verifies it against `key`, the key of the sender it names, or says
/// why it is rejected.
#[cfg(any(test, feature = "testing", fuzzing))]
pub fn open(bytes: &[u8], key: &PublicKey) -> std::result::Result<VerifiedEnvelope, Rejection> {
    parse(bytes)?.verify(key)
}

/// An envelope decoded but not verified yet: first find the key of the sender it names.
#[derive(Debug)]
pub struct Unverified {
    envelope: SignedEnvelope,
    body: EnvelopeBody,
}

/// Decodes an envelope (its signature unchecked); `Malformed` if it does not decode.
pub fn parse(bytes: &[u8]) -> std::result::Result<Unverified, Rejection> {
    let (envelope, body) = parse_unverified(bytes)?;
    Ok(Unverified { envelope, body })
}

impl Unverified {
    /// The sender the envelope names.
    pub fn sender(&self) -> AgentId {
        AgentId(self.body.sender)
    }

    /// The topic the envelope names.
    pub fn topic(&self) -> &str {
        &self.body.topic
    }

    /// Checks the signature with `key`, which must be the named sender's.
    pub fn check(&self, key: &PublicKey) -> std::result::Result<(), Rejection> {
        if key.agent_id().0 != self.body.sender {
            return Err(Rejection::WrongSender);
        }
        if !key.verify(&signed_bytes(&self.envelope.body), &self.envelope.signature) {
            return Err(Rejection::BadSignature);
        }
        Ok(())
    }

    /// Checks the signature with `key` (see `check`) and hands out the contents.
    #[cfg(any(test, feature = "testing", fuzzing))]
    pub fn verify(self, key: &PublicKey) -> std::result::Result<VerifiedEnvelope, Rejection> {
        self.check(key)?;
        Ok(self.checked())
    }

    /// The contents, for a caller that has had `check` pass on it (or on the same bytes).
    pub(crate) fn checked(self) -> VerifiedEnvelope {
        VerifiedEnvelope {
            sender: AgentId(self.body.sender),
            seq: self.body.seq,
            topic: self.body.topic,
            items: self.body.items,
        }
    }
}

/// Decodes an envelope that was verified before (by the reader that received it).
pub fn open_verified(bytes: &[u8]) -> std::result::Result<VerifiedEnvelope, Rejection> {
    parse(bytes).map(Unverified::checked)
}

/// The sender an envelope names, read without decoding or verifying the rest: which key to
/// check it with, or (for envelopes already verified, or our own) who sent it.
pub fn claimed_sender(envelope: &[u8]) -> Option<AgentId> {
    // postcard: SignedEnvelope.body (varint length + bytes) → EnvelopeBody { version: u8,
    // sender: [u8; 32], .. }.
    let (len, rest) = read_varint(envelope)?;
    let body = rest.get(..usize::try_from(len).ok()?)?;
    let sender = body.get(1..1 + ID_LEN)?;
    Some(AgentId(sender.try_into().ok()?))
}

/// The sequence number an envelope names, read without decoding or verifying the rest.
pub fn claimed_seq(envelope: &[u8]) -> Option<u64> {
    // postcard: body length, then EnvelopeBody { version: u8, sender: [u8; 32], seq: varint, .. }.
    let (len, rest) = read_varint(envelope)?;
    let body = rest.get(..usize::try_from(len).ok()?)?;
    read_varint(body.get(1 + ID_LEN..)?).map(|(seq, _)| seq)
}

/// The topic an envelope names, read without decoding or verifying the rest (for counting the
/// traffic of an envelope a reader verified, or one of our own).
pub fn claimed_topic(envelope: &[u8]) -> Option<&str> {
    // postcard: body length, then EnvelopeBody { version: u8, sender: [u8; 32], seq: varint,
    // topic: length + UTF-8, .. }.
    let (len, rest) = read_varint(envelope)?;
    let body = rest.get(..usize::try_from(len).ok()?)?;
    let (_seq, rest) = read_varint(body.get(1 + ID_LEN..)?)?;
    let (len, rest) = read_varint(rest)?;
    std::str::from_utf8(rest.get(..usize::try_from(len).ok()?)?).ok()
}

fn parse_unverified(
    bytes: &[u8],
) -> std::result::Result<(SignedEnvelope, EnvelopeBody), Rejection> {
    let envelope: SignedEnvelope = postcard::from_bytes(bytes).map_err(|_| Rejection::Malformed)?;
    let body: EnvelopeBody =
        postcard::from_bytes(&envelope.body).map_err(|_| Rejection::Malformed)?;
    if body.version != ENVELOPE_VERSION {
        return Err(Rejection::Malformed);
    }
    Ok((envelope, body))
}

/// Checks a topic name and payload before publishing.
pub fn check_publish(topic: &str, payload_len: usize) -> Result<()> {
    check_topic(topic)?;
    if payload_len > MAX_PAYLOAD_LEN {
        return Err(Error::invalid_argument(format!(
            "payload of {payload_len} bytes is over the {MAX_PAYLOAD_LEN}-byte limit"
        )));
    }
    Ok(())
}

/// Checks a topic name: 1 to [`MAX_TOPIC_LEN`] bytes.
pub fn check_topic(topic: &str) -> Result<()> {
    if topic.is_empty() || topic.len() > MAX_TOPIC_LEN {
        return Err(Error::invalid_argument(format!(
            "a topic name must be 1 to {MAX_TOPIC_LEN} bytes, got {}",
            topic.len()
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::GOSSIP_MAX_MESSAGE_SIZE;

    fn item(payload: &[u8]) -> Item {
        Item {
            timestamp_ms: 1,
            payload: Bytes::copy_from_slice(payload),
        }
    }

    #[test]
    fn envelope_round_trip() {
        let key = Keypair::generate().unwrap();
        let sealed = seal(&key, 7, "chat", vec![item(b"one"), item(b"two")]).unwrap();
        let opened = open(&sealed, key.public_key()).unwrap();
        assert_eq!(opened.sender, key.public_key().agent_id());
        assert_eq!((opened.seq, opened.topic.as_str()), (7, "chat"));
        assert_eq!(opened.items, vec![item(b"one"), item(b"two")]);
    }

    #[test]
    fn claimed_sender_and_topic_are_read_without_decoding() {
        let key = Keypair::generate().unwrap();
        for seq in [3, u64::MAX] {
            let sealed = seal(&key, seq, "news/ü", vec![item(b"x")]).unwrap();
            assert_eq!(claimed_sender(&sealed), Some(key.public_key().agent_id()));
            assert_eq!(claimed_topic(&sealed), Some("news/ü"));
        }
        let sealed = seal(&key, 3, "t", vec![item(b"x")]).unwrap();
        assert_eq!(claimed_sender(&sealed[..20]), None);
        assert_eq!(claimed_topic(&sealed[..40]), None);
        for garbage in [&b""[..], &[0xff; 11], &[0x30; 20]] {
            assert_eq!(claimed_sender(garbage), None);
            assert_eq!(claimed_topic(garbage), None);
        }
    }

    #[test]
    fn tampered_payload_is_a_bad_signature() {
        let key = Keypair::generate().unwrap();
        let sealed = seal(&key, 1, "t", vec![item(b"hello")]).unwrap();
        let mut envelope: SignedEnvelope = postcard::from_bytes(&sealed).unwrap();
        let mut body: EnvelopeBody = postcard::from_bytes(&envelope.body).unwrap();
        body.items[0].payload = Bytes::from_static(b"HELLO");
        envelope.body = encode(&body).unwrap().into();
        let tampered = encode(&envelope).unwrap();
        assert_eq!(
            open(&tampered, key.public_key()).unwrap_err(),
            Rejection::BadSignature
        );
    }

    #[test]
    fn forged_sender_is_rejected() {
        let honest = Keypair::generate().unwrap();
        let forger = Keypair::generate().unwrap();
        // The forger names the honest sender but signs with its own key.
        let body = EnvelopeBody {
            version: ENVELOPE_VERSION,
            sender: honest.public_key().agent_id().0,
            seq: 1,
            topic: "t".into(),
            items: vec![item(b"x")],
        };
        let body = Bytes::from(encode(&body).unwrap());
        let signature = forger.sign(&signed_bytes(&body)).unwrap();
        let bytes = encode(&SignedEnvelope { body, signature }).unwrap();
        // Checked with the forger's key (say, the only one it announced): not that sender.
        assert_eq!(
            open(&bytes, forger.public_key()).unwrap_err(),
            Rejection::WrongSender
        );
        // Checked with the honest sender's key: not its signature.
        assert_eq!(
            open(&bytes, honest.public_key()).unwrap_err(),
            Rejection::BadSignature
        );
    }

    #[test]
    fn garbage_is_malformed_never_a_panic() {
        let key = Keypair::generate().unwrap();
        for bytes in [&b""[..], b"\x00", b"\xff\xff\xff\xff\xff", &[7u8; 100]] {
            assert_eq!(
                open(bytes, key.public_key()).unwrap_err(),
                Rejection::Malformed
            );
        }
    }

    #[test]
    fn publish_limits() {
        check_publish("t", MAX_PAYLOAD_LEN).unwrap();
        let err = check_publish("t", MAX_PAYLOAD_LEN + 1).unwrap_err();
        assert!(
            err.message().contains("over the 262144-byte limit"),
            "{err}"
        );
        assert!(check_topic("").is_err());
        assert!(check_topic(&"x".repeat(257)).is_err());
        // The largest batch of the largest items still fits a frame.
        let key = Keypair::generate().unwrap();
        let items = (0..MAX_BATCH_BYTES / MAX_PAYLOAD_LEN)
            .map(|_| Item {
                timestamp_ms: u64::MAX,
                payload: Bytes::from(vec![0u8; MAX_PAYLOAD_LEN]),
            })
            .collect();
        let topic = "x".repeat(MAX_TOPIC_LEN);
        let sealed = seal(&key, u64::MAX, &topic, items).unwrap();
        assert!(sealed.len() < GOSSIP_MAX_MESSAGE_SIZE - 1024);
    }
}
