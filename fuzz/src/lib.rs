//! What the x0x fuzz targets share: fixed keys, the connection the `frame` target drives the
//! real overlay node through (with its checks), and the seed inputs of every target
//! ([`seeds`], written out by `src/bin/make_corpus.rs`).
//!
//! Private x0x items come from `x0x::fuzzing`, which x0x compiles only for fuzzing (see
//! fuzz/README.md); nothing of x0x is copied here.

use std::collections::HashSet;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::OnceLock;
use std::time::Duration;

use bytes::Bytes;
use iroh_gossip::proto::{self, Command, InEvent, OutEvent, PeerData};
use rand::rngs::StdRng;
use rand::SeedableRng;
use tokio::time::Instant;
use x0x::fuzzing::{self, proto_config, NodeHarness};
use x0x::identity::KEYPAIR_LEN;
use x0x::tasklist::{TaskId, TaskListState};
use x0x::testing::network_topic;
use x0x::testing::streams::Received;
use x0x::testing::wire::{
    self, Credentials, FrameKind, Hello, Item, Rejection, Role, MAX_FRAME_LEN,
};
use x0x::{AgentId, Keypair, PublicKey};

/// Every fuzz target, in the order `scripts/fuzz.sh` runs them.
pub const TARGETS: &[&str] = &[
    "frame",
    "envelope",
    "hello",
    "tasklist_state",
    "keypair",
    "c_abi",
    "replay",
];

/// The TLS exporter secret every `hello` input is checked against.
pub const EXPORTER: [u8; 32] = [0x5a; 32];

/// SHA-256 of `bytes`.
pub fn sha256(bytes: &[u8]) -> [u8; 32] {
    let mut out = [0u8; 32];
    out.copy_from_slice(aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, bytes).as_ref());
    out
}

/// The 72-byte key format with a correct checksum over `head` (magic, version, algorithm,
/// reserved, seed): lets a target reach the checks behind the checksum.
pub fn key_bytes(head: &[u8; 40]) -> [u8; KEYPAIR_LEN] {
    let mut out = [0u8; KEYPAIR_LEN];
    out[..40].copy_from_slice(head);
    out[40..].copy_from_slice(&sha256(head));
    out
}

/// The header of a valid version-1 ML-DSA-65 key followed by `seed`.
pub fn key_head(seed: [u8; 32]) -> [u8; 40] {
    let mut head = [0u8; 40];
    head[..8].copy_from_slice(b"x0xk\x01\x01\x00\x00");
    head[8..].copy_from_slice(&seed);
    head
}

/// A fixed key pair (the same for the same `n` in every run).
pub fn keypair(n: u8) -> Keypair {
    Keypair::from_bytes(&key_bytes(&key_head([n; 32]))).expect("a well-formed key")
}

/// The publishers of the seed envelopes: the public keys of key pairs 3 and 4, with their ids
/// (derived once: every `envelope` and `frame` input looks them up).
fn publishers() -> &'static [(AgentId, PublicKey); 2] {
    static PUBLISHERS: OnceLock<[(AgentId, PublicKey); 2]> = OnceLock::new();
    PUBLISHERS.get_or_init(|| {
        [3, 4].map(|n| {
            let key = keypair(n).public_key().clone();
            (key.agent_id(), key)
        })
    })
}

/// The key of `sender` if it is one of the seed publishers.
pub fn publisher_key(sender: &AgentId) -> Option<&'static PublicKey> {
    publishers()
        .iter()
        .find(|(id, _)| id == sender)
        .map(|(_, key)| key)
}

/// Signs `body` (the bytes of an `EnvelopeBody`) as `wire::seal` would and encodes the
/// `SignedEnvelope`; lets a target reach what lies behind a valid signature.
pub fn sign_envelope(key: &Keypair, body: &[u8]) -> Vec<u8> {
    let mut signed = wire::MESSAGE_DOMAIN.to_vec();
    signed.extend_from_slice(body);
    let envelope = wire::SignedEnvelope {
        body: Bytes::copy_from_slice(body),
        signature: key.sign(&signed).expect("signing works"),
    };
    wire::encode(&envelope).expect("encodes")
}

// ---------------------------------------------------------------------------------------------
// The connection of the `frame` target.

/// Splits a received byte stream into frames exactly as `net::read_frame_checked` reads them:
/// a big-endian u32 length, then that many bytes; a length over [`MAX_FRAME_LEN`] ends the
/// connection (`Oversized`), and so does a short read (end of stream).
pub fn frames(mut stream: &[u8]) -> Vec<&[u8]> {
    let mut out = Vec::new();
    while stream.len() >= 4 {
        let len = u32::from_be_bytes(stream[..4].try_into().expect("4 bytes")) as usize;
        if len > MAX_FRAME_LEN {
            break; // Oversized: the reader closes the connection.
        }
        let Some(frame) = stream.get(4..4 + len) else {
            break; // The stream ended inside the frame.
        };
        out.push(frame);
        stream = &stream[4 + len..];
    }
    out
}

/// Length-prefixes `frames` into one stream (the inverse of [`frames`]).
pub fn stream(frames: &[Vec<u8>]) -> Vec<u8> {
    let mut out = Vec::new();
    for frame in frames {
        out.extend_from_slice(&(frame.len() as u32).to_be_bytes());
        out.extend_from_slice(frame);
    }
    out
}

/// `messages` (encoded gossip messages) as a writer puts them on one stream: each after its
/// kind, and a data message after its publisher's key the first time that publisher appears.
pub fn gossip_stream(messages: &[Vec<u8>]) -> Vec<u8> {
    let mut announced = HashSet::new();
    let mut frames = Vec::new();
    for message in messages {
        let publisher = wire::gossip_data_content(message).and_then(wire::claimed_sender);
        if let Some(key) = publisher.as_ref().and_then(publisher_key) {
            if announced.insert(key.agent_id()) {
                frames.push([&[FrameKind::Key as u8][..], key.as_bytes()].concat());
            }
        }
        frames.push([&[FrameKind::Gossip as u8][..], message].concat());
    }
    stream(&frames)
}

/// The machine id of the node under test and of the peer whose stream is fuzzed.
pub const NODE: AgentId = AgentId([1; 32]);
/// See [`NODE`].
pub const PEER: AgentId = AgentId([2; 32]);
/// Where [`NODE`] and [`PEER`] listen.
const NODE_ADDR: SocketAddr = SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 5483);
const PEER_ADDR: SocketAddr = SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 5484);
/// The topics of the seed envelopes' items: the node under test subscribes to them.
const SEED_TOPICS: [&str; 2] = ["chat", "x0x/tasklist/00"];
/// Simulated time between two frames of the stream, and the timer firings allowed meanwhile.
const FRAME_GAP: Duration = Duration::from_millis(5);
const TIMERS_PER_FRAME: usize = 4;
/// Timer firings after the last frame, while the connection is still open (what the node sends
/// on its own: IHaves, shuffles, repair), and after it ends.
const TIMERS_OPEN: usize = 8;
const TIMERS_AFTER: usize = 4;

fn peer_data(port: u16) -> PeerData {
    PeerData::new(wire::encode(&SocketAddr::from(([127, 0, 0, 1], port))).expect("encodes"))
}

/// A proto state machine as an agent runs it (`overlay::node::Node`): its own config, joined to the
/// network topic. Seeded, so a crash reproduces. Makes the seeds' gossip exchange.
pub fn proto_state(me: AgentId, port: u16) -> proto::State<AgentId, StdRng> {
    proto::State::new(
        me,
        peer_data(port),
        proto_config(),
        StdRng::seed_from_u64(u64::from(me.0[0])),
    )
}

/// Items of verified envelopes: (sender, topic, timestamp, payload).
type Deliverable = HashSet<(AgentId, String, u64, Bytes)>;

/// One agent on one connection: the real overlay node (`overlay::node::Node`, through
/// `x0x::fuzzing::NodeHarness`: the connection's `StreamReader`, then the node with its links,
/// duplicate filter, IHave holds and recent announcements, its timers fired), with the checks
/// that must hold.
pub struct Node {
    harness: NodeHarness,
    /// The items of the envelopes the reader verified: all that may be delivered.
    deliverable: Deliverable,
    /// Frames the node sent (counted, not kept).
    pub sent: usize,
    /// Messages delivered to the application (the subscriptions to [`SEED_TOPICS`]).
    pub delivered: usize,
}

impl Node {
    /// A node that has joined the network topic (`join_network`), as every agent does, and is
    /// connected to `PEER`:
    /// * `dialed = false`: the first node of a network, which `PEER` dialed (peers join
    ///   through it);
    /// * `dialed = true`: it dialed `PEER` as its bootstrap peer and sent it a join, so the
    ///   stream holds the bootstrap peer's answers.
    pub fn new(dialed: bool) -> Self {
        static KEY: OnceLock<PublicKey> = OnceLock::new();
        let key = KEY.get_or_init(|| keypair(1).public_key().clone()).clone();
        let mut harness = NodeHarness::new(NODE, key, NODE_ADDR, 1).expect("a node");
        for topic in SEED_TOPICS {
            harness.subscribe(topic).expect("a valid topic");
        }
        harness.join(if dialed { &[PEER_ADDR][..] } else { &[] });
        harness.connected(PEER, PEER_ADDR, dialed);
        let mut node = Self {
            harness,
            deliverable: HashSet::new(),
            sent: 0,
            delivered: 0,
        };
        node.check_output();
        node
    }

    /// Feeds the node everything `PEER` sent on one connection (the bytes after the hellos),
    /// firing the timers due meanwhile, then some more timers, then the connection's end, then
    /// the timers after it.
    pub fn connection(&mut self, bytes: &[u8]) {
        let mut open = true;
        for frame in frames(bytes) {
            // An origin frame is the link peer's own batch, unsigned: its items may be delivered,
            // as `PEER`'s and nobody else's.
            if let Some((FrameKind::Origin, body)) = wire::split_frame(frame) {
                if let Ok(origin) = wire::parse_origin(body) {
                    for item in origin.items {
                        let topic = origin.topic.clone();
                        self.deliverable
                            .insert((PEER, topic, item.timestamp_ms, item.payload));
                    }
                }
            }
            let deliverable = &mut self.deliverable;
            open = self
                .harness
                .frame(frame, FRAME_GAP, TIMERS_PER_FRAME, |received| {
                    check_received(frame, received, deliverable);
                });
            self.check_output();
            if !open {
                break; // Closed: the reader stops.
            }
        }
        if open {
            self.harness.run_timers(TIMERS_OPEN);
            self.check_output();
        }
        self.harness.end();
        self.harness.run_timers(TIMERS_AFTER);
        self.check_output();
    }

    /// What the node sent and delivered since the last call.
    fn check_output(&mut self) {
        for frame in self.harness.take_sent() {
            // On the wire: a kind byte, then the message (together at most the limit).
            assert!(
                frame.len() < MAX_FRAME_LEN,
                "the node sends a {}-byte frame, over the frame limit",
                frame.len()
            );
            postcard::from_bytes::<proto::Message<AgentId>>(&frame)
                .expect("a frame the node sends decodes");
            self.sent += 1;
        }
        for message in self.harness.take_delivered() {
            let item = (
                message.sender,
                message.topic.to_string(),
                message.timestamp_ms,
                message.payload,
            );
            assert!(
                self.deliverable.contains(&item),
                "the node delivered an item of no envelope the reader verified (nor of an origin \
                 frame from the connection's peer)"
            );
            self.delivered += 1;
        }
    }
}

/// The checks on a gossip message the reader accepted (`frame`: its kind byte and body), before
/// the node gets it; the items of a verified envelope go into `deliverable`.
fn check_received(frame: &[u8], received: &Received, deliverable: &mut Deliverable) {
    let frame = &frame[1..]; // after the kind
    let content = wire::gossip_data_content(frame);
    let message = &received.message;
    // The property the reader relies on: a frame that decodes to a data message is one
    // `gossip_data_content` recognised, so its content was verified. If this fails, unverified
    // bytes reach the gossip layer, which would deliver and forward them.
    if matches!(message.kind(), proto::state::MessageKind::Data) {
        assert!(
            content.is_some() && received.payload.is_some(),
            "a frame decodes to a data message, but the reader did not verify its content"
        );
    }
    if let (Some(content), Some(payload)) = (content, &received.payload) {
        assert_eq!(
            Some(payload.publisher),
            wire::claimed_sender(content),
            "the verified publisher is not the one the envelope names"
        );
        // Verified content must decode again (the node opens it so to deliver it).
        let envelope = wire::open_verified(content).expect("verified content decodes");
        assert_eq!(envelope.sender, payload.publisher, "open_verified differs");
        assert_eq!(*envelope.topic, *payload.topic, "open_verified differs");
        assert_eq!(
            content.len(),
            payload.len,
            "the payload's length is not the content's"
        );
        for item in envelope.items {
            let topic = envelope.topic.clone();
            deliverable.insert((envelope.sender, topic, item.timestamp_ms, item.payload));
        }
    }
    // Whatever decodes must encode again (the node re-encodes messages it forwards), to bytes
    // that decode to a message whose data content is the same.
    let again = wire::encode(message).expect("a decoded message encodes again");
    let decoded: proto::Message<AgentId> =
        postcard::from_bytes(&again).expect("a re-encoded message decodes");
    assert_eq!(
        wire::gossip_data_content(&again),
        content,
        "re-encoding changed the data content"
    );
    assert_eq!(
        wire::encode(&decoded).expect("encodes"),
        again,
        "encoding is not stable"
    );
    // The node holds IHaves by the round the reader finds in them; the layout parser must agree
    // with the decoder on what is an IHave.
    assert_eq!(
        received.ihave_round.is_some(),
        wire::ihave_min_round(&again).is_some(),
        "re-encoding changed whether the frame is an IHave with a round"
    );
}

// ---------------------------------------------------------------------------------------------
// Seeds.

fn item(payload: &[u8]) -> Item {
    Item {
        timestamp_ms: 1_700_000_000_000,
        payload: Bytes::copy_from_slice(payload),
    }
}

/// A valid sealed envelope from key `n`.
pub fn sealed(n: u8, seq: u64, topic: &str, items: Vec<Item>) -> Vec<u8> {
    wire::seal(&keypair(n), seq, topic, items)
        .expect("seals")
        .to_vec()
}

fn body(key: &Keypair, version: u8, seq: u64, topic: &str, items: Vec<Item>) -> Vec<u8> {
    wire::encode(&wire::EnvelopeBody {
        version,
        sender: key.public_key().agent_id().0,
        seq,
        topic: topic.into(),
        items,
    })
    .expect("encodes")
}

/// Two proto state machines wired back to back (as `gossip::tests::pump`); returns the frames
/// each one sent, `(a's, b's)`.
fn pump(
    a: &mut proto::State<AgentId, StdRng>,
    b: &mut proto::State<AgentId, StdRng>,
    first: InEvent<AgentId>,
) -> (Vec<Vec<u8>>, Vec<Vec<u8>>) {
    let (id_a, id_b) = (*a.me(), *b.me());
    let now = Instant::now();
    let (mut sent_a, mut sent_b) = (Vec::new(), Vec::new());
    let mut inbox = vec![(true, first)];
    let mut steps = 0;
    while let Some((to_a, event)) = inbox.pop() {
        steps += 1;
        if steps > 1000 {
            break;
        }
        let state = if to_a { &mut *a } else { &mut *b };
        for out in state.handle(event, now, None).collect::<Vec<_>>() {
            match out {
                OutEvent::SendMessage(_, message) => {
                    let frame = wire::encode(&message).expect("encodes");
                    if to_a {
                        sent_a.push(frame.clone());
                    } else {
                        sent_b.push(frame.clone());
                    }
                    let decoded = postcard::from_bytes(&frame).expect("decodes");
                    let from = if to_a { id_a } else { id_b };
                    inbox.push((!to_a, InEvent::RecvMessage(from, decoded)));
                }
                // Fire timers at once: they produce the lazy-push (IHave) and shuffle traffic.
                OutEvent::ScheduleTimer(_, timer) if steps < 200 => {
                    inbox.push((to_a, InEvent::TimerExpired(timer)));
                }
                _ => {}
            }
        }
    }
    (sent_a, sent_b)
}

/// Frames of a real exchange: `PEER` joins through `NODE`, broadcasts envelopes, and leaves.
fn gossip_frames() -> (Vec<Vec<u8>>, Vec<Vec<u8>>) {
    let mut node = proto_state(NODE, 5483);
    let mut peer = proto_state(PEER, 5484);
    // The membership swarm, and the swarm of each seed topic (envelopes travel in their own).
    let swarm = |topic: &str| proto::TopicId::from_bytes(wire::topic_swarm(topic));
    let (mut from_peer, mut from_node) = (Vec::new(), Vec::new());
    for topic in [
        network_topic(),
        swarm(SEED_TOPICS[0]),
        swarm(SEED_TOPICS[1]),
    ] {
        let _: Vec<_> = node
            .handle(
                InEvent::Command(topic, Command::Join(vec![])),
                Instant::now(),
                None,
            )
            .collect();
        let (a, b) = pump(
            &mut peer,
            &mut node,
            InEvent::Command(topic, Command::Join(vec![NODE])),
        );
        from_peer.extend(a);
        from_node.extend(b);
    }
    let contents = [
        (
            SEED_TOPICS[0],
            sealed(3, 1, SEED_TOPICS[0], vec![item(b"hello")]),
        ),
        (
            SEED_TOPICS[0],
            sealed(3, 2, SEED_TOPICS[0], vec![item(b"two"), item(b"three")]),
        ),
        (
            SEED_TOPICS[1],
            sealed(3, 3, SEED_TOPICS[1], vec![item(b"")]),
        ),
        (SEED_TOPICS[0], sealed(4, u64::MAX, SEED_TOPICS[0], vec![])),
    ];
    for (i, (topic, content)) in contents.into_iter().enumerate() {
        let scope = if i == 1 {
            proto::Scope::Neighbors
        } else {
            proto::Scope::Swarm
        };
        let topic = swarm(topic);
        let command = Command::Broadcast(Bytes::from(content), scope);
        let (a, b) = pump(&mut peer, &mut node, InEvent::Command(topic, command));
        from_peer.extend(a);
        from_node.extend(b);
    }
    let quit = InEvent::Command(network_topic(), Command::Quit);
    let (a, b) = pump(&mut peer, &mut node, quit);
    from_peer.extend(a);
    from_node.extend(b);
    (from_peer, from_node)
}

fn hello_seeds() -> Vec<Vec<u8>> {
    let key = Credentials::new(keypair(5), &keypair(6)).expect("endorses");
    let mut out = Vec::new();
    for (role, listen) in [
        (Role::Dialer, "127.0.0.1:5483"),
        (Role::Acceptor, "0.0.0.0:9000"),
        (Role::Dialer, "[::1]:5483"),
        (Role::Acceptor, "[fe80::1%2]:1"),
    ] {
        let listen: SocketAddr = listen.parse().expect("an address");
        let hello = Hello::new(&key, role, &EXPORTER, listen).expect("signs");
        out.push(wire::encode(&hello).expect("encodes"));
        let hinted = hello.with_peers(vec![listen, "10.0.0.2:7".parse().expect("an address")]);
        out.push(wire::encode(&hinted).expect("encodes"));
    }
    // Signed over another connection's secret, and a short key.
    let other = Hello::new(&key, Role::Dialer, &[0; 32], "10.0.0.1:1".parse().unwrap()).unwrap();
    out.push(wire::encode(&other).unwrap());
    let short = Hello {
        agent_key: vec![1; 16],
        machine_key: vec![3; 16],
        endorsement: vec![4; 16],
        listen: "127.0.0.1:1".parse().unwrap(),
        incarnation: u64::MAX,
        signature: vec![2; 16],
        peers: vec!["127.0.0.1:2".parse().unwrap(); 3],
    };
    out.push(wire::encode(&short).unwrap());
    out
}

fn tasklist_states() -> Vec<TaskListState> {
    let agent = |n: u8| AgentId([n; 32]);
    let mut a = TaskListState::default();
    let mut out = Vec::new();
    let (id1, d1) = a.add_task("write docs", "all of them", agent(1), 100, 1);
    out.push(d1);
    let (id2, d2) = a.add_task("ship", "", agent(2), 100, 2);
    out.push(d2);
    out.push(a.claim(&id1, agent(2), 150).unwrap());
    out.push(a.complete(&id2, agent(3), 160).unwrap());
    out.push(a.edit(&id1, "write the docs", "π", agent(1), 170).unwrap());
    out.push(a.remove(&id2).unwrap());
    let mut b = TaskListState::default();
    let (_, d) = b.add_task("write docs", "other", agent(9), 100, 7);
    b.claim(&TaskId::derive("write docs", &agent(9), 100), agent(1), 99)
        .unwrap();
    out.push(d);
    out.push(a);
    out.push(b);
    out
}

fn tasklist_seeds() -> Vec<Vec<u8>> {
    let states = tasklist_states();
    let enc = |s: &TaskListState| wire::encode(s).expect("encodes");
    let mut out = Vec::new();
    for (i, s) in states.iter().enumerate() {
        // Three states back to back: the target merges them every way.
        let mut three = enc(s);
        three.extend(enc(&states[(i + 1) % states.len()]));
        three.extend(enc(&states[(i + 3) % states.len()]));
        out.push(three);
    }
    out.push(Vec::new());
    // Pub/sub payloads (a delta, a full state, a request) and list files, by x0x's encoders.
    out.extend(fuzzing::encode_sync_messages("list", &states[2]));
    let unnamed = fuzzing::encode_sync_messages("", &states[7]);
    out.extend(unnamed.into_iter().take(2)); // a delta and a full state
    for (name, state) in [("persisted", &states[7]), ("", &states[0])] {
        let file = fuzzing::encode_list_file([7; 32], name, [1; 32], state.clone());
        out.push(file.expect("encodes"));
    }
    out
}

fn keypair_seeds() -> Vec<Vec<u8>> {
    // Byte 0 is the mode (see fuzz_targets/keypair.rs): even = the rest as is, odd = the rest's
    // first 40 bytes with a computed checksum.
    let valid = key_bytes(&key_head([9; 32]));
    let mut out = vec![
        [&[0u8][..], &valid].concat(),
        [&[1u8][..], &valid[..40]].concat(),
        [&[1u8][..], b"x0xk\x02\x01\x00\x00", &[0; 32]].concat(),
        [&[0u8][..], &valid[..71]].concat(),
    ];
    let id = keypair(9).public_key().agent_id();
    out.push([&[0u8][..], id.to_hex().as_bytes()].concat());
    out.push([&[2u8][..], id.to_hex().to_uppercase().as_bytes()].concat());
    out
}

fn c_abi_seeds() -> Vec<Vec<u8>> {
    // Byte 0 picks the function (see fuzz_targets/c_abi.rs), the rest is the argument.
    let id_hex = keypair(9).public_key().agent_id().to_hex();
    let key = key_bytes(&key_head([9; 32]));
    let arg = |f: u8, bytes: &[u8]| [&[f][..], bytes].concat();
    vec![
        arg(0, id_hex.as_bytes()),
        arg(0, b"zz"),
        arg(1, b"example.org:5483"),
        arg(1, b"[::1]:5483"),
        arg(1, b"host name:1"),
        arg(2, b"127.0.0.1:0"),
        arg(2, b"[::1]:0"),
        arg(3, &key),
        arg(4, &key[..40]),
        arg(5, b"/tmp/x0x/machine.key"),
        arg(6, b"/tmp/x0x/data"),
        arg(7, b"my list\0title\0description"),
        arg(7, b"\xff\xfe\0\0"),
        arg(8, b"abc\0def"),
    ]
}

fn replay_seeds() -> Vec<Vec<u8>> {
    // 4-byte records (see fuzz_targets/replay.rs): [sender, op, v as u16 LE].
    let rec = |sender: u8, op: u8, v: u16| [[sender, op], v.to_le_bytes()].concat();
    vec![
        [rec(0, 0, 1), rec(0, 0, 1), rec(0, 1, 1), rec(0, 1, 1)].concat(),
        [
            rec(1, 2, 64),
            rec(1, 1, 4095),
            rec(1, 1, 1),
            rec(1, 0, 4096),
        ]
        .concat(),
        [
            rec(2, 3, 0),
            rec(2, 1, 1),
            rec(2, 3, 0),
            rec(3, 3, 5000),
            rec(3, 2, 1000),
        ]
        .concat(),
    ]
}

fn envelope_seeds() -> Vec<Vec<u8>> {
    // Byte 0 is the mode (see fuzz_targets/envelope.rs): 0 = an envelope as received, 1 = an
    // envelope body that the target signs with key 3.
    let key = keypair(3);
    let mut out = vec![
        [&[0u8][..], &sealed(3, 1, "chat", vec![item(b"hello")])].concat(),
        [
            &[0u8][..],
            &sealed(4, 7, "a", vec![item(b"one"), item(b"two")]),
        ]
        .concat(),
        [&[0u8][..], &sealed(3, 0, "t", vec![])].concat(),
        [&[1u8][..], &body(&key, 4, 5, "t", vec![item(b"payload")])].concat(),
        [&[1u8][..], &body(&key, 3, 5, "t", vec![])].concat(),
        [&[1u8][..], &body(&keypair(4), 4, 5, "t", vec![])].concat(),
    ];
    // Names key 4's id, signed by key 3.
    let mut forged = body(&key, 4, 1, "t", vec![]);
    forged[1..33].copy_from_slice(&keypair(4).public_key().agent_id().0);
    out.push([&[1u8][..], &forged].concat());
    out
}

fn frame_seeds() -> Vec<Vec<u8>> {
    let (from_peer, from_node) = gossip_frames();
    let mut out = vec![gossip_stream(&from_peer), gossip_stream(&from_node)];
    // Each frame alone (a data frame after its key), so the fuzzer has every message kind as a
    // short input.
    out.extend(
        from_peer
            .iter()
            .map(|f| gossip_stream(std::slice::from_ref(f))),
    );
    // A data frame whose content is not a valid envelope, and an oversized length.
    if let Some(data) = from_peer
        .iter()
        .find(|f| wire::gossip_data_content(f).is_some())
    {
        let mut bad = data.clone();
        let last = bad.len() - 40;
        bad[last] ^= 1;
        out.push(gossip_stream(&[from_peer[0].clone(), bad]));
    }
    // A Swarm-scope data frame whose round is written in postcard's widest form for a u16
    // (`80 80 00` is 0): every round value is then one in-place mutation away.
    if let Some(data) = from_peer
        .iter()
        .find(|f| wire::gossip_data_content(f).is_some() && f.ends_with(&[0, 0]))
    {
        let wide = [&data[..data.len() - 1], &[0x80, 0x80, 0x00][..]].concat();
        out.push(gossip_stream(&[wide]));
    }
    // The exchange, then origin frames from the peer (a neighbour in the swarm of "chat" by
    // then): the first of its run, and the next.
    let origin = |seq, prev| {
        let body =
            wire::encode_origin(SEED_TOPICS[0], seq, prev, &[item(b"said")]).expect("encodes");
        [&[FrameKind::Origin as u8][..], &body].concat()
    };
    out.push(
        [
            gossip_stream(&from_peer),
            stream(&[origin(10, None), origin(11, Some(10))]),
        ]
        .concat(),
    );
    out.push([&(MAX_FRAME_LEN as u32 + 1).to_be_bytes()[..], &[0; 8]].concat());
    out
}

/// The seed inputs of `target`.
pub fn seeds(target: &str) -> Vec<Vec<u8>> {
    match target {
        "frame" => frame_seeds(),
        "envelope" => envelope_seeds(),
        "hello" => hello_seeds(),
        "tasklist_state" => tasklist_seeds(),
        "keypair" => keypair_seeds(),
        "c_abi" => c_abi_seeds(),
        "replay" => replay_seeds(),
        _ => panic!("no target {target}"),
    }
}

/// Checks an envelope the way every target that opens one does (see
/// fuzz_targets/envelope.rs): `parse` + `verify` (the reader, with the named sender's key, if it
/// is one of the seed publishers) and `open_verified` (the node) agree.
pub fn check_open(bytes: &[u8]) {
    let parsed = wire::parse(bytes);
    let decoded = wire::open_verified(bytes);
    let (parsed, decoded) = match (parsed, decoded) {
        (Ok(parsed), Ok(decoded)) => (parsed, decoded),
        (Err(a), Err(b)) => {
            assert_eq!(a, b, "parse and open_verified reject differently");
            return;
        }
        (Ok(_), Err(e)) => panic!("open_verified rejects as {e:?} what parse accepts"),
        (Err(e), Ok(_)) => panic!("open_verified accepts what parse rejects as {e:?}"),
    };
    let sender = parsed.sender();
    assert_eq!(
        sender, decoded.sender,
        "parse and open_verified differ on the sender"
    );
    assert_eq!(
        wire::claimed_sender(bytes),
        Some(sender),
        "claimed_sender (which picks the key) differs from the decoded sender"
    );
    assert_eq!(
        wire::claimed_topic(bytes),
        Some(decoded.topic.as_str()),
        "claimed_topic (which traffic is counted by) differs from the decoded topic"
    );
    let Some(key) = publisher_key(&sender) else {
        return;
    };
    // Another publisher's key is never accepted.
    let (_, other) = publishers()
        .iter()
        .find(|(id, _)| *id != sender)
        .expect("two publishers");
    assert_eq!(
        wire::open(bytes, other).map(|_| ()),
        Err(Rejection::WrongSender)
    );
    match parsed.verify(key) {
        Ok(verified) => {
            assert_eq!(
                (verified.sender, verified.seq, &verified.topic),
                (decoded.sender, decoded.seq, &decoded.topic),
                "verify and open_verified differ"
            );
            assert_eq!(
                verified.items, decoded.items,
                "verify and open_verified differ"
            );
        }
        // Only the signature is left unchecked by open_verified.
        Err(Rejection::BadSignature) => {}
        Err(e) => panic!("verify rejects as {e:?} an envelope from its named sender's key"),
    }
}
