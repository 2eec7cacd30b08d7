//! What travels on a connection's streams after the hello, and what each end keeps per stream.
//!
//! * **Lanes.** Control messages (HyParView, IHave, Graft, Prune) go on the first,
//!   bidirectional stream; payloads on up to `LANES` unidirectional streams, one per publisher
//!   (`lane_of`).
//! * **Publisher keys, once per stream.** An envelope names its sender by id (32 bytes). The
//!   sender's ML-DSA-65 public key (1,952 bytes: with a 1 KiB payload, a third of the envelope)
//!   goes on the stream as a key frame just before the first envelope from that sender. Both
//!   ends keep a [`KeyRing`] per stream and update it the same way for the same frames, in
//!   stream order, so the writer knows exactly which keys the reader holds without any
//!   acknowledgement. An envelope from a sender whose key the reader does not hold is rejected
//!   like any other invalid message.
//! * Keys cross from a reader to the writers of other connections (a relay forwards what it
//!   verified) through the agent's [`KeyStore`].

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use iroh_gossip::proto;

use crate::identity::{AgentId, PublicKey};
use crate::net;
use crate::overlay::directory;
use crate::wire::{self, FrameKind, Rejection, MAX_GOSSIP_ROUND};

/// Payload streams per connection (besides the control stream).
pub(crate) const LANES: usize = 8;
/// Publisher keys each end of a stream holds; beyond that, the least recently used one is
/// dropped at both ends (and announced again if its publisher comes back). Per connection at
/// most `(1 + LANES) × KEYS_PER_STREAM` keys, about 560 KB.
pub(crate) const KEYS_PER_STREAM: usize = 32;
/// Keys the agent keeps for forwarding what it verified (about 8 MB at most).
const KEY_STORE_CAP: usize = 4096;
/// A key nobody used for this long is dropped from the store: the gossip layer forwards a
/// message within seconds of receiving it (its message cache lasts 5 s).
const KEY_IDLE: Duration = Duration::from_secs(60);

/// Which stream of a connection carries `frame` (an encoded gossip message): 0, the first
/// (bidirectional) stream, for control messages; 1..=`LANES` for payloads, by publisher.
///
/// QUIC delivers a stream in order, so a lost packet holds back everything after it on the
/// same stream until it is retransmitted. On one stream per connection, a loss in one payload
/// made the next few payloads on that link late as well (at 30 payloads/s per link and 50 ms
/// RTT, 2-4 of them), and each late payload is one the peers downstream graft from someone
/// else, after which it arrives twice. One stream per publisher keeps each publisher's
/// payloads in order (the order promise is per sender) while a loss delays only that
/// publisher's.
#[cfg(test)]
pub fn lane_of(frame: &[u8]) -> usize {
    lane_of_publisher(publisher_of(frame))
}

fn lane_of_publisher(publisher: Option<AgentId>) -> usize {
    publisher.map_or(0, |publisher| 1 + usize::from(publisher.0[0]) % LANES)
}

/// The publisher a gossip data frame's envelope names; `None` for control frames.
fn publisher_of(frame: &[u8]) -> Option<AgentId> {
    wire::gossip_data_content(frame).and_then(wire::claimed_sender)
}

/// The publisher keys one end of a stream holds, most recently used first.
#[derive(Debug)]
pub struct KeyRing<K> {
    entries: VecDeque<(AgentId, K)>,
}

impl<K> Default for KeyRing<K> {
    fn default() -> Self {
        Self {
            entries: VecDeque::with_capacity(KEYS_PER_STREAM + 1),
        }
    }
}

impl<K> KeyRing<K> {
    /// The entry for `id`, which becomes the most recently used.
    pub fn touch(&mut self, id: &AgentId) -> Option<&K> {
        let i = self.entries.iter().position(|(held, _)| held == id)?;
        let entry = self.entries.remove(i)?;
        self.entries.push_front(entry);
        self.entries.front().map(|(_, key)| key)
    }

    /// Adds `id` as the most recently used, dropping the least recently used one if full.
    pub fn insert(&mut self, id: AgentId, key: K) {
        if let Some(i) = self.entries.iter().position(|(held, _)| *held == id) {
            self.entries.remove(i);
        }
        self.entries.push_front((id, key));
        self.entries.truncate(KEYS_PER_STREAM);
    }

    /// How many keys are held.
    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether no key is held.
    #[cfg(test)]
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

/// Publisher keys the agent verified something with, for its writers to announce when they
/// forward that publisher's messages; its own key is always there.
pub struct KeyStore {
    own: (AgentId, Arc<PublicKey>),
    keys: Mutex<HashMap<AgentId, (Arc<PublicKey>, Instant)>>,
}

impl KeyStore {
    /// A store that holds `own`, the agent's own key, for good.
    pub fn new(own: PublicKey) -> Self {
        Self {
            own: (own.agent_id(), Arc::new(own)),
            keys: Mutex::new(HashMap::new()),
        }
    }

    /// Keeps `key`, the key of `id`, which just verified a message.
    pub fn remember(&self, id: AgentId, key: &Arc<PublicKey>) {
        let now = Instant::now();
        let mut keys = self.keys.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((_, used)) = keys.get_mut(&id) {
            *used = now;
            return;
        }
        if keys.len() >= KEY_STORE_CAP {
            let oldest = keys
                .iter()
                .min_by_key(|(_, (_, used))| *used)
                .map(|(id, _)| *id);
            if let Some(oldest) = oldest {
                keys.remove(&oldest);
            }
        }
        keys.insert(id, (Arc::clone(key), now));
    }

    /// The key of `id`, if held.
    pub fn get(&self, id: &AgentId) -> Option<Arc<PublicKey>> {
        if *id == self.own.0 {
            return Some(Arc::clone(&self.own.1));
        }
        let mut keys = self.keys.lock().unwrap_or_else(|e| e.into_inner());
        keys.get_mut(id).map(|(key, used)| {
            *used = Instant::now();
            Arc::clone(key)
        })
    }

    /// Drops keys unused since `now - KEY_IDLE`.
    pub fn prune(&self, now: Instant) {
        let mut keys = self.keys.lock().unwrap_or_else(|e| e.into_inner());
        keys.retain(|_, (_, used)| now.saturating_duration_since(*used) < KEY_IDLE);
    }

    /// How many keys are held besides the agent's own.
    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.keys.lock().unwrap_or_else(|e| e.into_inner()).len()
    }

    /// Whether no key is held besides the agent's own.
    #[cfg(test)]
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// A payload the reader verified.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Payload {
    /// BLAKE3 of the envelope (the gossip layer's message id).
    pub id: [u8; 32],
    /// The envelope's sender.
    pub publisher: AgentId,
    /// The envelope's topic.
    pub topic: Arc<str>,
    /// The envelope's size in bytes.
    pub len: usize,
    /// The delivery round the frame claims (unsigned), for swarm-wide data messages.
    pub round: Option<u64>,
    /// The envelope's sequence number.
    pub seq: u64,
    /// Its messages, decoded here once: the node delivers them without decoding it again.
    pub items: Vec<wire::Item>,
}

impl Payload {
    /// Whether `content` (an envelope the gossip layer passes on) is the one this was read from.
    pub fn is_of(&self, content: &[u8]) -> bool {
        content.len() == self.len
            && wire::claimed_sender(content) == Some(self.publisher)
            && wire::claimed_seq(content) == Some(self.seq)
    }
}

/// A gossip message that passed the reader's checks.
#[derive(Debug)]
pub struct Received {
    /// The swarm (gossip topic) the message belongs to.
    pub topic: [u8; 32],
    /// The decoded message.
    pub message: proto::Message<AgentId>,
    /// For a data message: its verified envelope's id and sender.
    pub payload: Option<Payload>,
    /// For an IHave: the smallest delivery round it announces (see `overlay::node::Node::ihave_hold`).
    pub ihave_round: Option<u64>,
}

/// One stream's reader: decodes each frame and verifies every envelope before the gossip layer
/// sees it.
#[derive(Debug, Default)]
pub struct StreamReader {
    keys: KeyRing<Arc<PublicKey>>,
}

impl StreamReader {
    /// Reads the next frame of the stream: `Ok(None)` for a key frame, which the reader keeps
    /// for the envelopes after it; the message for a gossip frame; or why the frame is rejected.
    /// Keys that verify an envelope go into `store`.
    pub(crate) fn read(
        &mut self,
        frame: &[u8],
        store: &KeyStore,
    ) -> Result<Option<Incoming>, Rejection> {
        let (kind, body) = wire::split_frame(frame).ok_or(Rejection::Malformed)?;
        match kind {
            FrameKind::Key => {
                let key = PublicKey::from_bytes(body).map_err(|_| Rejection::Malformed)?;
                self.keys.insert(key.agent_id(), Arc::new(key));
                return Ok(None);
            }
            FrameKind::Directory => return decode_directory(body).map(Some),
            // Checked by `presence`, off the reader: a card costs a signature check.
            FrameKind::Card => return Ok(Some(Incoming::Card(Bytes::copy_from_slice(body)))),
            // Names no sender and carries no signature: the node takes it from the link's peer.
            // It touches no key ring (the writer's rings stay the same).
            FrameKind::Origin => {
                return wire::parse_origin(body).map(|o| Some(Incoming::Origin(o)))
            }
            FrameKind::Gossip => {}
        }
        decode_gossip(body, |publisher, _, envelope| {
            // The writer touched this key for this frame too (every frame an honest writer
            // sends gets this far), so both rings stay the same.
            let key = Arc::clone(self.keys.touch(&publisher).ok_or(Rejection::WrongSender)?);
            envelope.check(&key)?;
            store.remember(publisher, &key);
            Ok(())
        })
        .map(|received| Some(Incoming::Gossip(received)))
    }
}

/// What a reader passes on: a gossip message, or a directory message.
#[derive(Debug)]
#[allow(clippy::large_enum_variant)] // gossip frames are the hot path: no allocation per frame
pub(crate) enum Incoming {
    Gossip(Received),
    Directory(directory::Message),
    /// A signed agent card, unchecked.
    Card(Bytes),
    /// A batch the connection's peer published, unsigned (see `wire::Origin`).
    Origin(wire::Origin),
}

/// Decodes a directory frame's body.
pub(crate) fn decode_directory(body: &[u8]) -> Result<Incoming, Rejection> {
    postcard::from_bytes(body)
        .map(Incoming::Directory)
        .map_err(|_| Rejection::Malformed)
}

/// Decodes an encoded gossip message; a data message's envelope must pass `verify` (given its
/// sender, its id and the unverified envelope: check its signature) first.
pub(crate) fn decode_gossip(
    body: &[u8],
    verify: impl FnOnce(AgentId, &[u8; 32], &wire::Unverified) -> Result<(), Rejection>,
) -> Result<Received, Rejection> {
    let payload = match wire::gossip_data_content(body) {
        None => None,
        Some(content) => {
            let round = wire::gossip_data_round(body);
            if round.is_some_and(|round| round > MAX_GOSSIP_ROUND) {
                return Err(Rejection::Malformed);
            }
            let envelope = wire::parse(content)?;
            // A topic's envelopes travel in its own swarm only: one in another swarm would
            // reach agents that never asked for its topic.
            if body.get(..32) != Some(&wire::topic_swarm(envelope.topic())[..]) {
                return Err(Rejection::Malformed);
            }
            let publisher = envelope.sender();
            let topic = Arc::from(envelope.topic());
            let id = *blake3::hash(content).as_bytes();
            verify(publisher, &id, &envelope)?;
            let wire::VerifiedEnvelope { seq, items, .. } = envelope.checked();
            Some(Payload {
                id,
                publisher,
                topic,
                len: content.len(),
                round,
                seq,
                items,
            })
        }
    };
    let message =
        postcard::from_bytes::<proto::Message<AgentId>>(body).map_err(|_| Rejection::Malformed)?;
    // Only control frames can be IHaves.
    let ihave_round = match payload {
        None => wire::ihave_min_round(body),
        Some(_) => None,
    };
    let topic = body
        .get(..32)
        .and_then(|topic| topic.try_into().ok())
        .ok_or(Rejection::Malformed)?;
    Ok(Received {
        topic,
        message,
        payload,
        ihave_round,
    })
}

/// One connection's writer: which stream each frame goes on, and which keys each stream's
/// reader holds.
#[derive(Debug)]
pub struct ConnectionWriter {
    /// One per stream, mirroring the reader's.
    keys: Vec<KeyRing<()>>,
}

impl Default for ConnectionWriter {
    fn default() -> Self {
        Self {
            keys: (0..=LANES).map(|_| KeyRing::default()).collect(),
        }
    }
}

impl ConnectionWriter {
    /// Appends `frame` (an encoded gossip message) to `streams[lane_of(frame)]`, after its
    /// publisher's key if that stream's reader does not hold it yet. Returns false, and appends
    /// nothing, if the key is not in `store` any more (the frame cannot be verified, so it is
    /// not sent).
    pub fn put(&mut self, streams: &mut [BytesMut], frame: &[u8], store: &KeyStore) -> bool {
        let publisher = publisher_of(frame);
        let lane = lane_of_publisher(publisher);
        if let Some(publisher) = publisher {
            let keys = &mut self.keys[lane];
            if keys.touch(&publisher).is_none() {
                let Some(key) = store.get(&publisher) else {
                    return false;
                };
                net::put_frame_of(&mut streams[lane], FrameKind::Key, key.as_bytes());
                keys.insert(publisher, ());
            }
        }
        net::put_frame_of(&mut streams[lane], FrameKind::Gossip, frame);
        true
    }

    /// Appends an origin frame's body (a batch this agent, `store`'s own, published) to the lane
    /// this agent's own envelopes take, so that it arrives before the envelope of the same
    /// batch, and after the one before.
    pub fn put_origin(&mut self, streams: &mut [BytesMut], body: &[u8], store: &KeyStore) {
        let lane = lane_of_publisher(Some(store.own.0));
        net::put_frame_of(&mut streams[lane], FrameKind::Origin, body);
    }

    /// Appends a signed card to the control stream.
    pub fn put_card(&mut self, streams: &mut [BytesMut], card: &[u8]) {
        net::put_frame_of(&mut streams[0], FrameKind::Card, card);
    }

    /// Appends a directory message's body to the control stream.
    pub fn put_directory(&mut self, streams: &mut [BytesMut], body: &[u8]) {
        net::put_frame_of(&mut streams[0], FrameKind::Directory, body);
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use bytes::{Buf, Bytes};

    use super::*;
    use crate::identity::Keypair;
    use crate::overlay::node::testing::{data_frame, joined_pair, ProtoState, TEST_TOPIC};

    fn gossip(incoming: Incoming) -> Received {
        match incoming {
            Incoming::Gossip(received) => received,
            other => panic!("not a gossip message: {other:?}"),
        }
    }

    fn envelope(publisher: &Keypair, seq: u64) -> Bytes {
        let items = vec![wire::Item {
            timestamp_ms: 1,
            payload: Bytes::from_static(b"x"),
        }];
        wire::seal(publisher, seq, TEST_TOPIC, items).unwrap()
    }

    /// Splits one stream's bytes into its frames.
    fn frames_of(mut stream: &[u8]) -> Vec<Vec<u8>> {
        let mut frames = Vec::new();
        while stream.has_remaining() {
            let len = stream.get_u32() as usize;
            frames.push(stream[..len].to_vec());
            stream.advance(len);
        }
        frames
    }

    /// A relay that verified `publishers`' messages, writing `sends` (indexes into
    /// `publishers`) to one connection; returns each stream's bytes.
    fn write(
        pair: &mut (ProtoState, ProtoState),
        publishers: &[Keypair],
        sends: &[usize],
    ) -> Vec<BytesMut> {
        let relay = KeyStore::new(Keypair::generate().unwrap().public_key().clone());
        for publisher in publishers {
            let key = publisher.public_key();
            relay.remember(key.agent_id(), &Arc::new(key.clone()));
        }
        let mut writer = ConnectionWriter::default();
        let mut streams: Vec<BytesMut> = (0..=LANES).map(|_| BytesMut::new()).collect();
        for (seq, &i) in sends.iter().enumerate() {
            let frame = data_frame(
                &mut pair.0,
                &mut pair.1,
                envelope(&publishers[i], seq as u64),
            );
            assert!(writer.put(&mut streams, &frame, &relay));
        }
        streams
    }

    /// Reads every stream as the receiving end does; returns the publishers of the verified
    /// payloads, in order per stream, and how many key frames there were.
    fn read(streams: &[BytesMut]) -> (Vec<AgentId>, usize) {
        let store = KeyStore::new(Keypair::generate().unwrap().public_key().clone());
        let (mut publishers, mut keys) = (Vec::new(), 0);
        for stream in streams {
            let mut reader = StreamReader::default();
            for frame in frames_of(stream) {
                match reader.read(&frame, &store).unwrap() {
                    None => keys += 1,
                    Some(received) => publishers.push(gossip(received).payload.unwrap().publisher),
                }
            }
        }
        (publishers, keys)
    }

    /// `n` publishers whose payloads all go on lane 1.
    fn publishers_on_one_lane(n: usize) -> Vec<Keypair> {
        std::iter::repeat_with(|| Keypair::generate().unwrap())
            .filter(|key| lane_of_publisher(Some(key.public_key().agent_id())) == 1)
            .take(n)
            .collect()
    }

    #[test]
    fn payloads_go_on_their_publishers_lane_and_control_on_the_first_stream() {
        let (mut a, mut b, control) = joined_pair();
        for frame in control {
            assert_eq!(lane_of(&frame), 0, "control");
        }
        let mut lanes = HashSet::new();
        for _ in 0..32 {
            let publisher = Keypair::generate().unwrap();
            let expected = 1 + usize::from(publisher.public_key().agent_id().0[0]) % LANES;
            for seq in 1..=2 {
                let frame = data_frame(&mut a, &mut b, envelope(&publisher, seq));
                assert_eq!(lane_of(&frame), expected, "one lane per publisher");
            }
            lanes.insert(expected);
        }
        assert!(lanes.len() > 1, "publishers spread over lanes");
    }

    #[test]
    fn an_origin_frame_goes_on_the_publishers_own_lane_between_its_envelopes() {
        let (mut a, mut b, _) = joined_pair();
        let publisher = Keypair::generate().unwrap();
        let me = publisher.public_key().agent_id();
        let store = KeyStore::new(publisher.public_key().clone());
        let mut writer = ConnectionWriter::default();
        let mut streams: Vec<BytesMut> = (0..=LANES).map(|_| BytesMut::new()).collect();
        let items = vec![wire::Item {
            timestamp_ms: 1,
            payload: Bytes::from_static(b"x"),
        }];
        let origin = wire::encode_origin(TEST_TOPIC, 2, Some(1), &items).unwrap();
        assert!(writer.put(
            &mut streams,
            &data_frame(&mut a, &mut b, envelope(&publisher, 1)),
            &store
        ));
        writer.put_origin(&mut streams, &origin, &store);
        assert!(writer.put(
            &mut streams,
            &data_frame(&mut a, &mut b, envelope(&publisher, 2)),
            &store
        ));
        let lane = lane_of_publisher(Some(me));
        for (i, stream) in streams.iter().enumerate() {
            assert_eq!(stream.is_empty(), i != lane, "stream {i}");
        }
        // Key, envelope 1, origin 2, envelope 2: the origin touches no key ring at either end.
        let mut reader = StreamReader::default();
        let read: Vec<_> = frames_of(&streams[lane])
            .iter()
            .map(|frame| reader.read(frame, &store).unwrap())
            .collect();
        assert_eq!(read.len(), 4);
        assert!(read[0].is_none());
        assert!(matches!(&read[2], Some(Incoming::Origin(o)) if o.seq == 2 && o.prev == Some(1)));
        for i in [1, 3] {
            assert!(matches!(&read[i], Some(Incoming::Gossip(r)) if r.payload.is_some()));
        }
        // A malformed origin is a rejection like any invalid frame.
        let mut bad = BytesMut::new();
        net::put_frame_of(&mut bad, FrameKind::Origin, &origin[..origin.len() - 1]);
        assert_eq!(
            reader.read(&frames_of(&bad)[0], &store).unwrap_err(),
            Rejection::Malformed
        );
    }

    #[test]
    fn each_key_crosses_a_stream_once_while_its_reader_holds_it() {
        let (a, b, _) = joined_pair();
        let mut pair = (a, b);
        let publishers = publishers_on_one_lane(10);
        let sends: Vec<usize> = (0..5).flat_map(|_| 0..10).collect();
        let streams = write(&mut pair, &publishers, &sends);
        let (got, keys) = read(&streams);
        let expected: Vec<_> = sends
            .iter()
            .map(|&i| publishers[i].public_key().agent_id())
            .collect();
        assert_eq!(got, expected, "every payload verified, in order");
        assert_eq!(keys, 10, "one key frame per publisher");
        let sent: usize = streams.iter().map(BytesMut::len).sum();
        assert!(
            sent < 50 * 4000 + 10 * 2000,
            "envelopes carry no key ({sent} bytes)"
        );
    }

    #[test]
    fn a_key_dropped_at_both_ends_is_announced_again() {
        let (a, b, _) = joined_pair();
        let mut pair = (a, b);
        // More publishers than a stream holds keys for, round robin: the least recently used
        // key is always the one needed next, so every payload needs its key again.
        let n = KEYS_PER_STREAM + 4;
        let publishers = publishers_on_one_lane(n);
        let sends: Vec<usize> = (0..2).flat_map(|_| 0..n).collect();
        // Then 0 again (dropped by now), and 1, 2, 3 each after a payload of 0: 0 stays held.
        let sends: Vec<usize> = sends.into_iter().chain([0, 1, 0, 2, 0, 3]).collect();
        let streams = write(&mut pair, &publishers, &sends);
        let (got, keys) = read(&streams);
        assert_eq!(got.len(), sends.len(), "every payload verified");
        assert_eq!(keys, 2 * n + 4, "0, 1, 2 and 3 come back once each");
    }

    #[test]
    fn a_reader_rejects_what_it_holds_no_key_for() {
        let (mut a, mut b, control) = joined_pair();
        let store = KeyStore::new(Keypair::generate().unwrap().public_key().clone());
        let publisher = Keypair::generate().unwrap();
        let other = Keypair::generate().unwrap();
        let tagged = |kind: FrameKind, body: &[u8]| [&[kind as u8][..], body].concat();
        let mut reader = StreamReader::default();
        for frame in &control {
            let received = reader.read(&tagged(FrameKind::Gossip, frame), &store);
            assert!(matches!(received, Ok(Some(Incoming::Gossip(r))) if r.payload.is_none()));
        }
        let data = data_frame(&mut a, &mut b, envelope(&publisher, 1));
        let data = tagged(FrameKind::Gossip, &data);
        // Untagged, unknown kind, a key of the wrong length.
        for bad in [
            &data[1..],
            &[7u8, 0, 0][..],
            &tagged(FrameKind::Key, &[1; 100]),
        ] {
            assert_eq!(reader.read(bad, &store).unwrap_err(), Rejection::Malformed);
        }
        // No key announced, or another publisher's only.
        assert_eq!(
            reader.read(&data, &store).unwrap_err(),
            Rejection::WrongSender
        );
        let announce = |key: &Keypair| tagged(FrameKind::Key, key.public_key().as_bytes());
        assert!(reader.read(&announce(&other), &store).unwrap().is_none());
        assert_eq!(
            reader.read(&data, &store).unwrap_err(),
            Rejection::WrongSender
        );
        assert!(store.is_empty(), "no key verified anything yet");
        // With the key: verified, and the key kept for forwarding.
        assert!(reader
            .read(&announce(&publisher), &store)
            .unwrap()
            .is_none());
        let received = gossip(reader.read(&data, &store).unwrap().unwrap());
        assert_eq!(
            received.payload.map(|p| p.publisher),
            Some(publisher.public_key().agent_id())
        );
        assert_eq!(store.len(), 1);
        assert!(store.get(&publisher.public_key().agent_id()).is_some());
        assert!(store.get(&other.public_key().agent_id()).is_none());
    }

    fn id(n: u8) -> AgentId {
        AgentId([n; 32])
    }

    #[test]
    fn a_ring_drops_the_least_recently_used() {
        let mut ring = KeyRing::default();
        for n in 0..KEYS_PER_STREAM as u8 {
            ring.insert(id(n), n);
        }
        assert_eq!(ring.touch(&id(0)), Some(&0), "0 is now the most recent");
        ring.insert(id(200), 200);
        assert_eq!(ring.len(), KEYS_PER_STREAM);
        assert_eq!(ring.touch(&id(1)), None, "1 was the least recently used");
        assert_eq!(ring.touch(&id(0)), Some(&0));
        // Inserting a held id moves it, without a second entry.
        ring.insert(id(2), 22);
        assert_eq!(ring.len(), KEYS_PER_STREAM);
        assert_eq!(ring.touch(&id(2)), Some(&22));
    }

    #[test]
    fn the_store_keeps_its_own_key_and_forgets_idle_ones() {
        let own = Keypair::generate().unwrap();
        let other = Keypair::generate().unwrap();
        let store = KeyStore::new(own.public_key().clone());
        let own_id = own.public_key().agent_id();
        let other_id = other.public_key().agent_id();
        assert!(store.get(&own_id).is_some());
        assert!(store.get(&other_id).is_none());
        store.remember(other_id, &Arc::new(other.public_key().clone()));
        assert_eq!(store.get(&other_id).as_deref(), Some(other.public_key()));
        store.prune(Instant::now() + KEY_IDLE);
        assert!(store.get(&other_id).is_none());
        assert!(store.get(&own_id).is_some());
        assert!(store.is_empty());
    }
}
