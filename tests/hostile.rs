//! A rogue peer speaks the real wire protocol at an honest agent: every bad input must be dropped
//! before any subscriber sees it, counted under its reason, and nothing may panic.
//!
//! The rogue authenticates like any peer (`x0x::testing::net::dial`), then runs its own iroh-gossip
//! `proto::State` so that it becomes a real gossip neighbour of the honest agent; its
//! `Broadcast` commands produce genuine data frames, whose content we choose (forged envelopes).
//!
//! Nothing here sleeps to prove a negative: after each bad input the rogue sends a valid
//! *sentinel* envelope on the same stream. Frames are read, verified and handed to the gossip
//! actor in order, so when the sentinel arrives, whatever the bad input could have caused
//! (a delivery, a counter) has already happened.
//!
//! Everything runs on 127.0.0.1.

use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use iroh_gossip::proto::{self, Command, InEvent, OutEvent, PeerData, Scope};
use rand::rngs::StdRng;
use tokio::sync::mpsc;
use tokio::time::{timeout, Instant};
use x0x::events::Event;
use x0x::pubsub::Subscription;
use x0x::stats::Stats;
use x0x::testing::net::SERVER_NAME;
use x0x::testing::net::{self, Authenticated};
use x0x::testing::network_topic;
use x0x::testing::wire::{self, Credentials, FrameKind, Hello, Rejection, Role};
use x0x::{Agent, AgentId, Keypair};

mod common;
use common::*;

/// One step (a join, a delivery, a close) must finish within this.
const WAIT: Duration = Duration::from_secs(10);
/// A whole test must finish within this.
const TEST_LIMIT: Duration = Duration::from_secs(90);
const TOPIC: &str = "hostile";

/// The swarm that carries [`TOPIC`].
fn topic_swarm() -> proto::TopicId {
    proto::TopicId::from_bytes(wire::topic_swarm(TOPIC))
}

async fn within<T>(what: &str, future: impl Future<Output = T>) -> T {
    timeout(WAIT, future)
        .await
        .unwrap_or_else(|_| panic!("timed out: {what}"))
}

async fn wait_until(what: &str, mut condition: impl FnMut() -> bool) {
    within(what, async {
        while !condition() {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await;
}

// ---------------------------------------------------------------------------------------------
// Agents.

/// A first node: joined, alone, subscribed to [`TOPIC`].
async fn honest_agent() -> (Agent, Subscription) {
    let honest = agent(&[]).await;
    within("the honest agent joins", honest.join_network(WAIT))
        .await
        .unwrap();
    let sub = honest.subscribe(TOPIC).unwrap();
    (honest, sub)
}

/// The agent still answers and closes cleanly; its subscription ends.
async fn close_cleanly(honest: Agent, sub: Subscription) {
    let _ = honest.stats();
    within("close()", honest.close()).await.unwrap();
    assert!(honest.is_closed());
    assert_eq!(
        within("the subscription ends", sub.next_batch(16)).await,
        None,
        "a closed agent's subscription ends"
    );
    assert_no_background_panics();
}

/// The honest agent's stats once `delivered` has reached `expected` (it is counted just after
/// the subscriber queues are filled, so a reader can see a message a moment before the count).
async fn stats_after_deliveries(honest: &Agent, expected: u64) -> Stats {
    wait_until("the delivered counter catches up", || {
        honest.stats().delivered >= expected
    })
    .await;
    let stats = honest.stats();
    assert_eq!(stats.delivered, expected, "delivered");
    stats
}

// ---------------------------------------------------------------------------------------------
// Envelopes, good and bad.

/// Envelope contents that do not decode: every kind `common::malformed` makes, and nothing.
fn malformed_contents(key: &Keypair, seq: u64) -> Vec<Bytes> {
    let mut out: Vec<Bytes> = (0..MALFORMED_KINDS)
        .map(|kind| malformed(key, TOPIC, seq, b"malformed", kind))
        .collect();
    out.push(expect_rejection(
        Bytes::new(),
        key.public_key(),
        Rejection::Malformed,
    ));
    out
}

// ---------------------------------------------------------------------------------------------
// The rogue.

/// The gossip message in a frame from the honest agent; `None` for a key frame.
fn gossip_body(frame: Bytes) -> Option<Bytes> {
    match wire::split_frame(&frame) {
        Some((FrameKind::Gossip, _)) => Some(frame.slice(1..)),
        Some((FrameKind::Key | FrameKind::Directory | FrameKind::Card | FrameKind::Origin, _)) => {
            None
        }
        None => panic!("the honest agent sent a frame of no known kind"),
    }
}

fn proto_config() -> proto::Config {
    proto::Config {
        max_message_size: wire::GOSSIP_MAX_MESSAGE_SIZE,
        ..Default::default()
    }
}

/// An authenticated peer that drives its own gossip state machine and writes whatever it likes.
struct Rogue {
    honest: AgentId,
    agent_key: Keypair,
    _endpoint: quinn::Endpoint,
    connection: quinn::Connection,
    send: quinn::SendStream,
    state: proto::State<AgentId, StdRng>,
    /// Frames from the honest agent; ends when its stream or the connection does.
    frames: mpsc::UnboundedReceiver<Bytes>,
    neighbour_up: bool,
    /// When false, frames from the honest agent are read and discarded (so a `Prune` cannot
    /// move it out of the rogue's eager set).
    listening: bool,
    seq: u64,
    /// When set, payload frames go on this stream of their own (a payload lane, as honest
    /// agents send them) instead of the first stream.
    lane: Option<quinn::SendStream>,
    /// Whether the rogue's agent key was announced on the first stream, and on the lane.
    announced: [bool; 2],
}

impl Rogue {
    /// Connects to `honest` and becomes its gossip neighbour.
    async fn join(honest: &Agent) -> Self {
        Self::connect(honest, false).await
    }

    /// Like `join`, but stops every payload lane the honest agent opens instead of reading it.
    async fn join_stopping_lanes(honest: &Agent) -> Self {
        Self::connect(honest, true).await
    }

    async fn connect(honest: &Agent, stop_lanes: bool) -> Self {
        let endpoint = net::endpoint(localhost()).unwrap().endpoint;
        let listen = endpoint.local_addr().unwrap();
        let agent_key = Keypair::generate().unwrap();
        let credentials =
            Credentials::new(agent_key.clone(), &Keypair::generate().unwrap()).unwrap();
        let me = credentials.agent_id();
        let auth = within(
            "the rogue's handshake",
            net::dial(
                &endpoint,
                &credentials,
                listen,
                honest.local_addr(),
                Some(honest.agent_id()),
                Vec::new(),
            ),
        )
        .await
        .unwrap();
        let Authenticated {
            peer,
            connection,
            send,
            mut recv,
            ..
        } = auth;
        assert_eq!(peer, honest.agent_id());
        let (tx, frames) = mpsc::unbounded_channel();
        // Payloads come on lanes (streams of their own), everything else on the first stream.
        let lanes = connection.clone();
        let lane_tx = tx.clone();
        tokio::spawn(async move {
            while let Ok(mut lane) = lanes.accept_uni().await {
                if stop_lanes {
                    let _ = lane.stop(0u32.into());
                    continue;
                }
                let tx = lane_tx.clone();
                tokio::spawn(async move {
                    while let Ok(Some(frame)) = net::read_frame_checked(&mut lane).await {
                        if let Some(message) = gossip_body(frame) {
                            if tx.send(message).is_err() {
                                break;
                            }
                        }
                    }
                });
            }
        });
        tokio::spawn(async move {
            while let Ok(Some(frame)) = net::read_frame_checked(&mut recv).await {
                if let Some(message) = gossip_body(frame) {
                    if tx.send(message).is_err() {
                        break;
                    }
                }
            }
        });
        let state = proto::State::new(
            me,
            PeerData::new(wire::encode(&listen).unwrap()),
            proto_config(),
            rand::make_rng::<StdRng>(),
        );
        let mut rogue = Self {
            honest: peer,
            agent_key,
            _endpoint: endpoint,
            connection,
            send,
            state,
            frames,
            neighbour_up: false,
            listening: true,
            seq: 1,
            lane: None,
            announced: [false; 2],
        };
        // Into the membership swarm, as every agent, and the swarm of TOPIC, which carries it.
        for topic in [network_topic(), topic_swarm()] {
            let join = InEvent::Command(topic, Command::Join(vec![peer]));
            for frame in rogue.step(join) {
                rogue.write_frame(&frame).await.unwrap();
            }
        }
        within(
            "the rogue becomes a neighbour in the topic's swarm",
            async {
                while !rogue.neighbour_up {
                    let frame = rogue
                        .frames
                        .recv()
                        .await
                        .expect("the honest agent hung up during the join");
                    rogue.receive(frame).await;
                }
            },
        )
        .await;
        rogue
    }

    fn next_seq(&mut self) -> u64 {
        self.seq += 1;
        self.seq
    }

    /// Feeds one event to the rogue's proto; returns the frames it wants sent to the honest agent.
    fn step(&mut self, event: InEvent<AgentId>) -> Vec<Vec<u8>> {
        let out: Vec<_> = self.state.handle(event, Instant::now(), None).collect();
        let mut frames = Vec::new();
        for event in out {
            match event {
                OutEvent::SendMessage(to, message) if to == self.honest => {
                    frames.push(wire::encode(&message).unwrap());
                }
                OutEvent::EmitEvent(topic, proto::Event::NeighborUp(peer))
                    if peer == self.honest && topic == topic_swarm() =>
                {
                    self.neighbour_up = true;
                }
                OutEvent::EmitEvent(topic, proto::Event::NeighborDown(peer))
                    if peer == self.honest && topic == topic_swarm() =>
                {
                    self.neighbour_up = false;
                }
                // Timers are never fired: the rogue lives for seconds.
                _ => {}
            }
        }
        frames
    }

    /// Handles a frame from the honest agent, answering as a real neighbour would.
    async fn receive(&mut self, frame: Bytes) {
        let message: proto::Message<AgentId> =
            postcard::from_bytes(&frame).expect("the honest agent sent an undecodable frame");
        for reply in self.step(InEvent::RecvMessage(self.honest, message)) {
            // The honest side may already be closing; the caller checks for that itself.
            let _ = self.write_frame(&reply).await;
        }
    }

    /// Processes whatever the honest agent has sent so far.
    async fn pump(&mut self) {
        while let Ok(frame) = self.frames.try_recv() {
            if self.listening {
                self.receive(frame).await;
            }
        }
    }

    async fn write_raw(&mut self, bytes: &[u8]) -> Result<(), quinn::WriteError> {
        self.send.write_all(bytes).await
    }

    /// Writes an origin frame with body `body` on the first stream.
    async fn write_origin(&mut self, body: &[u8]) {
        self.pump().await;
        let mut buf = BytesMut::new();
        net::put_frame_of(&mut buf, FrameKind::Origin, body);
        self.write_raw(&buf).await.unwrap();
    }

    /// Writes `frame` (a gossip message) on the first stream, after the rogue's key if it
    /// names the rogue as publisher and the key was not announced there yet.
    async fn write_frame(&mut self, frame: &[u8]) -> Result<(), quinn::WriteError> {
        let buf = self.framed(0, frame);
        self.write_raw(&buf).await
    }

    /// `frame` as it goes on stream `stream` (0: the first, 1: the lane), announcing the key.
    fn framed(&mut self, stream: usize, frame: &[u8]) -> BytesMut {
        let mut buf = BytesMut::new();
        let own = self.agent_key.public_key();
        let names_me = wire::gossip_data_content(frame)
            .and_then(wire::claimed_sender)
            .is_some_and(|publisher| publisher == own.agent_id());
        if names_me && !self.announced[stream] {
            net::put_frame_of(&mut buf, FrameKind::Key, own.as_bytes());
            self.announced[stream] = true;
        }
        net::put_frame_of(&mut buf, FrameKind::Gossip, frame);
        buf
    }

    /// A genuine gossip data frame carrying `content`, made by the rogue's proto (not sent).
    /// Control frames the proto produces alongside are sent.
    async fn data_frame(&mut self, content: Bytes) -> Vec<u8> {
        self.pump().await;
        assert!(
            self.neighbour_up,
            "the rogue is no longer the honest agent's neighbour"
        );
        let broadcast = Command::Broadcast(content.clone(), Scope::Swarm);
        let mut data = None;
        for frame in self.step(InEvent::Command(topic_swarm(), broadcast)) {
            if wire::gossip_data_content(&frame) == Some(&content[..]) {
                assert!(data.is_none(), "one broadcast made two data frames");
                data = Some(frame);
            } else {
                self.write_frame(&frame).await.unwrap();
            }
        }
        data.expect("the broadcast made no data frame for the honest agent")
    }

    /// Broadcasts `content` as a gossip data message.
    async fn broadcast(&mut self, content: Bytes) {
        let frame = self.data_frame(content).await;
        if self.lane.is_some() {
            let buf = self.framed(1, &frame);
            let lane = self.lane.as_mut().expect("checked above");
            lane.write_all(&buf).await.unwrap();
        } else {
            self.write_frame(&frame).await.unwrap();
        }
    }

    /// From now on, sends payloads on a lane of their own.
    async fn open_lane(&mut self) {
        self.lane = Some(self.connection.open_uni().await.unwrap());
    }

    /// Publishes a valid envelope and checks that the honest subscriber's next batch is exactly
    /// it: nothing sent before it on this connection was delivered.
    async fn sentinel(&mut self, sub: &Subscription, label: &str) {
        let payload = format!("sentinel {label} {}", self.seq + 1);
        let seq = self.next_seq();
        let envelope = wire::seal(&self.agent_key, seq, TOPIC, items(payload.as_bytes())).unwrap();
        self.broadcast(envelope).await;
        let got = within(
            &format!("sentinel {label:?} is delivered"),
            sub.next_batch(64),
        )
        .await
        .expect("the subscription closed");
        let got: Vec<_> = got.iter().map(|m| (m.sender, m.payload.clone())).collect();
        assert_eq!(
            got,
            vec![(self.agent_key.public_key().agent_id(), Bytes::from(payload))],
            "only the sentinel may be delivered ({label})"
        );
    }

    /// Waits until the honest agent has closed the connection; returns why.
    async fn closed_by_peer(&mut self) -> (u64, Bytes) {
        let error = within("the honest agent closes the connection", async {
            // The reader ends too: drain it so nothing is left unread.
            while self.frames.recv().await.is_some() {}
            self.connection.closed().await
        })
        .await;
        match error {
            quinn::ConnectionError::ApplicationClosed(close) => {
                (close.error_code.into_inner(), close.reason)
            }
            other => panic!("expected the honest agent to close the connection, got {other}"),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Tests.

/// Control: a valid envelope injected by the rogue is delivered, so the injection path works
/// and the negative tests below mean something.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn control_valid_envelope_from_rogue_is_delivered() {
    bounded(TEST_LIMIT, async {
        let (honest, sub) = honest_agent().await;
        let mut rogue = Rogue::join(&honest).await;
        wait_until("the honest agent counts the rogue as a neighbour", || {
            honest.stats().neighbours == 1
        })
        .await;
        let before = honest.stats();

        let seq = rogue.next_seq();
        let envelope =
            wire::seal(&rogue.agent_key, seq, TOPIC, items(b"hello from the rogue")).unwrap();
        rogue.broadcast(envelope).await;
        let got = within("delivery", sub.next_batch(16)).await.unwrap();
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].payload, Bytes::from_static(b"hello from the rogue"));
        assert_eq!(got[0].sender, rogue.agent_key.public_key().agent_id());
        assert_eq!(&*got[0].topic, TOPIC);
        assert_eq!(got[0].timestamp_ms, 1);

        let after = stats_after_deliveries(&honest, before.delivered + 1).await;
        assert_eq!(Drops::of(after), Drops::of(before), "nothing dropped");
        // The sentinel helper works the same way.
        rogue.sentinel(&sub, "control").await;
        close_cleanly(honest, sub).await;
    })
    .await;
}

/// A well-formed envelope signed by another key is dropped and counted as a bad signature.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forged_signature_is_dropped_and_counted() {
    bounded(TEST_LIMIT, async {
        let (honest, sub) = honest_agent().await;
        let mut rogue = Rogue::join(&honest).await;
        let before = honest.stats();

        let other = Keypair::generate().unwrap();
        let seq = rogue.next_seq();
        let forged = forged_signature(&rogue.agent_key, &other, TOPIC, seq, b"forged");
        rogue.broadcast(forged).await;
        rogue.sentinel(&sub, "after forged signature").await;

        let after = stats_after_deliveries(&honest, before.delivered + 1).await;
        assert_eq!(
            Drops::of(after),
            Drops::of(before).plus(Drops {
                bad_signature: 1,
                ..Drops::default()
            })
        );
        close_cleanly(honest, sub).await;
    })
    .await;
}

/// A payload changed after sealing is a bad signature, and is not delivered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tampered_payload_is_dropped_as_bad_signature() {
    bounded(TEST_LIMIT, async {
        let (honest, sub) = honest_agent().await;
        let mut rogue = Rogue::join(&honest).await;
        let before = honest.stats();

        let seq = rogue.next_seq();
        let tampered = tampered_payload(&rogue.agent_key, TOPIC, seq, b"original");
        rogue.broadcast(tampered).await;
        rogue.sentinel(&sub, "after tampered payload").await;

        let after = stats_after_deliveries(&honest, before.delivered + 1).await;
        assert_eq!(
            Drops::of(after),
            Drops::of(before).plus(Drops {
                bad_signature: 1,
                ..Drops::default()
            })
        );
        close_cleanly(honest, sub).await;
    })
    .await;
}

/// Someone else's AgentId as sender, with the rogue's own key and signature: wrong sender.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_sender_is_dropped_and_counted() {
    bounded(TEST_LIMIT, async {
        let (honest, sub) = honest_agent().await;
        let mut rogue = Rogue::join(&honest).await;
        let before = honest.stats();

        // Impersonate the honest agent itself, and a stranger.
        for victim in [
            honest.agent_id(),
            Keypair::generate().unwrap().public_key().agent_id(),
        ] {
            let seq = rogue.next_seq();
            let forged = wrong_sender(&rogue.agent_key, victim, TOPIC, seq, b"impersonation");
            rogue.broadcast(forged).await;
        }
        rogue.sentinel(&sub, "after wrong senders").await;

        let after = stats_after_deliveries(&honest, before.delivered + 1).await;
        assert_eq!(
            Drops::of(after),
            Drops::of(before).plus(Drops {
                wrong_sender: 2,
                ..Drops::default()
            })
        );
        close_cleanly(honest, sub).await;
    })
    .await;
}

/// Undecodable envelopes inside real data frames, frames that are not gossip messages at all,
/// frames of no known kind and key frames without a key are counted as malformed; none is
/// delivered and the connection survives.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_content_and_frames_are_dropped_and_counted() {
    bounded(TEST_LIMIT, async {
        let (honest, sub) = honest_agent().await;
        let mut rogue = Rogue::join(&honest).await;
        let before = honest.stats();

        // Garbage inside genuine data frames (checked by the reader, before the gossip layer).
        let seq = rogue.next_seq();
        let contents = malformed_contents(&rogue.agent_key, seq);
        for content in &contents {
            rogue.broadcast(content.clone()).await;
        }
        rogue.sentinel(&sub, "after malformed envelopes").await;
        let mid = honest.stats();
        assert_eq!(
            Drops::of(mid),
            Drops::of(before).plus(Drops {
                malformed: contents.len() as u64,
                ..Drops::default()
            })
        );

        // Frames that are not gossip messages at all (rejected by the actor's decoder).
        let seq = rogue.next_seq();
        let real = rogue
            .data_frame(wire::seal(&rogue.agent_key, seq, TOPIC, items(b"cut short")).unwrap())
            .await;
        let frames: Vec<Vec<u8>> = vec![
            // Random-looking bytes: a 32-byte "topic", then no valid variant.
            (0u8..40)
                .map(|i| i.wrapping_mul(151).wrapping_add(7) | 0x80)
                .collect(),
            vec![0xff; 40],
            // Empty.
            Vec::new(),
            // A real data frame cut before its content: not a data frame, not a message.
            real[..40].to_vec(),
            // A valid topic and message kind, then nothing.
            real[..34].to_vec(),
        ];
        for frame in &frames {
            assert_eq!(wire::gossip_data_content(frame), None);
            assert!(postcard::from_bytes::<proto::Message<AgentId>>(frame).is_err());
            rogue.write_frame(frame).await.unwrap();
        }
        // Frames of no known kind (nothing, 2, a real data frame under kind 7) and key frames
        // that hold no key.
        let untyped: Vec<Vec<u8>> = vec![
            Vec::new(),
            vec![2],
            [&[7u8][..], &real].concat(),
            vec![FrameKind::Key as u8],
            [&[FrameKind::Key as u8][..], &[1; 100]].concat(),
        ];
        for frame in &untyped {
            let mut buf = BytesMut::new();
            net::put_frame(&mut buf, frame);
            rogue.write_raw(&buf).await.unwrap();
        }
        rogue.sentinel(&sub, "after non-message frames").await;

        let after = stats_after_deliveries(&honest, before.delivered + 2).await;
        assert_eq!(
            Drops::of(after),
            Drops::of(mid).plus(Drops {
                malformed: (frames.len() + untyped.len()) as u64,
                ..Drops::default()
            })
        );
        assert!(rogue.connection.close_reason().is_none(), "still connected");
        assert_eq!(after.neighbours, 1);
        close_cleanly(honest, sub).await;
    })
    .await;
}

/// A valid envelope under a message id that is not its hash: the reader passes it (the envelope
/// verifies), the gossip layer rejects it, and it is not delivered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spoofed_message_id_is_not_delivered() {
    bounded(TEST_LIMIT, async {
        let (honest, sub) = honest_agent().await;
        let mut rogue = Rogue::join(&honest).await;
        let before = honest.stats();

        let seq = rogue.next_seq();
        let envelope = wire::seal(&rogue.agent_key, seq, TOPIC, items(b"spoofed id")).unwrap();
        let mut frame = rogue.data_frame(envelope.clone()).await;
        // Layout: topic (32), two one-byte variants, then the 32-byte message id.
        frame[34] ^= 0x01;
        assert_eq!(wire::gossip_data_content(&frame), Some(&envelope[..]));
        rogue.write_frame(&frame).await.unwrap();
        rogue.sentinel(&sub, "after spoofed id").await;

        // The same envelope under its real id is delivered: the spoof did not poison the cache.
        rogue.broadcast(envelope).await;
        let got = within("the honest copy", sub.next_batch(16)).await.unwrap();
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].payload, Bytes::from_static(b"spoofed id"));

        let after = stats_after_deliveries(&honest, before.delivered + 2).await;
        assert_eq!(Drops::of(after), Drops::of(before));
        close_cleanly(honest, sub).await;
    })
    .await;
}

/// A relay can claim any delivery round; the gossip layer forwards with `round + 1` in a u16,
/// so round 65535 overflowed — a panic that stopped the agent's networking in builds with
/// overflow checks, like this test's (found by fuzzing). It must be dropped as malformed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn absurd_delivery_round_is_dropped_not_a_crash() {
    watch_panics();
    bounded(TEST_LIMIT, async {
        let (honest, sub) = honest_agent().await;
        let mut rogue = Rogue::join(&honest).await;
        let before = honest.stats();
        let seq = rogue.next_seq();
        let envelope = wire::seal(&rogue.agent_key, seq, TOPIC, items(b"round 65535")).unwrap();
        let frame = rogue.data_frame(envelope).await;
        assert!(
            frame.ends_with(&[0, 0]),
            "scope Swarm(Round(0)) ends the frame"
        );
        let mut forged = frame[..frame.len() - 1].to_vec();
        forged.extend_from_slice(&[0xff, 0xff, 0x03]);
        assert_eq!(wire::gossip_data_round(&forged), Some(65535));
        rogue.write_frame(&forged).await.unwrap();
        rogue.sentinel(&sub, "after the absurd round").await;
        let after = honest.stats();
        assert_eq!(after.dropped_malformed, before.dropped_malformed + 1);
        close_cleanly(honest, sub).await;
    })
    .await;
    assert_no_background_panics();
}

/// A length prefix over the limit closes that connection (and is counted); the agent keeps
/// serving a well-behaved peer afterwards.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_frame_closes_the_connection_and_the_agent_keeps_working() {
    bounded(TEST_LIMIT, async {
        let (honest, sub) = honest_agent().await;
        let mut rogue = Rogue::join(&honest).await;
        rogue.sentinel(&sub, "before oversize").await;
        let before = stats_after_deliveries(&honest, 1).await;
        assert_eq!(before.neighbours, 1);

        let len = u32::try_from(wire::MAX_FRAME_LEN + 1).unwrap();
        rogue.write_raw(&len.to_be_bytes()).await.unwrap();
        // Follow with bytes that would be a valid envelope, were the stream still read.
        let seq = rogue.next_seq();
        let envelope = wire::seal(&rogue.agent_key, seq, TOPIC, items(b"after oversize")).unwrap();
        let _ = rogue.write_raw(&envelope).await;

        let (code, reason) = rogue.closed_by_peer().await;
        assert_eq!((code, &reason[..]), (2, &b"frame too large"[..]));
        wait_until("the rogue stops being a neighbour", || {
            honest.stats().neighbours == 0
        })
        .await;
        let after = honest.stats();
        assert_eq!(
            Drops::of(after),
            Drops::of(before).plus(Drops {
                oversized: 1,
                ..Drops::default()
            })
        );
        assert_eq!(after.delivered, before.delivered);
        assert_eq!(sub.try_next_batch(16), Some(vec![]));

        two_way_exchange(&honest, &sub, "after oversize").await;
        close_cleanly(honest, sub).await;
    })
    .await;
}

/// A normal agent bootstraps to `honest`, and each receives the other's message.
async fn two_way_exchange(honest: &Agent, honest_sub: &Subscription, label: &str) {
    let good = agent(&[honest.local_addr()]).await;
    let good_sub = good.subscribe(TOPIC).unwrap();
    within("the good agent joins", good.join_network(WAIT))
        .await
        .unwrap();
    let to_honest = Bytes::from(format!("good -> honest {label}"));
    good.publish(TOPIC, to_honest.clone()).await.unwrap();
    let got = within("honest receives", honest_sub.next_batch(16))
        .await
        .unwrap();
    assert_eq!(
        got.iter()
            .map(|m| (m.sender, m.payload.clone()))
            .collect::<Vec<_>>(),
        vec![(good.agent_id(), to_honest)]
    );
    // The good agent's own message reaches its own subscription first.
    let own = within("good sees its own", good_sub.next_batch(16))
        .await
        .unwrap();
    assert_eq!(own.len(), 1);

    let to_good = Bytes::from(format!("honest -> good {label}"));
    honest.publish(TOPIC, to_good.clone()).await.unwrap();
    let got = within("good receives", good_sub.next_batch(16))
        .await
        .unwrap();
    assert_eq!(
        got.iter()
            .map(|m| (m.sender, m.payload.clone()))
            .collect::<Vec<_>>(),
        vec![(honest.agent_id(), to_good)]
    );
    let own = within("honest sees its own", honest_sub.next_batch(16))
        .await
        .unwrap();
    assert_eq!(own.len(), 1);
    within("the good agent closes", good.close()).await.unwrap();
}

/// Sends `n` invalid envelopes of every kind in turn; returns what each counter should gain.
async fn send_invalid_envelopes(rogue: &mut Rogue, n: usize) -> Drops {
    let other = Keypair::generate().unwrap();
    let victim = Keypair::generate().unwrap().public_key().agent_id();
    let mut drops = Drops::default();
    for i in 0..n {
        let seq = rogue.next_seq();
        let payload = format!("invalid {i}");
        let content = match i % 4 {
            0 => {
                drops.bad_signature += 1;
                forged_signature(&rogue.agent_key, &other, TOPIC, seq, payload.as_bytes())
            }
            1 => {
                drops.bad_signature += 1;
                tampered_payload(&rogue.agent_key, TOPIC, seq, payload.as_bytes())
            }
            2 => {
                drops.wrong_sender += 1;
                wrong_sender(&rogue.agent_key, victim, TOPIC, seq, payload.as_bytes())
            }
            _ => {
                drops.malformed += 1;
                malformed(&rogue.agent_key, TOPIC, seq, payload.as_bytes(), i / 4)
            }
        };
        rogue.broadcast(content).await;
    }
    drops
}

/// 63 invalid envelopes are tolerated (a valid one still gets through); the 64th closes the
/// connection.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sixty_four_strikes_close_the_connection() {
    bounded(TEST_LIMIT, async {
        let (honest, sub) = honest_agent().await;
        let mut rogue = Rogue::join(&honest).await;
        let before = honest.stats();

        let first = send_invalid_envelopes(&mut rogue, MAX_STRIKES - 1).await;
        rogue.sentinel(&sub, "after 63 strikes").await;
        assert!(rogue.connection.close_reason().is_none(), "still connected");
        assert_eq!(
            Drops::of(honest.stats()),
            Drops::of(before).plus(first),
            "63 strikes"
        );

        let last = send_invalid_envelopes(&mut rogue, 1).await;
        let (code, reason) = rogue.closed_by_peer().await;
        assert_eq!((code, &reason[..]), (4, &b"too many invalid messages"[..]));
        wait_until("the rogue stops being a neighbour", || {
            honest.stats().neighbours == 0
        })
        .await;

        let after = stats_after_deliveries(&honest, before.delivered + 1).await;
        assert_eq!(Drops::of(after), Drops::of(before).plus(first).plus(last));
        assert_eq!(
            after.dropped_bad_signature + after.dropped_wrong_sender + after.dropped_malformed
                - (before.dropped_bad_signature
                    + before.dropped_wrong_sender
                    + before.dropped_malformed),
            MAX_STRIKES as u64
        );
        assert_eq!(sub.try_next_batch(16), Some(vec![]));

        two_way_exchange(&honest, &sub, "after strikes").await;
        close_cleanly(honest, sub).await;
    })
    .await;
}

/// Strikes count per connection, not per stream: invalid payloads split between the first
/// stream and a payload lane close the connection at 64 all the same.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn strikes_on_every_stream_of_a_connection_add_up() {
    bounded(TEST_LIMIT, async {
        let (honest, sub) = honest_agent().await;
        let mut rogue = Rogue::join(&honest).await;
        let before = honest.stats();

        let on_first = send_invalid_envelopes(&mut rogue, MAX_STRIKES / 2).await;
        rogue.open_lane().await;
        let on_lane = send_invalid_envelopes(&mut rogue, MAX_STRIKES / 2 - 1).await;
        rogue.sentinel(&sub, "on a lane after 63 strikes").await;
        assert!(rogue.connection.close_reason().is_none(), "still connected");

        let last = send_invalid_envelopes(&mut rogue, 1).await;
        let (code, reason) = rogue.closed_by_peer().await;
        assert_eq!((code, &reason[..]), (4, &b"too many invalid messages"[..]));
        let after = stats_after_deliveries(&honest, before.delivered + 1).await;
        assert_eq!(
            Drops::of(after),
            Drops::of(before).plus(on_first).plus(on_lane).plus(last)
        );
        close_cleanly(honest, sub).await;
    })
    .await;
}

/// A peer that stops a payload lane has its connection closed: a link whose writer failed must
/// not linger as a neighbour that silently drops everything sent to it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopped_lane_closes_the_connection() {
    bounded(TEST_LIMIT, async {
        let (honest, sub) = honest_agent().await;
        let mut rogue = Rogue::join_stopping_lanes(&honest).await;
        // The first write may be buffered before the stop arrives; a later one fails.
        for i in 0..100u32 {
            if rogue.connection.close_reason().is_some() {
                break;
            }
            let payload = Bytes::from(format!("into a stopped lane {i}"));
            // On the topic whose swarm the rogue is in (the agent's own copies are drained below).
            honest.publish(TOPIC, payload).await.unwrap();
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let (code, reason) = rogue.closed_by_peer().await;
        assert_eq!(
            (code, &reason[..]),
            (u64::from(net::CLOSE_STREAM_FAILED), &b"stream failed"[..])
        );
        wait_until("the rogue stops being a neighbour", || {
            honest.stats().neighbours == 0
        })
        .await;
        while sub
            .try_next_batch(1024)
            .is_some_and(|batch| !batch.is_empty())
        {}
        close_cleanly(honest, sub).await;
    })
    .await;
}

/// A peer that closes for a reason of its own (here: one of its streams failed) is not taken
/// for a second copy of this agent. (Regression: "stream failed" and "duplicate identity"
/// shared close code 6.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_closing_on_a_failed_stream_is_no_identity_conflict() {
    bounded(TEST_LIMIT, async {
        let (honest, sub) = honest_agent().await;
        let rogue = Rogue::join(&honest).await;
        rogue
            .connection
            .close(net::CLOSE_STREAM_FAILED.into(), b"stream failed");
        wait_until("the rogue stops being a neighbour", || {
            honest.stats().neighbours == 0
        })
        .await;
        assert_eq!(honest.stats().identity_conflicts, 0);
        close_cleanly(honest, sub).await;
    })
    .await;
}

/// An address whose connections keep being closed for invalid messages is refused before the
/// handshake: after 4 strike-outs, for 1 s (doubling with each further one). The honest agent
/// keeps working, and takes connections from that address again once the refusal is over.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_address_that_keeps_striking_out_is_refused_for_a_while() {
    bounded(TEST_LIMIT, async {
        let (honest, sub) = honest_agent().await;
        for round in 0..5 {
            let mut rogue = Rogue::join(&honest).await;
            send_invalid_envelopes(&mut rogue, MAX_STRIKES).await;
            let (code, _) = rogue.closed_by_peer().await;
            assert_eq!(code, 4, "strike-out {round}");
        }
        assert_eq!(honest.stats().connections_refused, 0);

        let endpoint = net::endpoint(localhost()).unwrap().endpoint;
        let connecting = endpoint
            .connect(net::dialable(honest.local_addr()), SERVER_NAME)
            .unwrap();
        let refused = within("a refused handshake", connecting).await.unwrap_err();
        assert!(
            refused.to_string().contains("refused"),
            "refused before the handshake: {refused}"
        );
        assert_eq!(honest.stats().connections_refused, 1);

        tokio::time::sleep(Duration::from_millis(1100)).await;
        two_way_exchange(&honest, &sub, "after the refusal").await;
        assert_eq!(honest.stats().connections_refused, 1);
        close_cleanly(honest, sub).await;
    })
    .await;
}

/// A raw QUIC connection that has not sent its hello yet.
struct Unauthenticated {
    _endpoint: quinn::Endpoint,
    connection: quinn::Connection,
    send: quinn::SendStream,
    recv: quinn::RecvStream,
    exporter: [u8; 32],
    listen: SocketAddr,
}

async fn connect_raw(honest: &Agent) -> Unauthenticated {
    let endpoint = net::endpoint(localhost()).unwrap().endpoint;
    let listen = endpoint.local_addr().unwrap();
    let connection = within(
        "QUIC handshake",
        endpoint
            .connect(net::dialable(honest.local_addr()), SERVER_NAME)
            .unwrap(),
    )
    .await
    .unwrap();
    let (send, recv) = within("open a stream", connection.open_bi()).await.unwrap();
    let mut exporter = [0u8; 32];
    connection
        .export_keying_material(&mut exporter, wire::EXPORTER_LABEL, b"")
        .unwrap();
    Unauthenticated {
        _endpoint: endpoint,
        connection,
        send,
        recv,
        exporter,
        listen,
    }
}

/// Sends `first` (raw bytes) as the opening of the stream; the honest agent must answer with no
/// hello of its own and close the connection.
async fn expect_refused(
    honest: &Agent,
    label: &str,
    first: impl FnOnce(&Unauthenticated) -> Vec<u8>,
) {
    let mut raw = connect_raw(honest).await;
    let bytes = first(&raw);
    raw.send.write_all(&bytes).await.unwrap();
    let answer = within(
        &format!("the honest agent answers a bad hello ({label})"),
        net::read_frame_checked(&mut raw.recv),
    )
    .await;
    assert!(
        !matches!(answer, Ok(Some(_))),
        "the honest agent sent its hello after a bad one ({label})"
    );
    let error = within(
        &format!("the connection closes ({label})"),
        raw.connection.closed(),
    )
    .await;
    assert!(
        !matches!(error, quinn::ConnectionError::LocallyClosed),
        "{label}: {error}"
    );
}

fn hello_frame(hello: &Hello) -> Vec<u8> {
    let mut buf = BytesMut::new();
    net::put_frame(&mut buf, &wire::encode(hello).unwrap());
    buf.to_vec()
}

/// Hellos that do not prove the agent key for this connection, or its machine's endorsement, are
/// refused: no hello back, the
/// connection closed, no neighbour, no event. A correct hello still works afterwards.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_hellos_are_refused() {
    bounded(TEST_LIMIT, async {
        let (honest, sub) = honest_agent().await;
        let events = honest.events().unwrap();
        let machine = Keypair::generate().unwrap();
        let key = Credentials::new(Keypair::generate().unwrap(), &machine).unwrap();
        let stranger = Credentials::new(Keypair::generate().unwrap(), &machine).unwrap();
        let other_machine = Keypair::generate().unwrap();

        expect_refused(&honest, "signed over another exporter secret", |raw| {
            hello_frame(&Hello::new(&key, Role::Dialer, &[0x5a; 32], raw.listen).unwrap())
        })
        .await;
        expect_refused(&honest, "reflected role", |raw| {
            hello_frame(&Hello::new(&key, Role::Acceptor, &raw.exporter, raw.listen).unwrap())
        })
        .await;
        expect_refused(&honest, "someone else's agent key", |raw| {
            let mut hello = Hello::new(&key, Role::Dialer, &raw.exporter, raw.listen).unwrap();
            hello.agent_key = stranger.agent_key().public_key().as_bytes().to_vec();
            hello_frame(&hello)
        })
        .await;
        expect_refused(&honest, "another agent's endorsement", |raw| {
            let mut hello = Hello::new(&key, Role::Dialer, &raw.exporter, raw.listen).unwrap();
            hello.endorsement = Hello::new(&stranger, Role::Dialer, &raw.exporter, raw.listen)
                .unwrap()
                .endorsement;
            hello_frame(&hello)
        })
        .await;
        expect_refused(
            &honest,
            "a machine key that did not endorse the agent",
            |raw| {
                let mut hello = Hello::new(&key, Role::Dialer, &raw.exporter, raw.listen).unwrap();
                hello.machine_key = other_machine.public_key().as_bytes().to_vec();
                hello_frame(&hello)
            },
        )
        .await;
        expect_refused(&honest, "listen address changed after signing", |raw| {
            let mut hello = Hello::new(&key, Role::Dialer, &raw.exporter, raw.listen).unwrap();
            hello.listen = "127.0.0.1:1".parse().unwrap();
            hello_frame(&hello)
        })
        .await;
        expect_refused(&honest, "no signature", |raw| {
            let mut hello = Hello::new(&key, Role::Dialer, &raw.exporter, raw.listen).unwrap();
            hello.signature.clear();
            hello_frame(&hello)
        })
        .await;
        expect_refused(&honest, "not a hello", |_| {
            let mut buf = BytesMut::new();
            net::put_frame(&mut buf, b"hello?");
            buf.to_vec()
        })
        .await;
        expect_refused(&honest, "oversized hello", |_| {
            u32::try_from(wire::MAX_FRAME_LEN + 1)
                .unwrap()
                .to_be_bytes()
                .to_vec()
        })
        .await;

        let stats = honest.stats();
        assert_eq!(stats.neighbours, 0);
        assert_eq!(
            stats.bytes_in, 0,
            "no frame of a refused peer reached the gossip layer"
        );
        assert_eq!(events.try_next_batch(16), Some(vec![]), "no event");

        // The correct hello on a fresh connection is accepted; becoming a neighbour works too.
        let rogue = Rogue::join(&honest).await;
        let joined = within("PeerJoined", events.next_batch(16)).await.unwrap();
        assert!(
            joined.contains(&Event::PeerJoined(*rogue.state.me())),
            "{joined:?}"
        );
        assert_eq!(honest.stats().neighbours, 1);
        close_cleanly(honest, sub).await;
    })
    .await;
}

/// Everything above against one agent; then it still serves a good peer, reports exact totals,
/// closes cleanly, and nothing panicked anywhere.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gauntlet_leaves_the_agent_working_and_closing_cleanly() {
    bounded(TEST_LIMIT, async {
        let (honest, sub) = honest_agent().await;
        let start = honest.stats();
        let mut expected = Drops::of(start);
        let mut delivered = start.delivered;

        // A bad hello.
        expect_refused(&honest, "gauntlet", |raw| {
            let key = Credentials::new(Keypair::generate().unwrap(), &Keypair::generate().unwrap())
                .unwrap();
            hello_frame(&Hello::new(&key, Role::Dialer, &[1; 32], raw.listen).unwrap())
        })
        .await;

        // Every kind of bad envelope and frame on one connection, which survives them.
        let mut a = Rogue::join(&honest).await;
        expected = expected.plus(send_invalid_envelopes(&mut a, 12).await);
        let seq = a.next_seq();
        for content in malformed_contents(&a.agent_key, seq) {
            a.broadcast(content).await;
            expected.malformed += 1;
        }
        for frame in [&b""[..], &[0xff; 40][..], &[0u8; 33][..]] {
            a.write_frame(frame).await.unwrap();
            expected.malformed += 1;
        }
        let seq = a.next_seq();
        let envelope = wire::seal(&a.agent_key, seq, TOPIC, items(b"spoofed")).unwrap();
        let mut spoofed = a.data_frame(envelope).await;
        spoofed[40] ^= 0x80;
        a.write_frame(&spoofed).await.unwrap();
        a.sentinel(&sub, "gauntlet a").await;
        delivered += 1;
        assert_eq!(Drops::of(honest.stats()), expected);

        // An oversized frame on a second connection.
        let mut b = Rogue::join(&honest).await;
        b.write_raw(&u32::MAX.to_be_bytes()).await.unwrap();
        assert_eq!(b.closed_by_peer().await.0, 2);
        expected.oversized += 1;

        // 64 strikes on a third.
        let mut c = Rogue::join(&honest).await;
        expected = expected.plus(send_invalid_envelopes(&mut c, MAX_STRIKES).await);
        assert_eq!(c.closed_by_peer().await.0, 4);

        // The first rogue is still a neighbour and still heard.
        a.sentinel(&sub, "gauntlet a, at the end").await;
        delivered += 1;
        wait_until("only rogue a is left", || honest.stats().neighbours == 1).await;

        let stats = stats_after_deliveries(&honest, delivered).await;
        assert_eq!(Drops::of(stats), expected);
        assert_eq!(sub.try_next_batch(16), Some(vec![]));

        two_way_exchange(&honest, &sub, "after the gauntlet").await;
        close_cleanly(honest, sub).await;
        // The rogue that stayed connected sees the honest agent go.
        let _ = within("rogue a is disconnected", a.connection.closed()).await;
    })
    .await;
}

/// A captured valid envelope replayed after the gossip layer has forgotten its message id
/// (`message_id_retention`, 90 s) must not be delivered again: the per-sender sequence window
/// refuses it. Slow (93 s), so it is opt-in here; `make test` runs it with `--ignored`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "slow: waits out the 90 s message-id cache; run with --ignored (make test does)"]
async fn replayed_envelope_is_not_delivered_twice() {
    watch_panics();
    timeout(Duration::from_secs(180), replay_scenario())
        .await
        .expect("the test did not finish in time");
    assert_no_background_panics();
}

async fn replay_scenario() {
    let (honest, sub) = honest_agent().await;
    let mut rogue = Rogue::join(&honest).await;
    // The honest agent answers a duplicate with a Prune; the rogue ignores it and keeps pushing.
    rogue.listening = false;
    let seq = rogue.next_seq();
    let envelope = wire::seal(&rogue.agent_key, seq, TOPIC, items(b"once")).unwrap();
    // A replay resends the captured frame, byte for byte.
    let frame = rogue.data_frame(envelope).await;
    rogue.write_frame(&frame).await.unwrap();
    let got = within("first delivery", sub.next_batch(16)).await.unwrap();
    assert_eq!(got.len(), 1);

    // At once: the gossip layer's message-id cache stops it.
    rogue.write_frame(&frame).await.unwrap();
    rogue.sentinel(&sub, "immediate replay").await;

    // After the id cache has expired.
    let retention = proto_config().broadcast.message_id_retention;
    tokio::time::sleep(retention + Duration::from_secs(3)).await;
    rogue.write_frame(&frame).await.unwrap();
    rogue.sentinel(&sub, "late replay").await;
    close_cleanly(honest, sub).await;
}

/// A card shown by a peer that is not its agent, an altered card, and bytes that are no card
/// are dropped and counted; the peer's own state is untouched.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_agents_card_or_a_forged_one_is_dropped_and_counted() {
    bounded(TEST_LIMIT, async {
        let (honest, sub) = honest_agent().await;
        let mut rogue = Rogue::join(&honest).await;
        let victim = Agent::builder().build().await.unwrap();
        let card = x0x::testing::card_of(&victim);
        let mut altered = card.to_vec();
        let at = altered.len() / 2;
        altered[at] ^= 0x40;
        let before = honest.stats().cards_rejected;
        for bad in [&card[..], &altered[..], b"not a card"] {
            let mut buf = BytesMut::new();
            net::put_frame_of(&mut buf, FrameKind::Card, bad);
            rogue.write_raw(&buf).await.unwrap();
        }
        wait_until("three cards rejected", || {
            honest.stats().cards_rejected == before + 3
        })
        .await;
        let victim_id = victim.agent_id();
        assert!(!honest.peers().iter().any(|p| p.agent_id == victim_id));
        // The connection stays usable: the rogue's messages still arrive.
        rogue.sentinel(&sub, "after cards").await;
        victim.close().await.unwrap();
        close_cleanly(honest, sub).await;
    })
    .await;
}

/// An origin frame names no sender: what it carries is delivered at once as the rogue's own
/// (the connection's authenticated peer), one hop away. The rogue then signs another batch
/// under the same sequence number: that is equivocation, counted, not delivered, and the
/// connection is closed as one that kept sending invalid messages.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_origin_frame_is_the_peers_own_and_equivocating_closes_the_connection() {
    bounded(TEST_LIMIT, async {
        let (honest, sub) = honest_agent().await;
        let mut rogue = Rogue::join(&honest).await;
        let before = honest.stats();
        let rogue_id = rogue.agent_key.public_key().agent_id();

        let seq = rogue.next_seq();
        let said = items(b"what the rogue said");
        rogue
            .write_origin(&wire::encode_origin(TOPIC, seq, None, &said).unwrap())
            .await;
        let got = within("the origin frame is delivered", sub.next_batch(16))
            .await
            .unwrap();
        assert_eq!(
            got.iter()
                .map(|m| (m.sender, m.hops, m.payload.clone()))
                .collect::<Vec<_>>(),
            vec![(rogue_id, 1, said[0].payload.clone())],
            "the sender is the link's peer"
        );
        assert_eq!(honest.stats().origin_delivered, before.origin_delivered + 1);

        let envelope = wire::seal(&rogue.agent_key, seq, TOPIC, items(b"what it signed")).unwrap();
        rogue.broadcast(envelope).await;
        let (code, reason) = rogue.closed_by_peer().await;
        assert_eq!(
            (code, &reason[..]),
            (4, &b"signed another batch than its origin frame"[..])
        );
        wait_until("the mismatch is counted", || {
            honest.stats().origin_mismatches == before.origin_mismatches + 1
        })
        .await;
        wait_until("the rogue stops being a neighbour", || {
            honest.stats().neighbours == 0
        })
        .await;
        assert_eq!(
            sub.try_next_batch(16),
            Some(vec![]),
            "the signed batch is not delivered"
        );
        assert_eq!(
            Drops::of(honest.stats()),
            Drops::of(before),
            "no strike: a close"
        );

        two_way_exchange(&honest, &sub, "after equivocation").await;
        close_cleanly(honest, sub).await;
    })
    .await;
}

/// Origin frames that do not decode or break an envelope's limits are dropped as malformed,
/// each a strike; nothing of them is delivered, and a matching signed envelope afterwards is
/// delivered as usual.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_origin_frames_are_strikes() {
    bounded(TEST_LIMIT, async {
        let (honest, sub) = honest_agent().await;
        let mut rogue = Rogue::join(&honest).await;
        let before = honest.stats();

        let seq = rogue.next_seq();
        let one = items(b"x");
        let good = wire::encode_origin(TOPIC, seq, None, &one).unwrap();
        let too_many = vec![one[0].clone(); 257];
        let bad: Vec<Vec<u8>> = vec![
            Vec::new(),
            vec![0xff; 16],
            good[..good.len() - 1].to_vec(),
            wire::encode_origin("", seq, None, &one).unwrap(),
            wire::encode_origin(TOPIC, seq, None, &[]).unwrap(),
            wire::encode_origin(TOPIC, seq, None, &too_many).unwrap(),
            wire::encode_origin(TOPIC, seq, Some(seq), &one).unwrap(),
        ];
        for body in &bad {
            rogue.write_origin(body).await;
        }
        rogue.sentinel(&sub, "after malformed origin frames").await;
        let after = honest.stats();
        assert_eq!(
            Drops::of(after),
            Drops::of(before).plus(Drops {
                malformed: bad.len() as u64,
                ..Drops::default()
            })
        );
        assert_eq!(after.origin_frames_in, before.origin_frames_in);
        assert!(rogue.connection.close_reason().is_none(), "still connected");
        close_cleanly(honest, sub).await;
    })
    .await;
}
