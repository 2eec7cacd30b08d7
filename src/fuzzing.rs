//! The private items the fuzz targets (fuzz/) need, exposed only when x0x is built for fuzzing:
//! cargo-fuzz passes `--cfg fuzzing` to every crate it builds, and a normal build has no such
//! module. The targets use these instead of copies, so they always fuzz what x0x runs. Not an API.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use iroh_gossip::proto;
use rand::rngs::StdRng;
use rand::SeedableRng;
use tokio::time::Instant;

use crate::context::AgentContext;
use crate::error::Result;
use crate::identity::{AgentId, PublicKey};
use crate::overlay::links::Outgoing;
use crate::overlay::node::{Action, Connected, Input, Node};
use crate::pubsub::{Message, Registry, Subscription};
use crate::replica::{Replica, SyncMessage};
use crate::stats::Counters;
use crate::streams::{Incoming, KeyStore, Received, StreamReader};
use crate::tasklist::{TaskId, TaskListState};
use crate::tasklists::{PersistedList, Store};

use crate::gossip::MAX_STRIKES;

/// `replay::WINDOW`: how far below a sender's highest sequence number is still accepted.
pub const WINDOW: u64 = crate::replay::WINDOW;

/// `gossip::proto_config`: the configuration of an agent's gossip state machine.
pub fn proto_config() -> proto::Config {
    crate::overlay::node::proto_config()
}

/// Whether `payload`, as a pub/sub payload of the list with id `list_id`, opens with the list's
/// key (`replica::ListChannel::open`, which `TaskList::on_message` runs first).
pub fn opens_as_sync_message(list_id: [u8; 32], payload: &[u8]) -> bool {
    crate::replica::ListChannel::new(&crate::tasklist::ListId(list_id))
        .open(payload)
        .is_some()
}

/// Decodes an opened task list pub/sub payload (`replica::SyncMessage`): the name and state of a delta
/// or full-state chunk, `None` for a request.
pub fn decode_sync_message(
    payload: &[u8],
) -> std::result::Result<Option<(String, TaskListState)>, postcard::Error> {
    Ok(match postcard::from_bytes::<SyncMessage>(payload)? {
        SyncMessage::Delta { name, state } | SyncMessage::Full { name, state } => {
            Some((name, state))
        }
        SyncMessage::Request => None,
    })
}

/// `Replica::receive`, what `TaskList::on_message` runs on what the list's key opened (a
/// postcard `SyncMessage`), on a replica holding `state`: the state after, the tasks it reports
/// changed, and how many messages it answers with.
pub fn receive_sync_message(
    state: &TaskListState,
    payload: &[u8],
) -> std::result::Result<(TaskListState, Vec<TaskId>, usize), postcard::Error> {
    let mut replica = Replica::new(String::new(), state.clone());
    let received = replica.receive(postcard::from_bytes(payload)?, Instant::now());
    Ok((replica.state, received.changed, received.answer.len()))
}

/// The payloads a list named `name` sends: a delta and a full-state chunk of `state`, and a
/// request.
pub fn encode_sync_messages(name: &str, state: &TaskListState) -> Vec<Vec<u8>> {
    [
        SyncMessage::Delta {
            name: name.into(),
            state: state.clone(),
        },
        SyncMessage::Full {
            name: name.into(),
            state: state.clone(),
        },
        SyncMessage::Request,
    ]
    .iter()
    .map(|message| crate::wire::encode(message).expect("a sync message encodes"))
    .collect()
}

/// Decodes a task list file as `Store::load_all` does (`Store::decode`: magic, version,
/// checksum, then the postcard `tasklists::PersistedList`); returns the list's name and state.
pub fn decode_list_file(bytes: &[u8]) -> std::result::Result<(String, TaskListState), String> {
    Store::decode(bytes).map(|list| (list.name, list.state))
}

/// A task list file as `Store::save` writes it (`Store::encode`).
pub fn encode_list_file(
    id: [u8; 32],
    name: &str,
    me: [u8; 32],
    state: TaskListState,
) -> Result<Vec<u8>> {
    Store::encode(&PersistedList {
        id,
        name: name.into(),
        me,
        state,
    })
}

// ---------------------------------------------------------------------------------------------
// The real overlay node, for the `frame` target.

/// The connection id the harness gives its one connection.
const CONN_ID: u64 = 1;
/// The round-trip time the harness reports with IHaves (the driver reads the connection's).
const RTT: Duration = Duration::from_millis(40);

/// The real sans-IO overlay node (`overlay::node::Node`) with one connection, to one peer,
/// driven as the driver (`gossip`) and the simulator drive it: inputs at a simulated time,
/// every action carried out or recorded, timers fired at `poll_timeout`. The peer's frames go
/// through a real `streams::StreamReader` (with a `KeyStore` as the driver keeps one) first,
/// as the driver's read loop hands them on, strikes included.
pub struct NodeHarness {
    node: Node,
    context: Arc<AgentContext>,
    /// The publisher keys the agent verified envelopes with (the driver's, in `gossip::Shared`).
    keys: KeyStore,
    now: Instant,
    subscriptions: Vec<Subscription>,
    /// The peer of the connection, once reported.
    peer: Option<AgentId>,
    /// The reader of the connection's stream, and the strikes against the connection.
    reader: StreamReader,
    strikes: u32,
    /// The node adopted the connection (and has not closed it).
    open: bool,
    /// The node (or the reader) closed the connection.
    closed_by_us: bool,
    /// The frames of every `Action::Send`, oldest first.
    sent: Vec<Bytes>,
}

impl NodeHarness {
    /// A node for agent `me` (whose public key is `key`, for the key store), advertising
    /// `listen`, built as the simulator builds one; `seed` seeds every random choice it makes.
    pub fn new(me: AgentId, key: PublicKey, listen: SocketAddr, seed: u64) -> Result<Self> {
        let context = Arc::new(AgentContext::new(
            Arc::new(Counters::default()),
            Arc::new(Registry::default()),
        ));
        let now = Instant::now();
        let rng = StdRng::seed_from_u64(seed);
        let node = Node::new(me, 1, listen, Arc::clone(&context), rng, now)?;
        Ok(Self {
            node,
            context,
            keys: KeyStore::new(key),
            now,
            subscriptions: Vec::new(),
            peer: None,
            reader: StreamReader::default(),
            strikes: 0,
            open: false,
            closed_by_us: false,
            sent: Vec::new(),
        })
    }

    /// Subscribes the agent to `topic`: what the node delivers there comes out of
    /// [`NodeHarness::take_delivered`].
    pub fn subscribe(&mut self, topic: &str) -> Result<()> {
        let subscription = self.context.registry.subscribe(topic, usize::MAX >> 1)?;
        self.subscriptions.push(subscription);
        Ok(())
    }

    /// `join_network` through `bootstrap` (empty: the first node of a network). The dials it
    /// asks for are not carried out; report one with [`NodeHarness::connected`].
    pub fn join(&mut self, bootstrap: &[SocketAddr]) {
        self.input(Input::Join {
            waiter: 1,
            bootstrap: bootstrap.to_vec(),
            patience: Duration::from_secs(5),
        });
    }

    /// The connection to `peer` (who listens at `listen`) is up, its hello verified: the node's
    /// own dial to a bootstrap peer (`bootstrap`), or a connection the peer dialed.
    pub fn connected(&mut self, peer: AgentId, listen: SocketAddr, bootstrap: bool) {
        self.peer = Some(peer);
        self.input(Input::Connected(Connected {
            conn_id: CONN_ID,
            peer,
            incarnation: 1,
            listen,
            peers: Vec::new(),
            remote: listen,
            bootstrap,
        }));
    }

    /// One frame the peer sent (kind byte and body), as the driver's read loop handles it
    /// (`gossip::read_frames`): through the connection's `StreamReader`, then, if it is a gossip
    /// message, `check` sees what the reader returned before the node gets it. A rejected frame
    /// is a strike; `MAX_STRIKES` of them close the connection. Then `gap` of simulated time
    /// passes (the timers due meanwhile fire, at most `max_timers` times). False once the
    /// connection is closed (nothing more is read from it).
    pub fn frame(
        &mut self,
        frame: &[u8],
        gap: Duration,
        max_timers: usize,
        check: impl FnOnce(&Received),
    ) -> bool {
        let Some(peer) = self.peer.filter(|_| self.open) else {
            return false;
        };
        match self.reader.read(frame, &self.keys) {
            Ok(None) | Ok(Some(Incoming::Card(_))) => {}
            Ok(Some(Incoming::Directory(message))) => {
                self.input(Input::Directory { peer, message })
            }
            Ok(Some(Incoming::Origin(origin))) => self.input(Input::Origin { peer, origin }),
            Ok(Some(Incoming::Gossip(received))) => {
                check(&received);
                let rtt = if received.payload.is_none() && received.ihave_round.is_some() {
                    RTT
                } else {
                    Duration::ZERO
                };
                self.input(Input::Frame {
                    peer,
                    received,
                    rtt,
                });
            }
            Err(_) => {
                self.strikes += 1;
                if self.strikes >= MAX_STRIKES {
                    self.open = false;
                    self.closed_by_us = true;
                    return false;
                }
            }
        }
        self.advance(gap, max_timers);
        self.open
    }

    /// The connection ended: the peer finished its stream, or the node closed the connection.
    pub fn end(&mut self) {
        if let Some(peer) = self.peer.take() {
            self.open = false;
            self.input(Input::Closed {
                peer,
                conn_id: CONN_ID,
                by_peer: !self.closed_by_us,
            });
        }
    }

    /// Lets `by` of simulated time pass, firing the timers due meanwhile (at most `max` times).
    pub fn advance(&mut self, by: Duration, max: usize) {
        let until = self.now + by;
        for _ in 0..max {
            match self.node.poll_timeout() {
                Some(at) if at <= until => self.fire(at),
                _ => break,
            }
        }
        self.now = self.now.max(until);
    }

    /// Fires the next `max` timers, moving the clock to each.
    pub fn run_timers(&mut self, max: usize) {
        for _ in 0..max {
            let Some(at) = self.node.poll_timeout() else {
                return;
            };
            self.fire(at);
        }
    }

    /// The gossip frames the node sent (`Action::Send`: encoded gossip messages) since the last
    /// call.
    pub fn take_sent(&mut self) -> Vec<Bytes> {
        std::mem::take(&mut self.sent)
    }

    /// What the node delivered to the subscriptions since the last call.
    pub fn take_delivered(&mut self) -> Vec<Message> {
        self.subscriptions
            .iter()
            .filter_map(|subscription| subscription.try_next_batch(usize::MAX))
            .flatten()
            .collect()
    }

    fn fire(&mut self, at: Instant) {
        self.now = self.now.max(at);
        self.node.handle_timeout(self.now);
        self.carry_out();
    }

    fn input(&mut self, input: Input) {
        self.node.handle(input, self.now);
        self.carry_out();
    }

    /// Carries out the node's actions: sends are recorded, the connection adopted or closed;
    /// dials are never answered (the peer is the only one there is).
    fn carry_out(&mut self) {
        while let Some(action) = self.node.poll_action() {
            match action {
                Action::Send {
                    frame: Outgoing::Gossip(frame),
                    ..
                } => self.sent.push(frame),
                // The harness has one peer; lookups it starts go nowhere.
                Action::Send {
                    frame: Outgoing::Directory(_) | Outgoing::Card(_) | Outgoing::Origin(_),
                    ..
                } => {}
                Action::Adopt { conn_id } if conn_id == CONN_ID => {
                    self.open = !self.closed_by_us;
                }
                Action::Close { conn_id, .. } if conn_id == CONN_ID => {
                    self.open = false;
                    self.closed_by_us = true;
                }
                // Its stream is still read until the grace ends (the peer's frames keep coming).
                Action::CloseAfterGrace { .. }
                | Action::Adopt { .. }
                | Action::Close { .. }
                | Action::Dial { .. }
                | Action::JoinDone { .. }
                | Action::PeerSample(_)
                | Action::Located { .. }
                | Action::Found { .. } => {}
            }
        }
    }
}
