//! Everything that crosses the network, and its limits.
//!
//! * A connection carries **frames**: a big-endian `u32` length, then that many bytes, at most
//!   [`MAX_FRAME_LEN`]. The first frame each way on the first (bidirectional) stream is a
//!   [`Hello`]. Every later frame, there and on the payload lanes (unidirectional streams, see
//!   `streams::lane_of`), starts with a [`FrameKind`] byte: a postcard-encoded
//!   `iroh_gossip::proto::Message` follows, or a publisher's public key (see `streams`).
//! * Application messages travel as the content of gossip data messages, as a [`SignedEnvelope`]:
//!   one ML-DSA-65 signature over a batch of [`Item`]s from one sender (group commit). The
//!   envelope names its sender by id only; the sender's key travels once per stream.
//!
//! [`MAX_FRAME_LEN`]: crate::wire::MAX_FRAME_LEN
//! [`Hello`]: crate::wire::Hello
//! [`FrameKind`]: crate::wire::FrameKind
//! [`SignedEnvelope`]: crate::wire::SignedEnvelope
//! [`Item`]: crate::wire::Item

use std::net::SocketAddr;

use bytes::Bytes;
use serde::{Deserialize, Serialize};

use crate::error::{Error, ErrorKind, Result};
use crate::identity::{AgentId, Keypair, MachineId, PublicKey, ID_LEN};

/// The largest frame a peer may send; a longer length prefix closes the connection.
pub const MAX_FRAME_LEN: usize = 1 << 20;
/// The gossip layer's message size limit: a frame minus room for its own header.
pub const GOSSIP_MAX_MESSAGE_SIZE: usize = MAX_FRAME_LEN - 4096;
/// The largest payload one `publish` accepts.
pub const MAX_PAYLOAD_LEN: usize = 256 * 1024;
/// The longest topic name, in bytes.
pub const MAX_TOPIC_LEN: usize = 256;
/// A batch is cut when its payloads reach this many bytes (so an envelope always fits a frame).
pub const MAX_BATCH_BYTES: usize = 512 * 1024;
/// A batch holds at most this many messages.
pub const MAX_BATCH_ITEMS: usize = 256;

const HELLO_DOMAIN: &[u8] = b"x0x-hello-v2";
const ENDORSEMENT_DOMAIN: &[u8] = b"x0x-agent-on-machine-v1";
pub const MESSAGE_DOMAIN: &[u8] = b"x0x-msg-v3";
const ENVELOPE_VERSION: u8 = 3;
/// The TLS exporter label that binds a [`Hello`] to its QUIC connection.
pub const EXPORTER_LABEL: &[u8] = b"EXPORTER-x0x-peer-binding-v1";

/// Which end of a connection signed a [`Hello`]; part of the signed bytes so that a hello can't
/// be reflected back to its sender.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    /// The side that opened the connection.
    Dialer = 0,
    /// The side that accepted it.
    Acceptor = 1,
}

/// What a frame after the hello holds: its first byte.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FrameKind {
    /// A postcard-encoded `iroh_gossip::proto::Message`.
    Gossip = 0,
    /// A publisher's public key ([`crate::identity::PUBLIC_KEY_LEN`] bytes), sent before the
    /// first envelope from that publisher on the stream.
    Key = 1,
}

/// Splits a frame after the hello into its kind and body; `None` for an unknown kind.
pub fn split_frame(frame: &[u8]) -> Option<(FrameKind, &[u8])> {
    let (&kind, body) = frame.split_first()?;
    match kind {
        0 => Some((FrameKind::Gossip, body)),
        1 => Some((FrameKind::Key, body)),
        _ => None,
    }
}

/// What an agent proves in every hello: its agent key (its identity in the network: peer id =
/// `AgentId`), that its machine key vouches for that agent key, and its incarnation.
///
/// The endorsement is made once per agent (at build), the hello signature once per connection.
pub struct Credentials {
    agent_key: Keypair,
    machine_key: PublicKey,
    endorsement: Vec<u8>,
    incarnation: u64,
}

impl Credentials {
    /// Credentials for `agent_key` on the machine of `machine_key`, with a fresh incarnation.
    pub fn new(agent_key: Keypair, machine_key: &Keypair) -> Result<Self> {
        let endorsement = machine_key.sign(&endorsed_bytes(agent_key.public_key()))?;
        let mut incarnation = [0u8; 8];
        aws_lc_rs::rand::fill(&mut incarnation)
            .map_err(|_| Error::new(ErrorKind::Crypto, "the system random source failed"))?;
        Ok(Self {
            agent_key,
            machine_key: machine_key.public_key().clone(),
            endorsement,
            incarnation: u64::from_le_bytes(incarnation),
        })
    }

    /// The agent's id: its identity in the network.
    pub fn agent_id(&self) -> AgentId {
        self.agent_key.public_key().agent_id()
    }

    /// The agent key pair.
    pub fn agent_key(&self) -> &Keypair {
        &self.agent_key
    }

    /// The id of the machine key that endorsed the agent key.
    pub fn machine_id(&self) -> MachineId {
        self.machine_key.machine_id()
    }

    /// This agent run's incarnation (see [`Hello::incarnation`]).
    pub fn incarnation(&self) -> u64 {
        self.incarnation
    }
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials")
            .field("agent", &self.agent_id())
            .field("machine", &self.machine_id())
            .finish_non_exhaustive()
    }
}

fn endorsed_bytes(agent_key: &PublicKey) -> Vec<u8> {
    [ENDORSEMENT_DOMAIN, agent_key.as_bytes()].concat()
}

/// The first frame each way (hello version 2): proves the sender holds the agent key for its
/// `AgentId` on this very connection, and that its machine key vouches for that agent key.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Hello {
    /// The sender's agent public key (ML-DSA-65): its identity in the network.
    #[serde(with = "serde_bytes")]
    pub agent_key: Vec<u8>,
    /// The sender's machine public key (ML-DSA-65).
    #[serde(with = "serde_bytes")]
    pub machine_key: Vec<u8>,
    /// The machine key's signature over `"x0x-agent-on-machine-v1" ‖ agent public key`.
    #[serde(with = "serde_bytes")]
    pub endorsement: Vec<u8>,
    /// Where the sender accepts connections.
    pub listen: SocketAddr,
    /// Random per agent run: a connection from a known peer with a new incarnation means the
    /// peer restarted, so its old connection is dead even if it has not timed out yet; the same
    /// agent id with an incarnation it left behind is a second copy of that agent.
    pub incarnation: u64,
    /// The agent key's ML-DSA-65 signature over `"x0x-hello-v2" ‖ role ‖ exporter secret ‖
    /// machine id ‖ postcard(listen) ‖ incarnation`.
    #[serde(with = "serde_bytes")]
    pub signature: Vec<u8>,
    /// Where some other peers the sender knows accept connections (at most [`HELLO_PEERS`]
    /// are used): candidates for when the receiver runs short of neighbours. Hints, like the
    /// addresses the gossip layer passes around: not signed, and checked by dialing them.
    pub peers: Vec<SocketAddr>,
}

/// How many of a hello's [`Hello::peers`] a receiver uses.
pub const HELLO_PEERS: usize = 8;

/// Who a verified hello came from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HelloSender {
    /// The sender's agent key (its id is the peer's identity in the network).
    pub agent_key: PublicKey,
    /// The sender's machine.
    pub machine: MachineId,
}

fn hello_transcript(
    role: Role,
    exporter: &[u8; 32],
    machine: &MachineId,
    listen: &SocketAddr,
    incarnation: u64,
) -> Result<Vec<u8>> {
    let mut out = Vec::with_capacity(HELLO_DOMAIN.len() + 1 + 32 + ID_LEN + 32 + 8);
    out.extend_from_slice(HELLO_DOMAIN);
    out.push(role as u8);
    out.extend_from_slice(exporter);
    out.extend_from_slice(machine.as_bytes());
    out.extend_from_slice(&encode(listen)?);
    out.extend_from_slice(&incarnation.to_le_bytes());
    Ok(out)
}

impl Hello {
    /// A hello from `role` on the connection whose exporter secret is `exporter`.
    pub fn new(
        credentials: &Credentials,
        role: Role,
        exporter: &[u8; 32],
        listen: SocketAddr,
    ) -> Result<Self> {
        let incarnation = credentials.incarnation;
        let transcript = hello_transcript(
            role,
            exporter,
            &credentials.machine_id(),
            &listen,
            incarnation,
        )?;
        Ok(Self {
            agent_key: credentials.agent_key.public_key().as_bytes().to_vec(),
            machine_key: credentials.machine_key.as_bytes().to_vec(),
            endorsement: credentials.endorsement.clone(),
            listen,
            incarnation,
            signature: credentials.agent_key.sign(&transcript)?,
            peers: Vec::new(),
        })
    }

    /// The same hello, with `peers` as its hints (see [`Hello::peers`]).
    pub fn with_peers(mut self, mut peers: Vec<SocketAddr>) -> Self {
        peers.truncate(HELLO_PEERS);
        self.peers = peers;
        self
    }

    /// Checks a hello sent by `role` on the connection whose exporter secret is `exporter`:
    /// the agent key signed this connection, and the machine key endorsed the agent key.
    pub fn verify(&self, role: Role, exporter: &[u8; 32]) -> Result<HelloSender> {
        let agent_key = PublicKey::from_bytes(&self.agent_key)
            .map_err(|e| protocol(format!("hello: agent key: {e}")))?;
        let machine_key = PublicKey::from_bytes(&self.machine_key)
            .map_err(|e| protocol(format!("hello: machine key: {e}")))?;
        let machine = machine_key.machine_id();
        let transcript =
            hello_transcript(role, exporter, &machine, &self.listen, self.incarnation)?;
        if !agent_key.verify(&transcript, &self.signature) {
            return Err(protocol(
                "hello: bad signature (the peer does not hold its agent key)",
            ));
        }
        if !machine_key.verify(&endorsed_bytes(&agent_key), &self.endorsement) {
            return Err(protocol(
                "hello: bad endorsement (the machine key did not vouch for the agent key)",
            ));
        }
        Ok(HelloSender { agent_key, machine })
    }
}

/// One published message inside an envelope.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Item {
    /// The topic name.
    pub topic: String,
    /// Milliseconds since the Unix epoch, at publish time.
    pub timestamp_ms: u64,
    /// The application's bytes.
    pub payload: Bytes,
}

/// What the sender signs: who it is, a per-sender sequence number, and the batch.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct EnvelopeBody {
    /// The envelope format (`ENVELOPE_VERSION`).
    pub version: u8,
    /// The sender's `AgentId`: the id of the key that made the signature.
    pub sender: [u8; ID_LEN],
    /// Increases with every envelope from this sender (microseconds at start, then +1).
    pub seq: u64,
    /// The messages, in publish order.
    pub items: Vec<Item>,
}

/// An envelope as it travels: the encoded body and the signature over it.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct SignedEnvelope {
    /// postcard of an [`EnvelopeBody`].
    pub body: Bytes,
    /// ML-DSA-65 over `"x0x-msg-v3" ‖ body`.
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

/// Signs `items` as one envelope from `agent_key`.
pub fn seal(agent_key: &Keypair, seq: u64, items: Vec<Item>) -> Result<Bytes> {
    let public_key = agent_key.public_key();
    let body = EnvelopeBody {
        version: ENVELOPE_VERSION,
        sender: public_key.agent_id().0,
        seq,
        items,
    };
    let body = Bytes::from(encode(&body)?);
    let signature = agent_key.sign(&signed_bytes(&body))?;
    Ok(Bytes::from(encode(&SignedEnvelope { body, signature })?))
}

/// Decodes an envelope and verifies it against `key`, the key of the sender it names, or says
/// why it is rejected.
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

    /// Checks the signature with `key`, which must be the named sender's.
    pub fn verify(self, key: &PublicKey) -> std::result::Result<VerifiedEnvelope, Rejection> {
        if key.agent_id().0 != self.body.sender {
            return Err(Rejection::WrongSender);
        }
        if !key.verify(&signed_bytes(&self.envelope.body), &self.envelope.signature) {
            return Err(Rejection::BadSignature);
        }
        Ok(VerifiedEnvelope {
            sender: AgentId(self.body.sender),
            seq: self.body.seq,
            items: self.body.items,
        })
    }
}

/// Decodes an envelope that was verified before (by the reader that received it).
pub fn open_verified(bytes: &[u8]) -> std::result::Result<VerifiedEnvelope, Rejection> {
    let (_, body) = parse_unverified(bytes)?;
    Ok(VerifiedEnvelope {
        sender: AgentId(body.sender),
        seq: body.seq,
        items: body.items,
    })
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

/// If `frame` is an encoded gossip **data** message (`proto::Message` → topic `Gossip` →
/// plumtree `Gossip`), returns its content: the bytes we must verify before the gossip layer may
/// deliver or forward them. `None` for control messages.
///
/// iroh-gossip keeps these types private, so this reads their postcard layout directly
/// (`[u8; 32]` topic, variant 1, variant 0, `[u8; 32]` id, length-prefixed content). The crate is
/// pinned to an exact version, and a test builds a real data message through the proto state
/// machine and checks this against it.
pub fn gossip_data_content(frame: &[u8]) -> Option<&[u8]> {
    split_gossip_data(frame).map(|(content, _)| content)
}

/// The most hops a data message may claim. The gossip layer forwards a message with its round
/// plus one in a `u16`, which a peer could set to 65535 to overflow (a panic in builds with
/// overflow checks, found by fuzzing); no real path is anywhere near this long.
pub const MAX_GOSSIP_ROUND: u64 = 1024;

/// The delivery round (hops so far) a gossip data frame claims: `Some` for swarm scope, `None`
/// for neighbour scope and for anything that is not a data frame. Unsigned: any relay sets it.
pub fn gossip_data_round(frame: &[u8]) -> Option<u64> {
    const SCOPE_SWARM: u64 = 0;
    let (_, rest) = split_gossip_data(frame)?;
    let (scope, rest) = read_varint(rest)?;
    if scope != SCOPE_SWARM {
        return None;
    }
    read_varint(rest).map(|(round, _)| round)
}

const TOPIC_MESSAGE_GOSSIP: u64 = 1;
const PLUMTREE_GOSSIP: u64 = 0;
const PLUMTREE_IHAVE: u64 = 3;

/// The bytes after the broadcast-layer variant tag, if `frame` is a broadcast (plumtree)
/// message of variant `variant`.
fn plumtree_body(frame: &[u8], variant: u64) -> Option<&[u8]> {
    let rest = frame.get(32..)?;
    let (outer, rest) = read_varint(rest)?;
    let (inner, rest) = read_varint(rest)?;
    (outer == TOPIC_MESSAGE_GOSSIP && inner == variant).then_some(rest)
}

/// The smallest delivery round an IHave frame announces; `None` for every other frame. Layout
/// as for [`gossip_data_content`], then a varint count and per entry a `[u8; 32]` id and the
/// round (a varint). Unsigned, like the round of a data frame: only a hint.
pub fn ihave_min_round(frame: &[u8]) -> Option<u64> {
    let rest = plumtree_body(frame, PLUMTREE_IHAVE)?;
    let (count, mut rest) = read_varint(rest)?;
    let mut min: Option<u64> = None;
    for _ in 0..count {
        let (round, after) = read_varint(rest.get(32..)?)?;
        min = Some(min.map_or(round, |m| m.min(round)));
        rest = after;
    }
    min
}

/// An encoded gossip IHave on `topic` announcing payload ids with their delivery rounds, as
/// the gossip layer's lazy push writes one (layout as in [`ihave_min_round`]); rounds are
/// capped at [`MAX_GOSSIP_ROUND`]. The proto offers no way to announce payloads to one peer,
/// and the node needs one (see `overlay::node::Node::announce_recent`).
pub fn ihave_frame(topic: &[u8; 32], ihaves: &[([u8; 32], u64)]) -> Vec<u8> {
    let mut out = Vec::with_capacity(32 + 12 + ihaves.len() * 35);
    out.extend_from_slice(topic);
    put_varint(&mut out, TOPIC_MESSAGE_GOSSIP);
    put_varint(&mut out, PLUMTREE_IHAVE);
    put_varint(&mut out, ihaves.len() as u64);
    for (id, round) in ihaves {
        out.extend_from_slice(id);
        put_varint(&mut out, (*round).min(MAX_GOSSIP_ROUND));
    }
    out
}

const TOPIC_MESSAGE_SWARM: u64 = 0;
const HYPARVIEW_NEIGHBOR: u64 = 4;
const PRIORITY_HIGH: u64 = 0;
const OPTION_SOME: u8 = 1;

/// An encoded high-priority HyParView `Neighbor` request on `topic` carrying the sender's peer
/// data, as the membership layer writes one after a `ForwardJoin` walk ends (layout: topic,
/// variant 0 `Swarm`, variant 4 `Neighbor`, priority 0 `High`, `Some`, length-prefixed data).
/// The receiver adds the sender to its active view, dropping at most one random neighbour, and
/// answers with its own `Neighbor`. The proto sends one only when its active view is empty;
/// the node needs one for an agent that has some neighbours but too few, where a `Join` would
/// make up to six peers drop a neighbour each (see `overlay::node::Node::ask_to_be_neighbour`).
pub fn neighbour_request_frame(topic: &[u8; 32], peer_data: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(32 + 8 + peer_data.len());
    out.extend_from_slice(topic);
    put_varint(&mut out, TOPIC_MESSAGE_SWARM);
    put_varint(&mut out, HYPARVIEW_NEIGHBOR);
    put_varint(&mut out, PRIORITY_HIGH);
    out.push(OPTION_SOME);
    put_varint(&mut out, peer_data.len() as u64);
    out.extend_from_slice(peer_data);
    out
}

fn put_varint(out: &mut Vec<u8>, mut value: u64) {
    while value >= 0x80 {
        out.push((value as u8) | 0x80);
        value >>= 7;
    }
    out.push(value as u8);
}

/// Splits a gossip data frame into its content and the bytes after it (the delivery scope).
fn split_gossip_data(frame: &[u8]) -> Option<(&[u8], &[u8])> {
    let rest = plumtree_body(frame, PLUMTREE_GOSSIP)?;
    let rest = rest.get(32..)?;
    let (len, rest) = read_varint(rest)?;
    let len = usize::try_from(len).ok()?;
    Some((rest.get(..len)?, rest.get(len..)?))
}

fn read_varint(bytes: &[u8]) -> Option<(u64, &[u8])> {
    let mut value = 0u64;
    for (i, byte) in bytes.iter().enumerate().take(10) {
        value |= u64::from(byte & 0x7f) << (7 * i);
        if byte & 0x80 == 0 {
            return Some((value, &bytes[i + 1..]));
        }
    }
    None
}

/// postcard-encodes `value`.
pub fn encode<T: Serialize + ?Sized>(value: &T) -> Result<Vec<u8>> {
    postcard::to_stdvec(value).map_err(|e| protocol(format!("encoding failed: {e}")))
}

fn protocol(message: impl Into<String>) -> Error {
    Error::new(ErrorKind::Protocol, message)
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

    fn item(topic: &str, payload: &[u8]) -> Item {
        Item {
            topic: topic.into(),
            timestamp_ms: 1,
            payload: Bytes::copy_from_slice(payload),
        }
    }

    #[test]
    fn envelope_round_trip() {
        let key = Keypair::generate().unwrap();
        let sealed = seal(&key, 7, vec![item("a", b"one"), item("b", b"two")]).unwrap();
        let opened = open(&sealed, key.public_key()).unwrap();
        assert_eq!(opened.sender, key.public_key().agent_id());
        assert_eq!(opened.seq, 7);
        assert_eq!(opened.items, vec![item("a", b"one"), item("b", b"two")]);
    }

    #[test]
    fn claimed_sender_reads_the_sender_without_decoding() {
        let key = Keypair::generate().unwrap();
        let sealed = seal(&key, 3, vec![item("t", b"x")]).unwrap();
        assert_eq!(claimed_sender(&sealed), Some(key.public_key().agent_id()));
        assert_eq!(claimed_sender(&sealed[..20]), None);
        assert_eq!(claimed_sender(b""), None);
        assert_eq!(claimed_sender(&[0xff; 11]), None);
    }

    #[test]
    fn tampered_payload_is_a_bad_signature() {
        let key = Keypair::generate().unwrap();
        let sealed = seal(&key, 1, vec![item("t", b"hello")]).unwrap();
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
            items: vec![item("t", b"x")],
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
    fn frames_after_the_hello_say_what_they_hold() {
        assert_eq!(
            split_frame(&[0, 9, 9]),
            Some((FrameKind::Gossip, &[9u8, 9][..]))
        );
        assert_eq!(split_frame(&[1]), Some((FrameKind::Key, &[][..])));
        assert_eq!(split_frame(&[2, 0]), None);
        assert_eq!(split_frame(&[]), None);
    }

    #[test]
    fn hello_binds_role_and_connection() {
        let machine = Keypair::generate().unwrap();
        let key = Credentials::new(Keypair::generate().unwrap(), &machine).unwrap();
        let listen: SocketAddr = "127.0.0.1:5000".parse().unwrap();
        let hello = Hello::new(&key, Role::Dialer, &[1; 32], listen).unwrap();
        let sender = hello.verify(Role::Dialer, &[1; 32]).unwrap();
        assert_eq!(sender.agent_key.agent_id(), key.agent_id());
        assert_eq!(sender.machine, machine.public_key().machine_id());
        assert_eq!(hello.incarnation, key.incarnation());
        assert!(hello.verify(Role::Acceptor, &[1; 32]).is_err(), "reflected");
        assert!(
            hello.verify(Role::Dialer, &[2; 32]).is_err(),
            "other connection"
        );
        let peers: Vec<SocketAddr> = (0..10)
            .map(|i| SocketAddr::from(([127, 0, 0, 1], 6000 + i)))
            .collect();
        let hinted = hello.clone().with_peers(peers.clone());
        assert_eq!(hinted.peers, peers[..HELLO_PEERS], "at most HELLO_PEERS");
        let decoded: Hello = postcard::from_bytes(&encode(&hinted).unwrap()).unwrap();
        assert_eq!(decoded.peers, hinted.peers);
        assert!(
            decoded.verify(Role::Dialer, &[1; 32]).is_ok(),
            "hints are not signed"
        );
        let mut moved = hello.clone();
        moved.listen = "127.0.0.1:5001".parse().unwrap();
        assert!(
            moved.verify(Role::Dialer, &[1; 32]).is_err(),
            "tampered address"
        );
        // The machine claim is checked twice: the machine endorsed this agent key, and the
        // agent signed this machine id.
        let other_machine = Keypair::generate().unwrap();
        let mut claimed = hello.clone();
        claimed.machine_key = other_machine.public_key().as_bytes().to_vec();
        let err = claimed.verify(Role::Dialer, &[1; 32]).unwrap_err();
        assert!(err.message().contains("bad signature"), "{err}");
        let other = Credentials::new(Keypair::generate().unwrap(), &other_machine).unwrap();
        let mut endorsed = hello.clone();
        endorsed.machine_key = other_machine.public_key().as_bytes().to_vec();
        endorsed.endorsement = Hello::new(&other, Role::Dialer, &[1; 32], listen)
            .unwrap()
            .endorsement;
        let err = endorsed.verify(Role::Dialer, &[1; 32]).unwrap_err();
        assert!(err.message().contains("bad signature"), "{err}");
        // A hello whose endorsement names another agent key.
        let mut foreign = hello.clone();
        foreign.endorsement = Hello::new(
            &Credentials::new(Keypair::generate().unwrap(), &machine).unwrap(),
            Role::Dialer,
            &[1; 32],
            listen,
        )
        .unwrap()
        .endorsement;
        let err = foreign.verify(Role::Dialer, &[1; 32]).unwrap_err();
        assert!(err.message().contains("bad endorsement"), "{err}");
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
                topic: "x".repeat(MAX_TOPIC_LEN),
                timestamp_ms: u64::MAX,
                payload: Bytes::from(vec![0u8; MAX_PAYLOAD_LEN]),
            })
            .collect();
        assert!(seal(&key, u64::MAX, items).unwrap().len() < GOSSIP_MAX_MESSAGE_SIZE - 1024);
    }
}
