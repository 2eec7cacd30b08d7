//! The overlay node: every decision an agent's network layer makes, as a sans-IO state machine.
//!
//! [`Node`] wraps iroh-gossip's `proto` state machine (HyParView membership, Plumtree broadcast)
//! with what x0x adds to it: the connection table, joins, overlay repair (top-ups, early
//! shuffles, probes of lost peers), duplicate filtering, IHave holds and recent-payload
//! announcements. It never touches a socket, a task or a clock: the caller feeds it [`Input`]s
//! with the current time, reads its [`Action`]s with [`Node::poll_action`], and calls
//! [`Node::handle_timeout`] when [`Node::poll_timeout`] is due. The tokio driver
//! (`crate::gossip`) is one such caller; tests and the simulator are others.
//!
//! Every agent joins one membership swarm, the network topic, which carries no payloads. Each
//! application topic has a swarm of its own (`wire::topic_swarm`), joined only by agents that
//! subscribe to the topic or publish on it; they find each other through the directory
//! (`overlay::directory`). Frames reach the node already verified (the driver's readers check
//! every signature, and that an envelope travels in its topic's swarm), so nothing unverified
//! is ever delivered or forwarded.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use iroh_gossip::proto::{self, Command as ProtoCommand, InEvent, OutEvent, PeerData, TopicId};
use rand::rngs::StdRng;
use rand::seq::IteratorRandom;
use tokio::time::Instant;

use crate::context::{AgentContext, Mode};
use crate::duplicates::Verdict;
use crate::error::{Error, ErrorKind, Result};
use crate::events::Event;
use crate::identity::AgentId;
use crate::net;
use crate::overlay::broadcast::{OriginVerdict, SealedVerdict, Tuning};
use crate::overlay::directory::{self, Directory, Purpose};
use crate::overlay::links::{Added, Ended, Link, Links, Outgoing};
use crate::overlay::membership::{Membership, Repair, REPAIR_DIAL_TIMEOUT};
use crate::streams::{Payload, Received};
use crate::wire::{self, GOSSIP_MAX_MESSAGE_SIZE};

/// How often an agent with too few neighbours reaches out to one more known peer.
const TOP_UP_PERIOD: Duration = Duration::from_secs(1);
/// Below this many neighbours an agent tops up. HyParView refills its active view only from its
/// passive view, once per failure, and drops passive peers it could not reach — so after a
/// partition (or many crashes) an agent can stay with one neighbour, or a healed partition can
/// stay split for good. Reaching out to known and bootstrap addresses repairs both.
const TOP_UP_BELOW: usize = 3;
/// Neighbours each agent keeps at most (HyParView's active view; iroh-gossip's default).
const ACTIVE_VIEW_CAPACITY: usize = 5;
/// How often the gossip layer swaps a sample of the peers it knows with the peer at the end of
/// a random walk (HyParView's shuffle), the way agents learn of peers beyond their neighbours.
/// iroh-gossip's default, 60 s, left an agent that joined less than a minute ago knowing
/// little more than its neighbours: when they died it had nobody to dial (R3b: a publisher
/// alone for good; R3: a survivor stuck at 2 neighbours).
const SHUFFLE_INTERVAL: Duration = Duration::from_secs(10);
/// An agent that knows fewer peers than this besides its neighbours shuffles at once rather
/// than at the next interval (backing off while that teaches it nothing new: a small network
/// has no more peers), as does one short of neighbours with nobody to dial; at most once per
/// [`MIN_SHUFFLE_GAP`].
const KNOWN_BELOW: usize = 4;
const MIN_SHUFFLE_GAP: Duration = Duration::from_secs(1);
/// A connection that is nobody's neighbour in any swarm and carried nothing for this long is
/// closed: lookups reach many peers once, and every open connection costs keep-alives. (Closing
/// one that had just carried a neighbour request cost the peer that accepted it a neighbour.)
const LINK_IDLE: Duration = Duration::from_secs(10);
/// Envelopes published on a topic whose swarm has no neighbour yet are kept for the first one
/// (at most this many and this many bytes per topic, none older than [`WAITING_MAX_AGE`]): a
/// publisher alone on a topic must not hold what it publishes without bound.
const WAITING_CAP: usize = 1024;
const WAITING_BYTES: usize = 1 << 20;
const WAITING_MAX_AGE: Duration = Duration::from_secs(10);
/// Swarm neighbours an agent wants before it stops joining through the members it finds (the
/// rest of the swarm reaches it through HyParView's walks).
const SWARM_JOIN_VIA: usize = 3;
/// Members an agent without swarm neighbours joins through at once: records of members that
/// crashed live on for minutes, and one live member is all it needs.
const LONELY_JOIN_VIA: usize = 5;
/// How long an agent stays in the swarm of a topic it published on but does not subscribe to,
/// after its last publish there: a publisher of many topics must not keep them all.
const PUBLISHER_STAYS: Duration = Duration::from_secs(600);
/// The longest a swarm without neighbours waits between lookups (starting at 1 s, doubling).
const LONELY_LOOKUP_MAX: Duration = Duration::from_secs(30);
/// The membership swarm every agent joins; it carries no payloads.
pub fn network_topic() -> TopicId {
    TopicId::from_bytes(*blake3::hash(b"x0x/network/v1").as_bytes())
}

pub(crate) fn proto_config() -> proto::Config {
    let mut config = proto::Config {
        max_message_size: GOSSIP_MAX_MESSAGE_SIZE,
        ..Default::default()
    };
    // How long a node that heard of a message only lazily (IHave) waits for it before asking
    // (Graft). The defaults (80/40 ms) cause Graft storms when a burst queues the eager path
    // on 2 cores; 1 s made many senders at once wait a second (one eager set serves every
    // sender, so pruning for one sender's duplicates breaks another's tree, and repair is the
    // lazy path; see `duplicates`). 10 agents all publishing at once (R2) finish without
    // Graft storms at 150/75 ms. On 50 ms RTT links with 5% loss (R1, 20 agents) a longer
    // timeout barely saves duplicates and costs latency: 150, 250, 350 ms gave p99 490, 705,
    // 799 ms and 0.8, 0.66, 0.6 duplicates per payload.
    config.broadcast.graft_timeout_1 = Duration::from_millis(150);
    config.broadcast.graft_timeout_2 = Duration::from_millis(75);
    // Payloads kept to answer Grafts. The default 30 s holds 30 s of traffic in memory (at
    // 100k msg/s of 256 B, 25+ MiB); repair asks within a second, so 5 s is ample.
    config.broadcast.message_cache_retention = Duration::from_secs(5);
    config.membership.shuffle_interval = SHUFFLE_INTERVAL;
    config.membership.active_view_capacity = ACTIVE_VIEW_CAPACITY;
    config
}

/// Whether `timer` is the gossip layer's next shuffle (scheduled [`SHUFFLE_INTERVAL`] ahead).
/// Timers are opaque; their debug form names the kind (tested against the pinned version).
fn is_shuffle_timer(delay: Duration, timer: &proto::Timer<AgentId>) -> bool {
    if delay != SHUFFLE_INTERVAL {
        return false;
    }
    let timer = format!("{timer:?}");
    // Topic swarms shuffle too: only the membership swarm's is fired early.
    timer.contains("Swarm(DoShuffle)") && timer.contains(&format!("{:?}", network_topic()))
}

/// How one round of dials to the bootstrap peers ended: a neighbour is up, or every dial
/// failed (each address with its error), or the round was abandoned (left, aborted, closed).
pub type JoinOutcome = std::result::Result<(), JoinFailure>;

/// Why a join round ended without a neighbour.
#[derive(Clone, Debug)]
pub enum JoinFailure {
    /// Every bootstrap dial failed: each address, with why.
    Unreachable(Vec<(SocketAddr, Error)>),
    /// Not worth another round (the agent left or closed, or the join was abandoned).
    Ended(Error),
}

/// A connection whose peer proved its identity (the hello), waiting for the node to keep it
/// ([`Action::Adopt`]) or close it.
#[derive(Debug)]
pub(crate) struct Connected {
    /// The driver's name for the connection, unique per node.
    pub conn_id: u64,
    pub peer: AgentId,
    /// The peer agent run's incarnation (changes when it restarts).
    pub incarnation: u64,
    /// Where the peer accepts connections.
    pub listen: SocketAddr,
    /// Other peers' addresses the peer passed on in its hello.
    pub peers: Vec<SocketAddr>,
    /// The address the connection reached us from (or that we dialed).
    pub remote: SocketAddr,
    /// We dialed it as a bootstrap, top-up or probe peer (not to send it a queued frame).
    pub bootstrap: bool,
}

/// What happens to a node.
#[derive(Debug)]
pub(crate) enum Input {
    /// `join_network`: dial each of `bootstrap` (each dial given up after `patience`); answered
    /// by [`Action::JoinDone`] naming `waiter`.
    Join {
        waiter: u64,
        bootstrap: Vec<SocketAddr>,
        patience: Duration,
    },
    /// Leave the network gracefully.
    Leave,
    /// Broadcast a signed envelope (our own).
    Broadcast(Bytes),
    /// Send an origin frame (`body`, a `wire::Origin` of our own, not signed yet) to our
    /// neighbours in swarm `swarm`; its signed envelope follows as [`Input::Broadcast`].
    SendOrigin {
        swarm: [u8; 32],
        body: Bytes,
    },
    /// An origin frame from `peer` (decoded and bounded by the reader; not signed).
    Origin {
        peer: AgentId,
        origin: wire::Origin,
    },
    Connected(Connected),
    /// A dial failed; `peer` is whom we expected there, if anyone.
    DialFailed {
        addr: SocketAddr,
        peer: Option<AgentId>,
        bootstrap: bool,
        error: Error,
    },
    /// A verified frame from `peer`; `rtt` is its connection's round-trip time (read only for
    /// IHaves; zero otherwise).
    Frame {
        peer: AgentId,
        received: Received,
        rtt: Duration,
    },
    /// A connection ended. `by_peer`: the peer ended it itself (it is alive), rather than it
    /// timing out or failing.
    Closed {
        peer: AgentId,
        conn_id: u64,
        by_peer: bool,
    },
    /// The driver cut a link loose (its peer stopped reading).
    LinkFailed {
        peer: AgentId,
        conn_id: u64,
    },
    /// A directory message from `peer` (decoded by the reader).
    Directory {
        peer: AgentId,
        message: directory::Message,
    },
    /// Where does `agent` listen? Answered by [`Action::Located`] naming `waiter`.
    Locate {
        waiter: u64,
        agent: AgentId,
    },
    /// This agent advertises the capabilities with these rendezvous keys (and no others).
    Advertise {
        keys: BTreeSet<directory::Key>,
    },
    /// Which agents advertise the capability with rendezvous key `key`? Answered by
    /// [`Action::Found`] naming `waiter`.
    Find {
        waiter: u64,
        key: directory::Key,
    },
}

/// What the node asks its driver to do.
#[derive(Debug)]
pub(crate) enum Action {
    /// Queue `frame` on the connection.
    Send { conn_id: u64, frame: Outgoing },
    /// Dial `addr` (expecting `expected` there, if set); report [`Input::Connected`] or
    /// [`Input::DialFailed`] with the same `bootstrap`, within `timeout`.
    Dial {
        addr: SocketAddr,
        expected: Option<AgentId>,
        bootstrap: bool,
        timeout: Duration,
    },
    /// Keep the connection just reported as [`Input::Connected`]: read and write it.
    Adopt { conn_id: u64 },
    /// Close the connection now.
    Close {
        conn_id: u64,
        code: u32,
        reason: &'static [u8],
    },
    /// Finish sending what is queued on the connection, then close it.
    CloseAfterGrace { conn_id: u64, reason: &'static [u8] },
    /// The join attempts of these waiters ended.
    JoinDone {
        waiters: Vec<u64>,
        outcome: JoinOutcome,
    },
    /// Addresses the next hellos pass on.
    PeerSample(Vec<SocketAddr>),
    /// The answer to [`Input::Locate`]: where the agent may listen (none: not found).
    Located {
        waiters: Vec<u64>,
        addrs: Vec<SocketAddr>,
    },
    /// The answer to [`Input::Find`]: agents with records under the key, and where they listen.
    Found {
        waiters: Vec<u64>,
        members: Vec<(AgentId, SocketAddr)>,
    },
}

/// A capability this agent advertises: where its record is kept, and when to renew it.
#[derive(Debug)]
struct Advert {
    registered_with: Vec<AgentId>,
    next_lookup: Instant,
}

#[derive(Debug)]
struct JoinAttempt {
    waiters: Vec<u64>,
    outstanding: usize,
    /// A bootstrap peer answered: wait for the neighbourship rather than fail.
    answered: bool,
    errors: Vec<(SocketAddr, Error)>,
}

#[derive(Debug)]
enum Timer {
    /// One of the gossip layer's own.
    Proto(proto::Timer<AgentId>),
    /// An IHave held back (see `ihave_hold`), from a neighbour in a swarm.
    HeldIhave(TopicId, AgentId, proto::Message<AgentId>),
    /// Overlay repair, every [`TOP_UP_PERIOD`].
    Repair,
}

/// Timers by when they are due; the sequence number keeps insertion order among equal times.
type TimerKey = (Instant, u64);

/// One agent's overlay state machine (see the module docs). Collections whose order reaches a
/// decision are ordered (B-trees), so one seed gives one run.
pub(crate) struct Node {
    me: AgentId,
    incarnation: u64,
    /// The address our hellos and peer data advertise.
    listen: SocketAddr,
    /// The time of the input being handled (never goes backwards).
    now: Instant,
    rng: StdRng,
    state: proto::State<AgentId, StdRng>,
    context: Arc<AgentContext>,
    mode: Mode,
    out: VecDeque<Action>,
    timers: BTreeMap<TimerKey, Timer>,
    next_timer: u64,
    /// The gossip layer's pending shuffle timer, fired early by [`Node::shuffle_now`].
    shuffle_timer: Option<TimerKey>,
    last_shuffle: Option<Instant>,
    /// How long [`Node::learn_peers`] waits between shuffles, and how many other peers this
    /// agent knew at its last one.
    learn_gap: Duration,
    known_at_learn: usize,
    links: Links,
    neighbours: BTreeSet<AgentId>,
    join: Option<JoinAttempt>,
    /// Known peers, lost peers and repair dials.
    members: Membership,
    /// The topic swarms this agent takes part in, by swarm id.
    swarms: BTreeMap<TopicId, Swarm>,
    /// The registry's interest version the swarms were last matched with.
    interest_version: u64,
    /// Member records kept for others, and lookups under way.
    directory: Directory,
    /// When each link last carried a frame other than a payload, or was opened (see
    /// [`LINK_IDLE`]).
    link_used: BTreeMap<AgentId, Instant>,
    /// Whether this agent looked itself up since it joined.
    announced: bool,
    /// [`Input::Locate`] waiters, by the agent they look for.
    locating: BTreeMap<AgentId, Vec<u64>>,
    /// The capabilities this agent advertises, by rendezvous key.
    adverts: BTreeMap<directory::Key, Advert>,
    /// [`Input::Find`] waiters, by the key they look up.
    finding: BTreeMap<directory::Key, Vec<u64>>,
    /// Our high-priority `Neighbor` request (see [`Node::ask_to_be_neighbour`]).
    neighbour_request: Bytes,
    /// The envelope being handed to the gossip layer, as its reader decoded and verified it:
    /// delivered from here when the layer passes it on, without decoding it again.
    arriving: Option<Payload>,
}

/// One topic swarm this agent takes part in.
struct Swarm {
    topic: Arc<str>,
    /// Where its members register (`wire::rendezvous_key`).
    key: directory::Key,
    subscribed: bool,
    /// When this agent last published on the topic, if it did.
    published: Option<Instant>,
    neighbours: BTreeSet<AgentId>,
    /// Our envelopes published before the swarm had a neighbour, oldest first.
    waiting: VecDeque<(Instant, Bytes)>,
    /// Duplicate filter, IHave holds, recent payloads.
    tuning: Tuning,
    /// When to look its members up next (and register), and the wait before that.
    next_lookup: Instant,
    lookup_gap: Duration,
    /// The agents keeping our record (told when we leave).
    registered_with: Vec<AgentId>,
    /// Members joined through since the last lookup ended.
    tried: BTreeSet<AgentId>,
    /// The next lookup asks a member it finds to be a neighbour even when the swarm has enough
    /// (after a lost peer answered again: parts of the swarm may have formed apart).
    merge_next: bool,
}

impl Node {
    /// A node for agent `me` (run `incarnation`), advertising `listen`; `rng` seeds every
    /// random choice it and its gossip layer make.
    pub(crate) fn new(
        me: AgentId,
        incarnation: u64,
        listen: SocketAddr,
        context: Arc<AgentContext>,
        mut rng: StdRng,
        now: Instant,
    ) -> Result<Self> {
        let listen_data = wire::encode(&listen)?;
        let neighbour_request = Bytes::from(wire::neighbour_request_frame(
            network_topic().as_bytes(),
            &listen_data,
        ));
        let me_data = PeerData::new(listen_data);
        let proto_rng = rand::SeedableRng::from_rng(&mut rng);
        let mut node = Self {
            me,
            incarnation,
            listen,
            now,
            rng,
            state: proto::State::new(me, me_data, proto_config(), proto_rng),
            context,
            mode: Mode::Left,
            out: VecDeque::new(),
            timers: BTreeMap::new(),
            next_timer: 0,
            shuffle_timer: None,
            last_shuffle: None,
            learn_gap: MIN_SHUFFLE_GAP,
            known_at_learn: 0,
            links: Links::default(),
            neighbours: BTreeSet::new(),
            join: None,
            members: Membership::default(),
            swarms: BTreeMap::new(),
            interest_version: u64::MAX,
            directory: Directory::default(),
            link_used: BTreeMap::new(),
            announced: false,
            locating: BTreeMap::new(),
            adverts: BTreeMap::new(),
            finding: BTreeMap::new(),
            neighbour_request,
            arriving: None,
        };
        node.set_timer(Duration::ZERO, Timer::Repair);
        Ok(node)
    }

    /// Handles one input at time `now`; its actions wait in [`Node::poll_action`].
    pub(crate) fn handle(&mut self, input: Input, now: Instant) {
        self.advance(now);
        self.match_interest();
        match input {
            Input::Join {
                waiter,
                bootstrap,
                patience,
            } => self.start_join(waiter, bootstrap, patience),
            Input::Leave => self.leave(),
            Input::Broadcast(envelope) => self.broadcast(envelope),
            Input::SendOrigin { swarm, body } => self.send_origin(swarm, body),
            Input::Origin { peer, origin } => self.on_origin(peer, origin),
            Input::Connected(connected) => self.on_connected(connected),
            Input::DialFailed {
                addr,
                peer,
                bootstrap,
                error,
            } => self.on_dial_failed(addr, peer, bootstrap, error),
            Input::Frame {
                peer,
                received,
                rtt,
            } => self.on_frame(peer, received, rtt),
            Input::Closed {
                peer,
                conn_id,
                by_peer,
            } => self.on_closed(peer, conn_id, by_peer),
            Input::LinkFailed { peer, conn_id } => {
                if self.links.remove_connection(&peer, conn_id).is_some() {
                    self.proto(InEvent::PeerDisconnected(peer));
                    self.unreachable(peer);
                }
            }
            Input::Directory { peer, message } => self.on_directory(peer, message),
            Input::Locate { waiter, agent } => self.locate(waiter, agent),
            Input::Advertise { keys } => self.advertise(keys),
            Input::Find { waiter, key } => {
                if self.mode == Mode::Left {
                    self.out.push_back(Action::Found {
                        waiters: vec![waiter],
                        members: Vec::new(),
                    });
                } else {
                    self.finding.entry(key).or_default().push(waiter);
                    self.look_up(Purpose::Capability(key));
                }
            }
        }
    }

    /// Advertises exactly the capabilities with rendezvous keys `keys`: records of others are
    /// taken back, new ones registered at once.
    fn advertise(&mut self, keys: BTreeSet<directory::Key>) {
        let gone: Vec<directory::Key> = self
            .adverts
            .keys()
            .filter(|key| !keys.contains(*key))
            .copied()
            .collect();
        for key in gone {
            if let Some(advert) = self.adverts.remove(&key) {
                self.directory.unregister(&key, &self.me);
                for at in advert.registered_with {
                    self.send_directory(at, &directory::Message::Unregister { key });
                }
            }
        }
        let now = self.now;
        for key in keys {
            self.adverts.entry(key).or_insert(Advert {
                registered_with: Vec::new(),
                next_lookup: now,
            });
        }
        self.tend_swarms();
    }

    /// Answers the find waiters for `key` with `members`.
    fn found(&mut self, key: &directory::Key, members: Vec<(AgentId, SocketAddr)>) {
        if let Some(waiters) = self.finding.remove(key) {
            self.out.push_back(Action::Found { waiters, members });
        }
    }

    /// Answers where `agent` listens from the address book, or looks it up in the directory.
    fn locate(&mut self, waiter: u64, agent: AgentId) {
        let known = self.addresses_of(&agent);
        if !known.is_empty() || self.mode == Mode::Left || agent == self.me {
            self.out.push_back(Action::Located {
                waiters: vec![waiter],
                addrs: known,
            });
            return;
        }
        self.locating.entry(agent).or_default().push(waiter);
        self.look_up(Purpose::Agent(agent));
    }

    /// The addresses this agent knows for `agent`: where it listens, and where a link to it
    /// reached it.
    fn addresses_of(&self, agent: &AgentId) -> Vec<SocketAddr> {
        let mut addrs: Vec<SocketAddr> = self.members.address(agent).into_iter().collect();
        if let Some(link) = self.links.get(agent) {
            if !addrs.contains(&link.remote) {
                addrs.push(link.remote);
            }
        }
        addrs
    }

    /// Answers the locate waiters for `agent` with `addrs`.
    fn located(&mut self, agent: &AgentId, addrs: Vec<SocketAddr>) {
        if let Some(waiters) = self.locating.remove(agent) {
            self.out.push_back(Action::Located { waiters, addrs });
        }
    }

    /// Joins and leaves topic swarms as the agent's subscriptions changed.
    pub(crate) fn sync_topics(&mut self, now: Instant) {
        self.advance(now);
        self.match_interest();
    }

    /// Stops a join that is still waiting for its first neighbour. True if it stopped one,
    /// false if the join had succeeded (or there was none).
    pub(crate) fn abort_join(&mut self, now: Instant) -> bool {
        self.advance(now);
        let aborted = self.mode == Mode::Joining;
        if aborted {
            self.end_join(Err(JoinFailure::Ended(Error::new(
                ErrorKind::Timeout,
                "the join was abandoned",
            ))));
            self.proto(InEvent::Command(network_topic(), ProtoCommand::Quit));
            self.set_mode(Mode::Left);
        }
        aborted
    }

    /// The next action for the driver, oldest first.
    pub(crate) fn poll_action(&mut self) -> Option<Action> {
        self.out.pop_front()
    }

    /// When [`Node::handle_timeout`] is due next.
    pub(crate) fn poll_timeout(&self) -> Option<Instant> {
        self.timers.keys().next().map(|(at, _)| *at)
    }

    /// Fires every timer due at `now`.
    pub(crate) fn handle_timeout(&mut self, now: Instant) {
        self.advance(now);
        self.match_interest();
        while let Some(entry) = self.timers.first_entry() {
            if entry.key().0 > self.now {
                break;
            }
            let (key, timer) = entry.remove_entry();
            match timer {
                Timer::Proto(timer) => {
                    if self.shuffle_timer == Some(key) {
                        self.shuffle_timer = None;
                        self.last_shuffle = Some(self.now);
                    }
                    self.proto(InEvent::TimerExpired(timer));
                }
                Timer::HeldIhave(topic, peer, message) => {
                    // Not from a peer that left meanwhile: the gossip layer would graft from it.
                    if self
                        .swarms
                        .get(&topic)
                        .is_some_and(|swarm| swarm.neighbours.contains(&peer))
                    {
                        self.proto(InEvent::RecvMessage(peer, message));
                    }
                }
                Timer::Repair => {
                    self.top_up();
                    self.learn_peers();
                    self.probe_lost();
                    self.refresh_peer_sample();
                    self.tend_swarms();
                    self.close_idle_links();
                    self.expire_origins();
                    self.set_timer(TOP_UP_PERIOD, Timer::Repair);
                }
            }
        }
    }

    /// How many peers besides its neighbours this agent has an address for.
    pub(crate) fn others_known(&self) -> usize {
        self.members.others_known(self.me, &self.neighbours).count()
    }

    /// The current gossip neighbours.
    pub(crate) fn neighbours(&self) -> impl Iterator<Item = AgentId> + '_ {
        self.neighbours.iter().copied()
    }

    /// Open connections: links and spares.
    pub(crate) fn connections(&self) -> usize {
        self.links.connections()
    }

    fn advance(&mut self, now: Instant) {
        self.now = self.now.max(now);
    }

    fn set_mode(&mut self, mode: Mode) {
        self.mode = mode;
        self.context.set_mode(mode);
    }

    fn set_timer(&mut self, delay: Duration, timer: Timer) -> TimerKey {
        let key = (self.now + delay, self.next_timer);
        self.next_timer += 1;
        self.timers.insert(key, timer);
        key
    }

    /// Hands an event to the gossip layer and carries out what it asks for.
    fn proto(&mut self, event: InEvent<AgentId>) {
        // The iterator borrows the state: collect before acting on it.
        let out: Vec<_> = self.state.handle(event, self.now, None).collect();
        for event in out {
            self.apply(event);
        }
    }

    fn apply(&mut self, event: OutEvent<AgentId>) {
        match event {
            OutEvent::SendMessage(to, message) => match wire::encode(&message) {
                Ok(frame) => {
                    if let Some(envelope) = wire::gossip_data_content(&frame) {
                        if let Some(topic) = wire::claimed_topic(envelope) {
                            self.context.registry.traffic().sent(topic, envelope.len());
                        }
                    }
                    self.send_to(to, Outgoing::Gossip(Bytes::from(frame)));
                }
                Err(e) => log::error!("x0x: cannot encode a gossip message: {e}"),
            },
            OutEvent::EmitEvent(topic, event) if topic == network_topic() => self.on_gossip(event),
            OutEvent::EmitEvent(topic, event) => self.on_swarm_event(topic, event),
            OutEvent::ScheduleTimer(delay, timer) => {
                let shuffle = is_shuffle_timer(delay, &timer);
                let key = self.set_timer(delay, Timer::Proto(timer));
                if shuffle {
                    self.shuffle_timer = Some(key);
                }
            }
            OutEvent::DisconnectPeer(peer) => {
                // One swarm let the peer go; the connection stays while another keeps it, and
                // the swarms that do not have it as a neighbour hear it is gone for them.
                if self.is_neighbour_anywhere(&peer) {
                    let without: Vec<TopicId> = std::iter::once(network_topic())
                        .filter(|_| !self.neighbours.contains(&peer))
                        .chain(
                            self.swarms
                                .iter()
                                .filter(|(_, swarm)| !swarm.neighbours.contains(&peer))
                                .map(|(id, _)| *id),
                        )
                        .collect();
                    for topic in without {
                        let frame = wire::disconnect_frame(topic.as_bytes());
                        if let Ok(message) = postcard::from_bytes(&frame) {
                            self.proto(InEvent::RecvMessage(peer, message));
                        }
                    }
                    return;
                }
                if let Some(link) = self.links.remove(&peer) {
                    self.link_used.remove(&peer);
                    self.out.push_back(Action::CloseAfterGrace {
                        conn_id: link.conn_id,
                        reason: b"disconnect",
                    });
                    // The connection is gone for the proto now (as iroh-gossip's own driver
                    // tells it once the connection ends): else a neighbour request it had
                    // pending to this peer stays, and the peer's next request is taken for its
                    // reply and never answered, leaving a neighbourship only the peer knows.
                    // (Leaving the connection to the idle check instead: 15-40 thousand
                    // neighbourships lost in 60 idle seconds at 100 agents.)
                    self.proto(InEvent::PeerDisconnected(peer));
                }
            }
            OutEvent::PeerData(peer, data) => {
                if let Ok(addr) = postcard::from_bytes::<SocketAddr>(data.as_bytes()) {
                    // A wildcard names no host (agents advertise a concrete address): never
                    // let it replace one we know.
                    self.members.note_address(peer, addr);
                }
            }
        }
    }

    fn on_gossip(&mut self, event: proto::Event<AgentId>) {
        match event {
            proto::Event::NeighborUp(peer) => {
                if self.neighbours.insert(peer) {
                    self.context.set_neighbours(self.neighbours.len());
                    self.context.events.emit(Event::PeerJoined(peer));
                    if self.neighbours.len() == 1 {
                        self.context.events.emit(Event::Connected { neighbours: 1 });
                    }
                }
                if self.mode == Mode::Joining {
                    self.set_mode(Mode::Joined);
                }
                self.end_join(Ok(()));
                self.tend_swarms();
            }
            proto::Event::NeighborDown(peer) => self.lose_neighbour(peer),
            // The membership swarm carries no payloads (frames naming it are never data).
            proto::Event::Received(_) => {}
        }
    }

    /// An event of a topic swarm.
    fn on_swarm_event(&mut self, topic: TopicId, event: proto::Event<AgentId>) {
        let now = self.now;
        let Some(swarm) = self.swarms.get_mut(&topic) else {
            return;
        };
        match event {
            proto::Event::NeighborUp(peer) => {
                if !swarm.neighbours.insert(peer) {
                    return;
                }
                if swarm.neighbours.len() == 1 {
                    swarm.lookup_gap = Duration::ZERO;
                }
                self.context
                    .set_swarm_neighbours(&swarm.topic, swarm.neighbours.len());
                let announcement = swarm.tuning.recent_announcement(topic, now);
                let first = swarm.neighbours.len() == 1;
                if let Some(frame) = announcement {
                    // Those it lacks it grafts (see `Tuning::recent_announcement`).
                    self.send_to(peer, Outgoing::Gossip(frame));
                }
                if first {
                    self.flush_waiting(topic);
                }
            }
            proto::Event::NeighborDown(peer) => {
                if swarm.neighbours.remove(&peer) {
                    self.context
                        .set_swarm_neighbours(&swarm.topic, swarm.neighbours.len());
                    if swarm.neighbours.is_empty() {
                        // Alone: find the others again soon.
                        swarm.next_lookup = now;
                    }
                }
            }
            proto::Event::Received(gossip) => {
                swarm.tuning.count_delivery();
                let hops = delivery_hops(gossip.scope);
                // Verified by the reader before the proto saw it, and decoded there: the one
                // being received now. (Forwarded by the proto already, whatever happens to it
                // here.)
                let arrived = self.arriving.take();
                let decoded;
                let (sender, seq, topic, items) = match &arrived {
                    Some(read) if read.is_of(&gossip.content) => {
                        (read.publisher, read.seq, &*read.topic, &read.items[..])
                    }
                    _ => {
                        let Ok(envelope) = wire::open_verified(&gossip.content) else {
                            let counters = &self.context.counters;
                            counters.add(&counters.dropped_malformed, 1);
                            return;
                        };
                        decoded = envelope;
                        (
                            decoded.sender,
                            decoded.seq,
                            &*decoded.topic,
                            &decoded.items[..],
                        )
                    }
                };
                match swarm.tuning.sealed(sender, seq, (topic, items), hops, now) {
                    SealedVerdict::Fresh => {
                        self.context.registry.deliver(
                            sender,
                            topic,
                            items,
                            hops,
                            &self.context.counters,
                        );
                    }
                    SealedVerdict::Replay => {
                        let counters = &self.context.counters;
                        counters.add(&counters.dropped_replay, 1);
                    }
                    // Delivered from its origin frame, and now anyone can check it.
                    SealedVerdict::Confirmed => {}
                    SealedVerdict::Mismatch => self.equivocated(sender, seq),
                }
            }
        }
    }

    fn broadcast(&mut self, envelope: Bytes) {
        if self.mode == Mode::Left {
            return;
        }
        let Some(topic) = wire::claimed_topic(&envelope).map(Arc::<str>::from) else {
            return; // our own signer wrote it: cannot happen
        };
        let id = self.take_part(&topic, false);
        let now = self.now;
        let Some(swarm) = self.swarms.get_mut(&id) else {
            return;
        };
        if swarm.neighbours.is_empty() {
            // Nobody to send it to yet: it goes to the first neighbour.
            swarm.waiting.push_back((now, envelope));
            let mut bytes: usize = swarm.waiting.iter().map(|(_, e)| e.len()).sum();
            while swarm.waiting.len() > WAITING_CAP || bytes > WAITING_BYTES {
                let Some((_, oldest)) = swarm.waiting.pop_front() else {
                    break;
                };
                bytes -= oldest.len();
            }
            return;
        }
        self.broadcast_in(id, envelope);
    }

    /// Sends our origin frame to each neighbour in the swarm, on the link our envelopes take
    /// to it (the driver puts it on our lane, before the envelope that follows). Nobody gets
    /// it from a swarm without neighbours: the envelope waits for the first one.
    fn send_origin(&mut self, swarm: [u8; 32], body: Bytes) {
        if self.mode == Mode::Left {
            return;
        }
        let Some(swarm) = self.swarms.get(&TopicId::from_bytes(swarm)) else {
            return;
        };
        let sends: Vec<Action> = swarm
            .neighbours
            .iter()
            .filter_map(|peer| self.links.get(peer))
            .map(|link| Action::Send {
                conn_id: link.conn_id,
                frame: Outgoing::Origin(body.clone()),
            })
            .collect();
        let counters = &self.context.counters;
        counters.add(&counters.origin_frames_out, sends.len() as u64);
        self.out.extend(sends);
    }

    /// An origin frame from `peer`: delivered at once, one hop from its sender the peer, if the
    /// peer is our neighbour in the topic's swarm and the sender's previous envelope there was
    /// delivered here; else ignored (its signed envelope follows and is delivered as usual).
    /// Never forwarded.
    fn on_origin(&mut self, peer: AgentId, origin: wire::Origin) {
        let counters = &self.context.counters;
        counters.add(&counters.origin_frames_in, 1);
        let id = TopicId::from_bytes(wire::topic_swarm(&origin.topic));
        let neighbour = self
            .swarms
            .get(&id)
            .is_some_and(|swarm| swarm.neighbours.contains(&peer));
        let Some(swarm) = self.swarms.get_mut(&id).filter(|_| neighbour) else {
            // Not a swarm we share with the peer (or their neighbourship just ended): dropped.
            counters.add(&counters.origin_ignored, 1);
            return;
        };
        let hash = wire::batch_hash(&origin.topic, &origin.items);
        match swarm
            .tuning
            .origin(peer, origin.seq, origin.prev, hash, self.now)
        {
            OriginVerdict::Deliver => {
                counters.add(&counters.origin_delivered, 1);
                self.context
                    .registry
                    .deliver(peer, &origin.topic, &origin.items, 1, counters);
            }
            OriginVerdict::Early | OriginVerdict::Known => {
                counters.add(&counters.origin_ignored, 1);
            }
        }
    }

    /// Forgets origin frames delivered long ago, counting those whose signed copy never came.
    fn expire_origins(&mut self) {
        let now = self.now;
        let unconfirmed: u64 = self
            .swarms
            .values_mut()
            .map(|swarm| swarm.tuning.expire_origins(now))
            .sum();
        let counters = &self.context.counters;
        counters.add(&counters.origin_unconfirmed, unconfirmed);
    }

    /// `sender` signed another batch than the origin frame it sent us under sequence number
    /// `seq`: counted, logged, and its link closed as one that kept sending invalid messages.
    fn equivocated(&mut self, sender: AgentId, seq: u64) {
        let counters = &self.context.counters;
        counters.add(&counters.origin_mismatches, 1);
        log::warn!(
            "x0x: agent {sender} signed another batch than the origin frame it sent as number \
             {seq}; closing its connection"
        );
        if let Some(link) = self.links.remove(&sender) {
            self.link_used.remove(&sender);
            self.out.push_back(Action::Close {
                conn_id: link.conn_id,
                code: net::CLOSE_INVALID_MESSAGES,
                reason: b"signed another batch than its origin frame",
            });
            self.proto(InEvent::PeerDisconnected(sender));
            self.unreachable(sender);
        }
    }

    fn broadcast_in(&mut self, id: TopicId, envelope: Bytes) {
        if let Some(swarm) = self.swarms.get_mut(&id) {
            swarm.tuning.own(&envelope, self.now);
            self.proto(InEvent::Command(
                id,
                ProtoCommand::Broadcast(envelope, proto::Scope::Swarm),
            ));
        }
    }

    /// Sends what was published on the swarm's topic before it had a neighbour.
    fn flush_waiting(&mut self, id: TopicId) {
        let now = self.now;
        let Some(swarm) = self.swarms.get_mut(&id) else {
            return;
        };
        let waiting = std::mem::take(&mut swarm.waiting);
        for (at, envelope) in waiting {
            if now.duration_since(at) <= WAITING_MAX_AGE {
                self.broadcast_in(id, envelope);
            }
        }
    }

    fn lose_neighbour(&mut self, peer: AgentId) {
        if self.neighbours.remove(&peer) {
            self.context.set_neighbours(self.neighbours.len());
            self.context.events.emit(Event::PeerLeft(peer));
            if self.neighbours.is_empty() {
                self.context.events.emit(Event::Disconnected);
            }
            // At once rather than at the next period: the 5 s to regain neighbours (R3) start
            // when the peer dies, and noticing it takes the 2 s idle timeout already.
            self.top_up();
        }
    }

    fn send_to(&mut self, to: AgentId, frame: Outgoing) {
        // In use: a link that just carried a request must not be closed before the answer.
        self.link_used.insert(to, self.now);
        if let Some(link) = self.links.get(&to) {
            self.out.push_back(Action::Send {
                conn_id: link.conn_id,
                frame,
            });
            return;
        }
        if self.links.queue(to, frame) {
            match self.members.address(&to) {
                Some(addr) => self.dial(addr, Some(to), false, net::HANDSHAKE_TIMEOUT),
                None => {
                    self.links.drop_queued(&to);
                    self.proto(InEvent::PeerDisconnected(to));
                }
            }
        }
    }

    fn dial(
        &mut self,
        addr: SocketAddr,
        expected: Option<AgentId>,
        bootstrap: bool,
        timeout: Duration,
    ) {
        self.out.push_back(Action::Dial {
            addr,
            expected,
            bootstrap,
            timeout,
        });
    }

    /// When short of neighbours, reaches out to known, bootstrap and hinted peers that are not
    /// neighbours (each that answers is asked to be one, see [`Node::ask_to_be_neighbour`]),
    /// or with nobody to dial, joins again through a neighbour.
    fn top_up(&mut self) {
        self.members.expire_top_ups(self.now);
        if self.mode != Mode::Joined || self.neighbours.len() >= TOP_UP_BELOW {
            return;
        }
        let targets = self.members.top_up_targets(
            self.me,
            &self.neighbours,
            &self.links,
            self.now,
            &mut self.rng,
        );
        let Some(targets) = targets else {
            // Nobody (else) to dial: learn of more peers, and join again through a neighbour.
            self.shuffle_now();
            // The neighbour sends ForwardJoin random walks to its other neighbours, and each
            // walk that does not end at one of our neighbours ends at a peer that asks us to be
            // its neighbour (in small overlays most end at ours: the shuffle is what helps
            // there). Each join makes some peers drop a random neighbour for us.
            if let Some(&via) = self.neighbours.iter().choose(&mut self.rng) {
                self.proto(InEvent::Command(
                    network_topic(),
                    ProtoCommand::Join(vec![via]),
                ));
            }
            return;
        };
        // Several at once: some candidates are dead, and a dial to a dead address holds its
        // slot for the whole dial timeout.
        for (peer, addr) in targets {
            match peer {
                Some(peer) if self.links.contains(&peer) => self.ask_to_be_neighbour(peer),
                _ => self.dial(addr, peer, true, REPAIR_DIAL_TIMEOUT),
            }
        }
    }

    /// Makes `peer` a neighbour at the cost of at most one of its own: a high-priority
    /// `Neighbor` request, which it cannot refuse. An agent without neighbours joins through
    /// `peer` instead, as HyParView prescribes. A `Join` from an agent that has neighbours cost
    /// the overlay up to six dropped neighbours (the contact's and one per `ForwardJoin` walk);
    /// below [`TOP_UP_BELOW`] that churn fed itself (200 agents, 10–100 ms links: 4,513
    /// neighbours lost in 60 idle simulated seconds; 30 with requests).
    fn ask_to_be_neighbour(&mut self, peer: AgentId) {
        if self.neighbours.is_empty() {
            self.proto(InEvent::Command(
                network_topic(),
                ProtoCommand::Join(vec![peer]),
            ));
        } else if !self.neighbours.contains(&peer) {
            self.send_to(peer, Outgoing::Gossip(self.neighbour_request.clone()));
        }
    }

    /// Shuffles at once when this agent knows few peers besides its neighbours (just joined, or
    /// most of those it knew died), so that top-ups have somebody to dial.
    fn learn_peers(&mut self) {
        if self.mode != Mode::Joined {
            return;
        }
        let others = self.others_known();
        if others >= KNOWN_BELOW {
            self.learn_gap = MIN_SHUFFLE_GAP;
            return;
        }
        let now = self.now;
        if self
            .last_shuffle
            .is_some_and(|last| now.duration_since(last) < self.learn_gap)
        {
            return;
        }
        if self.shuffle_now() {
            self.learn_gap = if others > self.known_at_learn {
                MIN_SHUFFLE_GAP
            } else {
                (self.learn_gap * 2).min(SHUFFLE_INTERVAL)
            };
            self.known_at_learn = others;
        }
    }

    /// Fires the gossip layer's shuffle timer now (it schedules the next one itself): it sends
    /// a sample of our peers on a random walk, and the peer where the walk ends answers with a
    /// sample of its own, which lands in our address book. False if it did not (no neighbour
    /// to send it to, or the last one was less than [`MIN_SHUFFLE_GAP`] ago).
    fn shuffle_now(&mut self) -> bool {
        let now = self.now;
        if self.neighbours.is_empty()
            || self
                .last_shuffle
                .is_some_and(|last| now.duration_since(last) < MIN_SHUFFLE_GAP)
        {
            return false;
        }
        let Some(Timer::Proto(expired)) = self
            .shuffle_timer
            .take()
            .and_then(|key| self.timers.remove(&key))
        else {
            return false;
        };
        self.last_shuffle = Some(now);
        self.proto(InEvent::TimerExpired(expired));
        true
    }

    /// Picks the addresses the next hellos pass on: a random few from the address book.
    fn refresh_peer_sample(&mut self) {
        let sample = self.members.peer_sample(&mut self.rng);
        self.out.push_back(Action::PeerSample(sample));
    }

    /// Dials one lost peer (a few probes at once); on success it asks the peer to be a
    /// neighbour, as a top-up does.
    fn probe_lost(&mut self) {
        self.members.expire_probes(self.now);
        if self.mode != Mode::Joined || self.join.is_some() {
            return;
        }
        if let Some((peer, addr)) = self
            .members
            .probe_target(&self.links, self.now, &mut self.rng)
        {
            self.dial(addr, Some(peer), true, REPAIR_DIAL_TIMEOUT);
        }
    }

    fn remember_lost(&mut self, peer: AgentId, addr: SocketAddr) {
        if self.mode != Mode::Joined || peer == self.me {
            return;
        }
        self.members.remember_lost(peer, addr, self.now);
    }

    fn start_join(&mut self, waiter: u64, bootstrap: Vec<SocketAddr>, patience: Duration) {
        self.members.set_bootstrap(&bootstrap);
        let done = |outcome| Action::JoinDone {
            waiters: vec![waiter],
            outcome,
        };
        if self.mode == Mode::Joined && (bootstrap.is_empty() || !self.neighbours.is_empty()) {
            self.out.push_back(done(Ok(())));
            return;
        }
        if self.mode == Mode::Left {
            self.proto(InEvent::Command(
                network_topic(),
                ProtoCommand::Join(vec![]),
            ));
            let now = self.now;
            let ids: Vec<TopicId> = self.swarms.keys().copied().collect();
            for id in ids {
                if let Some(swarm) = self.swarms.get_mut(&id) {
                    swarm.next_lookup = now;
                }
                // Through `proto`: the swarm's state schedules its timers (shuffles) here.
                self.proto(InEvent::Command(id, ProtoCommand::Join(vec![])));
            }
        }
        if bootstrap.is_empty() {
            // The first node of a network: there is nobody to wait for.
            self.set_mode(Mode::Joined);
            self.out.push_back(done(Ok(())));
            return;
        }
        self.set_mode(Mode::Joining);
        let join = self.join.get_or_insert_with(|| JoinAttempt {
            waiters: Vec::new(),
            outstanding: 0,
            answered: false,
            errors: Vec::new(),
        });
        join.waiters.push(waiter);
        join.outstanding += bootstrap.len();
        for addr in bootstrap {
            self.dial(addr, None, true, patience);
        }
    }

    /// Answers every waiter of the join under way, if there is one, with `outcome`.
    fn end_join(&mut self, outcome: JoinOutcome) {
        if let Some(join) = self.join.take() {
            self.out.push_back(Action::JoinDone {
                waiters: join.waiters,
                outcome,
            });
        }
    }

    fn leave(&mut self) {
        self.members.forget_lost();
        if self.mode == Mode::Left {
            return;
        }
        // Quit sends Disconnect to our neighbours, so they drop us at once instead of timing out.
        self.proto(InEvent::Command(network_topic(), ProtoCommand::Quit));
        self.unregister_all();
        let ids: Vec<TopicId> = self.swarms.keys().copied().collect();
        for id in ids {
            self.proto(InEvent::Command(id, ProtoCommand::Quit));
            if let Some(swarm) = self.swarms.get_mut(&id) {
                swarm.neighbours.clear();
                swarm.waiting.clear();
                self.context.set_swarm_neighbours(&swarm.topic, 0);
            }
        }
        self.directory.stop();
        let sought: Vec<AgentId> = self.locating.keys().copied().collect();
        for agent in sought {
            self.located(&agent, Vec::new());
        }
        let sought: Vec<directory::Key> = self.finding.keys().copied().collect();
        for key in sought {
            self.found(&key, Vec::new());
        }
        self.announced = false;
        self.set_mode(Mode::Left);
        for peer in self.neighbours.clone() {
            self.lose_neighbour(peer);
        }
        self.end_join(Err(JoinFailure::Ended(Error::new(
            ErrorKind::Cancelled,
            "left the network before the join completed",
        ))));
        for link in self.links.take_all() {
            self.out.push_back(Action::CloseAfterGrace {
                conn_id: link.conn_id,
                reason: b"leave",
            });
        }
    }

    fn on_dial_failed(
        &mut self,
        addr: SocketAddr,
        peer: Option<AgentId>,
        bootstrap: bool,
        error: Error,
    ) {
        if error.kind() == ErrorKind::InUse {
            self.context.identity_conflict(format_args!(
                "the agent at {addr} refused this agent: another process runs with this \
                 agent's id (the same agent key)"
            ));
        }
        if let Some(peer) = peer {
            self.links.drop_queued(&peer);
            // Unreachable: don't keep dialing it (a crashed peer, or a rogue's throwaway key);
            // the gossip layer reintroduces it if it comes back.
            self.members.forget(&peer);
            self.remember_lost(peer, addr);
            self.proto(InEvent::PeerDisconnected(peer));
            self.unreachable(peer);
        }
        if bootstrap {
            self.bootstrap_failed(addr, error);
        }
    }

    fn on_frame(&mut self, peer: AgentId, received: Received, rtt: Duration) {
        let Received {
            topic,
            message,
            payload,
            ihave_round,
        } = received;
        let Some(payload) = payload else {
            self.on_control_frame(peer, TopicId::from_bytes(topic), message, ihave_round, rtt);
            return;
        };
        let topic = TopicId::from_bytes(topic);
        let now = self.now;
        let counters = &self.context.counters;
        // Before delivery: stats never lag a message a reader already has.
        counters.add(&counters.envelopes_received, 1);
        let traffic = self.context.registry.traffic();
        traffic.received(&payload.topic, payload.len, counters);
        let Some(swarm) = self.swarms.get_mut(&topic) else {
            // A swarm we left: the gossip layer would drop it too.
            return;
        };
        if swarm.tuning.check(&payload, now) == Verdict::Drop {
            counters.add(&counters.duplicates, 1);
            return;
        }
        let delivered_before = swarm.tuning.delivered_count();
        let (id, round) = (payload.id, payload.round);
        self.arriving = Some(payload);
        self.proto(InEvent::RecvMessage(peer, message));
        // Not delivered by the layer (a duplicate): dropped with the frame.
        self.arriving = None;
        let Some(swarm) = self.swarms.get_mut(&topic) else {
            return;
        };
        // The gossip layer delivers a payload the first time it sees it, at once; one it does
        // not deliver is a duplicate it suppressed (and pruned the link it came on).
        if swarm.tuning.delivered_count() == delivered_before {
            let counters = &self.context.counters;
            counters.add(&counters.duplicates, 1);
        } else if let Some(round) = round {
            // Delivered here: announce it to new neighbours for a while, at the round the
            // gossip layer forwards it with.
            swarm.tuning.remember_recent(id, round + 1, now);
        }
    }

    /// A gossip frame without a payload: an IHave, a graft, a prune, membership.
    fn on_control_frame(
        &mut self,
        peer: AgentId,
        topic: TopicId,
        message: proto::Message<AgentId>,
        ihave_round: Option<u64>,
        rtt: Duration,
    ) {
        let now = self.now;
        self.link_used.insert(peer, now);
        // Only IHaves from a peer we send to are held (a spare's are rare and passed on).
        let hold = ihave_round
            .filter(|_| self.links.contains(&peer))
            .and_then(|round| {
                let swarm = self.swarms.get(&topic)?;
                swarm.tuning.ihave_hold(round, rtt, now)
            });
        match hold {
            Some(hold) => {
                self.set_timer(hold, Timer::HeldIhave(topic, peer, message));
            }
            None => self.proto(InEvent::RecvMessage(peer, message)),
        }
    }

    fn on_connected(&mut self, connected: Connected) {
        let Connected {
            conn_id,
            peer,
            incarnation,
            listen,
            peers,
            remote,
            bootstrap,
        } = connected;
        let close = |code: u32, reason: &'static [u8]| Action::Close {
            conn_id,
            code,
            reason,
        };
        if peer == self.me {
            let error = if incarnation == self.incarnation {
                self.out
                    .push_back(close(net::CLOSE_SELF, b"that address is this agent's own"));
                net::self_dial_error()
            } else {
                self.context.identity_conflict(format_args!(
                    "the agent at {remote} has this agent's id {:?}: another process runs \
                     with the same agent key",
                    self.me
                ));
                self.out.push_back(close(
                    net::CLOSE_DUPLICATE_IDENTITY,
                    b"another process runs with this agent's id (the same agent key)",
                ));
                net::duplicate_identity_error(self.me)
            };
            if bootstrap {
                self.bootstrap_failed(remote, error);
            }
            return;
        }
        if self.members.is_superseded(peer, incarnation, self.now) {
            self.context.identity_conflict(format_args!(
                "two processes run as agent {peer:?} (one at {remote}): they share an agent key"
            ));
            self.out.push_back(close(
                net::CLOSE_DUPLICATE_IDENTITY,
                b"another process runs with this agent's id (the same agent key)",
            ));
            if bootstrap {
                let error = Error::new(
                    ErrorKind::InUse,
                    format!("agent {peer:?} there also runs in another process"),
                );
                self.bootstrap_failed(remote, error);
            }
            return;
        }
        if self.mode == Mode::Left {
            self.out.push_back(close(net::CLOSE_NORMAL, b"not now"));
            if bootstrap {
                self.bootstrap_failed(remote, Error::invalid_argument("left"));
            }
            return;
        }
        self.members
            .learn_from_hello(peer, listen, peers, self.listen, &mut self.rng);
        let ended = if bootstrap {
            self.members.dial_ended(&remote)
        } else {
            Repair::default()
        };
        let (probed, repair) = (ended.probed, ended.any());
        if probed {
            // A lost peer answers again: a partition may have healed, and topic swarms that
            // went on apart become one through their members' records.
            let now = self.now;
            for swarm in self.swarms.values_mut() {
                swarm.merge_next = true;
                swarm.next_lookup = swarm.next_lookup.min(now);
            }
        }
        // Top-up dials run several at once, and one that lands when the others have filled the
        // active view is not needed: asking would only make both ends drop a neighbour (such
        // asks were a fifth of all while 200 agents joined). Closing those that land at 3 or 4
        // was worse: killed half of 1,000 agents, 7 survivors stayed below 3 for 5 s, not 1.
        let wanted = probed || self.neighbours.len() < ACTIVE_VIEW_CAPACITY;
        let linked = self
            .links
            .get(&peer)
            .is_some_and(|link| link.incarnation == incarnation);
        if repair && (linked || !wanted) {
            // Keep no spare connection: a peer we are linked to already (its address changed,
            // or it reconnected meanwhile) is asked through the link.
            self.members.found(&peer);
            let reason: &'static [u8] = if linked {
                b"already connected"
            } else {
                b"no longer needed"
            };
            self.out.push_back(close(net::CLOSE_NORMAL, reason));
            if wanted {
                self.ask_to_be_neighbour(peer);
            }
            return;
        }
        if self
            .links
            .get(&peer)
            .is_some_and(|link| link.incarnation != incarnation)
        {
            // The peer restarted: its old connection is dead even if it has not timed out yet.
            // Forget it now, so that what we send (the answer to its join) goes to the new one.
            if let Some(old) = self.links.remove(&peer) {
                self.out.push_back(Action::Close {
                    conn_id: old.conn_id,
                    code: net::CLOSE_PEER_RESTARTED,
                    reason: b"peer restarted",
                });
                self.members.supersede(peer, old.incarnation, self.now);
            }
            self.links.forget_spares(&peer);
            self.proto(InEvent::PeerDisconnected(peer));
        }
        self.out.push_back(Action::Adopt { conn_id });
        self.link_used.insert(peer, self.now);
        let link = Link {
            peer,
            incarnation,
            conn_id,
            remote,
        };
        if let Added::Primary(queued) = self.links.add(link) {
            for frame in queued {
                self.send_to(peer, frame);
            }
        }
        self.members.found(&peer);
        if bootstrap {
            if let (false, Some(join)) = (repair, self.join.as_mut()) {
                join.outstanding = join.outstanding.saturating_sub(1);
                join.answered = true;
            }
            if repair {
                self.ask_to_be_neighbour(peer);
            } else {
                self.proto(InEvent::Command(
                    network_topic(),
                    ProtoCommand::Join(vec![peer]),
                ));
            }
        }
    }

    fn bootstrap_failed(&mut self, addr: SocketAddr, error: Error) {
        self.members.unreachable(&addr);
        if self.members.dial_ended(&addr).any() {
            return; // a top-up or probe, not part of a join
        }
        let Some(join) = self.join.as_mut() else {
            return;
        };
        join.outstanding = join.outstanding.saturating_sub(1);
        join.errors.push((addr, error));
        if join.outstanding > 0 || join.answered || !self.neighbours.is_empty() {
            return;
        }
        let errors = std::mem::take(&mut join.errors);
        self.end_join(Err(JoinFailure::Unreachable(errors)));
        self.proto(InEvent::Command(network_topic(), ProtoCommand::Quit));
        self.set_mode(Mode::Left);
    }

    fn on_closed(&mut self, peer: AgentId, conn_id: u64, by_peer: bool) {
        if self.links.ended(&peer, conn_id) != Ended::Gone {
            return;
        }
        if !by_peer {
            // Most likely gone: a top-up should not spend a handshake timeout on it. If it is
            // alive, gossip brings its address back (or it dials us). A peer that closed the
            // connection itself is alive and chose to: probing it would join through it,
            // forcing the neighbourship it refused (and one of its neighbours out).
            if let Some(addr) = self.members.forget(&peer) {
                self.remember_lost(peer, addr);
            }
        }
        self.proto(InEvent::PeerDisconnected(peer));
        self.unreachable(peer);
    }

    /// Whether `peer` is a neighbour in the membership swarm or any topic swarm.
    fn is_neighbour_anywhere(&self, peer: &AgentId) -> bool {
        self.neighbours.contains(peer)
            || self
                .swarms
                .values()
                .any(|swarm| swarm.neighbours.contains(peer))
    }

    /// Joins the swarm of every newly subscribed topic, and leaves those of topics no longer
    /// subscribed (unless this agent publishes on them).
    fn match_interest(&mut self) {
        let registry = Arc::clone(&self.context.registry);
        let version = registry.interest_version();
        if version == self.interest_version {
            return;
        }
        self.interest_version = version;
        let subscribed: BTreeSet<Arc<str>> = registry.subscribed_topics().into_iter().collect();
        for topic in &subscribed {
            self.take_part(topic, true);
        }
        let dropped: Vec<TopicId> = self
            .swarms
            .iter_mut()
            .filter(|(_, swarm)| swarm.subscribed && !subscribed.contains(&swarm.topic))
            .filter_map(|(id, swarm)| {
                swarm.subscribed = false;
                swarm.published.is_none().then_some(*id)
            })
            .collect();
        for id in dropped {
            self.leave_swarm(id);
        }
    }

    /// Leaves a topic's swarm: its neighbours are told, its records taken back.
    fn leave_swarm(&mut self, id: TopicId) {
        if let Some(swarm) = self.swarms.remove(&id) {
            self.context.set_swarm_neighbours(&swarm.topic, 0);
            let key = swarm.key;
            for at in swarm.registered_with {
                self.send_directory(at, &directory::Message::Unregister { key });
            }
        }
        if self.mode != Mode::Left {
            self.proto(InEvent::Command(id, ProtoCommand::Quit));
        }
    }

    /// Takes part in `topic`'s swarm (as a subscriber, or else as a publisher); returns its id.
    fn take_part(&mut self, topic: &Arc<str>, subscribed: bool) -> TopicId {
        let id = TopicId::from_bytes(wire::topic_swarm(topic));
        let now = self.now;
        let swarm = self.swarms.entry(id).or_insert_with(|| Swarm {
            topic: Arc::clone(topic),
            key: wire::rendezvous_key(topic),
            subscribed: false,
            published: None,
            neighbours: BTreeSet::new(),
            waiting: VecDeque::new(),
            tuning: Tuning::default(),
            next_lookup: now,
            lookup_gap: Duration::ZERO,
            registered_with: Vec::new(),
            tried: BTreeSet::new(),
            merge_next: false,
        });
        let new = !swarm.subscribed && swarm.published.is_none();
        if subscribed {
            swarm.subscribed = true;
        } else {
            swarm.published = Some(now);
        }
        if new && self.mode != Mode::Left {
            // The swarm's state exists from now on, so members that find us can join it.
            self.proto(InEvent::Command(id, ProtoCommand::Join(vec![])));
            self.tend_swarms();
        }
        id
    }

    /// Starts the lookups that are due: the agent's own once joined, and each swarm's.
    fn tend_swarms(&mut self) {
        if self.mode != Mode::Joined {
            return;
        }
        self.announce();
        let now = self.now;
        // A publisher that stopped publishing on a topic it does not subscribe to leaves it.
        let stale: Vec<TopicId> = self
            .swarms
            .iter()
            .filter(|(_, swarm)| {
                !swarm.subscribed
                    && swarm
                        .published
                        .is_some_and(|at| now.duration_since(at) >= PUBLISHER_STAYS)
            })
            .map(|(id, _)| *id)
            .collect();
        for id in stale {
            self.leave_swarm(id);
        }
        for swarm in self.swarms.values_mut() {
            while swarm
                .waiting
                .front()
                .is_some_and(|(at, _)| now.duration_since(*at) > WAITING_MAX_AGE)
            {
                swarm.waiting.pop_front();
            }
        }
        let due: Vec<directory::Key> = self
            .swarms
            .values()
            .filter(|swarm| swarm.next_lookup <= now)
            .map(|swarm| swarm.key)
            .collect();
        for key in due {
            self.look_up(Purpose::Swarm(key));
        }
        let due: Vec<directory::Key> = self
            .adverts
            .iter()
            .filter(|(_, advert)| advert.next_lookup <= now)
            .map(|(key, _)| *key)
            .collect();
        for key in due {
            self.look_up(Purpose::Capability(key));
        }
        let (sends, done) = self.directory.expire(now);
        self.carry_out_directory(sends, done);
        self.directory.expire_records(now);
    }

    /// Looks this agent up once after joining: the agents nearest its id learn of it, so that
    /// lookups for keys near it find it.
    fn announce(&mut self) {
        if self.mode == Mode::Joined && !self.announced {
            self.announced = true;
            self.look_up(Purpose::Myself);
        }
    }

    fn look_up(&mut self, purpose: Purpose) {
        if self.directory.looking(purpose) {
            return;
        }
        let known: Vec<(AgentId, SocketAddr)> = self
            .members
            .others_known(self.me, &BTreeSet::new())
            .map(|(peer, addr)| (*peer, *addr))
            .collect();
        match purpose {
            Purpose::Swarm(key) => self.directory.register(key, self.me, self.listen, self.now),
            Purpose::Capability(key) if self.adverts.contains_key(&key) => {
                self.directory.register(key, self.me, self.listen, self.now);
            }
            _ => {}
        }
        let (sends, done) = self
            .directory
            .start(self.me, purpose, known.into_iter(), self.now);
        self.carry_out_directory(sends, done.into_iter().collect());
    }

    fn carry_out_directory(&mut self, sends: Vec<directory::Send>, done: Vec<directory::Done>) {
        for send in sends {
            self.members.note_address(send.to, send.addr);
            self.send_directory(send.to, &send.message);
        }
        for done in done {
            self.lookup_done(done);
        }
    }

    fn send_directory(&mut self, to: AgentId, message: &directory::Message) {
        match wire::encode(message) {
            Ok(frame) => self.send_to(to, Outgoing::Directory(Bytes::from(frame))),
            Err(e) => log::error!("x0x: cannot encode a directory message: {e}"),
        }
    }

    /// A lookup ended: register with the closest agents it found, and join the members.
    fn lookup_done(&mut self, done: directory::Done) {
        if let Purpose::Agent(agent) = done.purpose {
            let mut addrs: Vec<SocketAddr> =
                done.members.get(&agent).copied().into_iter().collect();
            for addr in self.addresses_of(&agent) {
                if !addrs.contains(&addr) {
                    addrs.push(addr);
                }
            }
            self.located(&agent, addrs);
            return;
        }
        if let Purpose::Capability(key) = done.purpose {
            let members: Vec<(AgentId, SocketAddr)> = done.members.into_iter().collect();
            self.found(&key, members);
            if let Some(advert) = self.adverts.get_mut(&key) {
                advert.next_lookup = self.now + directory::REGISTER_PERIOD;
                advert.registered_with.clone_from(&done.register_with);
                for register in done.register_with {
                    self.send_directory(register, &directory::Message::Register { key });
                }
            }
            return;
        }
        let Purpose::Swarm(key) = done.purpose else {
            return;
        };
        let now = self.now;
        let Some((&id, swarm)) = self.swarms.iter_mut().find(|(_, swarm)| swarm.key == key) else {
            return; // left meanwhile
        };
        // Alone: again after 1, 2, 4 ... 30 s. Else sooner at first (2, 4 ... 120 s): members
        // that registered before their address book was full may sit elsewhere in the id
        // space, and each later lookup that finds them merges their part of the swarm.
        let lonely = swarm.neighbours.is_empty();
        let (least, most) = if lonely {
            (TOP_UP_PERIOD, LONELY_LOOKUP_MAX)
        } else {
            (2 * TOP_UP_PERIOD, directory::REGISTER_PERIOD)
        };
        // Parts of a swarm are merged on the periodic refreshes and after a lost peer answered
        // again only: each request costs the member one neighbour, and while a swarm forms that
        // churn cost duplicates (R1 at 20 agents: redundancy over 0.5 on 6 seeds of 20 with a
        // request per lookup, 2 without).
        let merge = swarm.lookup_gap >= most || std::mem::take(&mut swarm.merge_next);
        swarm.lookup_gap = (swarm.lookup_gap * 2).max(least).min(most);
        swarm.next_lookup = now + swarm.lookup_gap;
        let neighbours = swarm.neighbours.len();
        // The next lookup's members may be tried again (those that failed have left the book).
        swarm.tried.clear();
        let via: Vec<(AgentId, SocketAddr)> = done
            .members
            .into_iter()
            .filter(|(agent, _)| !swarm.neighbours.contains(agent))
            .collect();
        swarm.registered_with.clone_from(&done.register_with);
        for register in done.register_with {
            self.send_directory(register, &directory::Message::Register { key });
        }
        if via.is_empty() {
            return;
        }
        if neighbours < SWARM_JOIN_VIA {
            self.join_members(id, via);
        } else if merge {
            // Enough neighbours: ask one member we are not linked with, at the cost of one
            // of its neighbours (not a join: that costs the swarm up to six), so that parts of
            // a swarm that formed apart become one.
            if let Some((agent, addr)) = via.into_iter().choose(&mut self.rng) {
                self.members.note_address(agent, addr);
                let listen = wire::encode(&self.listen).unwrap_or_default();
                let request = wire::neighbour_request_frame(id.as_bytes(), &listen);
                self.send_to(agent, Outgoing::Gossip(Bytes::from(request)));
            }
        }
    }

    /// Joins swarm `id` through members it lacks (each tried once while it is short of
    /// neighbours): up to [`LONELY_JOIN_VIA`] without neighbours, else up to
    /// [`SWARM_JOIN_VIA`] in all.
    fn join_members(&mut self, id: TopicId, found: Vec<(AgentId, SocketAddr)>) {
        let Some(swarm) = self.swarms.get_mut(&id) else {
            return;
        };
        let neighbours = swarm.neighbours.len();
        let wanted = if neighbours == 0 {
            LONELY_JOIN_VIA
        } else {
            SWARM_JOIN_VIA.saturating_sub(neighbours)
        }
        .saturating_sub(swarm.tried.len());
        let fresh: Vec<(AgentId, SocketAddr)> = found
            .into_iter()
            .filter(|(agent, _)| !swarm.neighbours.contains(agent) && !swarm.tried.contains(agent))
            .collect();
        let via: Vec<(AgentId, SocketAddr)> = fresh.into_iter().sample(&mut self.rng, wanted);
        if via.is_empty() {
            return;
        }
        swarm.tried.extend(via.iter().map(|(agent, _)| *agent));
        for (agent, addr) in &via {
            self.members.note_address(*agent, *addr);
        }
        let peers = via.into_iter().map(|(agent, _)| agent).collect();
        self.proto(InEvent::Command(id, ProtoCommand::Join(peers)));
    }

    fn on_directory(&mut self, peer: AgentId, message: directory::Message) {
        let now = self.now;
        self.link_used.insert(peer, now);
        match message {
            directory::Message::Find { query, target } => {
                let known: Vec<(AgentId, SocketAddr)> = self
                    .members
                    .others_known(self.me, &BTreeSet::new())
                    .map(|(agent, addr)| (*agent, *addr))
                    .collect();
                let answer =
                    self.directory
                        .answer(self.me, peer, query, target, known.into_iter(), now);
                self.send_directory(peer, &answer);
            }
            directory::Message::Found {
                query,
                closer,
                members,
            } => {
                let (sends, done) = self
                    .directory
                    .found(self.me, peer, query, closer, members, now);
                // A swarm short of neighbours joins the members an answer named at once,
                // rather than after the slowest query of the lookup.
                let short: Vec<(TopicId, directory::Key)> = self
                    .swarms
                    .iter()
                    .filter(|(_, swarm)| swarm.neighbours.len() < SWARM_JOIN_VIA)
                    .map(|(id, swarm)| (*id, swarm.key))
                    .collect();
                for (id, key) in short {
                    let found = self.directory.members_found(Purpose::Swarm(key));
                    if !found.is_empty() {
                        self.join_members(id, found);
                    }
                }
                // A find is answered with the first members named, a located agent at once; their
                // lookups end on their own (and register an advert).
                let sought: Vec<directory::Key> = self.finding.keys().copied().collect();
                for key in sought {
                    let found = self.directory.members_found(Purpose::Capability(key));
                    if !found.is_empty() {
                        self.found(&key, found);
                    }
                }
                let sought: Vec<AgentId> = self.locating.keys().copied().collect();
                for agent in sought {
                    let found = self.directory.members_found(Purpose::Agent(agent));
                    if !found.is_empty() {
                        self.located(&agent, found.into_iter().map(|(_, addr)| addr).collect());
                    }
                }
                self.carry_out_directory(sends, done.into_iter().collect());
            }
            directory::Message::Unregister { key } => self.directory.unregister(&key, &peer),
            directory::Message::Register { key } => {
                let listen = self
                    .members
                    .address(&peer)
                    .or_else(|| self.links.get(&peer).map(|link| link.remote));
                if let Some(listen) = listen {
                    self.directory.register(key, peer, listen, now);
                }
            }
        }
    }

    /// Takes our records back from the agents that keep them (we are leaving).
    fn unregister_all(&mut self) {
        let now = self.now;
        let mut records: Vec<(directory::Key, Vec<AgentId>)> = self
            .swarms
            .values_mut()
            .map(|swarm| (swarm.key, std::mem::take(&mut swarm.registered_with)))
            .collect();
        for (key, advert) in &mut self.adverts {
            // Registered again after the next join.
            advert.next_lookup = now;
            records.push((*key, std::mem::take(&mut advert.registered_with)));
        }
        for (key, kept_by) in records {
            self.directory.unregister(&key, &self.me);
            for at in kept_by {
                self.send_directory(at, &directory::Message::Unregister { key });
            }
        }
    }

    /// `peer` cannot be reached: lookups waiting for it go on without it.
    fn unreachable(&mut self, peer: AgentId) {
        self.link_used.remove(&peer);
        let (sends, done) = self.directory.unreachable(&peer, self.now);
        self.carry_out_directory(sends, done);
    }

    /// Closes links that are nobody's neighbour and carried no directory message lately.
    fn close_idle_links(&mut self) {
        let now = self.now;
        let idle: Vec<AgentId> = self
            .links
            .iter()
            .map(|link| link.peer)
            .filter(|peer| {
                !self.is_neighbour_anywhere(peer)
                    && self
                        .link_used
                        .get(peer)
                        .is_none_or(|used| now.duration_since(*used) >= LINK_IDLE)
            })
            .collect();
        for peer in idle {
            self.link_used.remove(&peer);
            if let Some(link) = self.links.remove(&peer) {
                // The peer is alive and no neighbour: the gossip layer keeps it as a passive
                // peer (telling it the connection ended would forget it).
                self.out.push_back(Action::CloseAfterGrace {
                    conn_id: link.conn_id,
                    reason: b"idle",
                });
            }
        }
    }
}

/// How many links a payload crossed from its publisher to us (1: a direct neighbour).
fn delivery_hops(scope: proto::DeliveryScope) -> u32 {
    match scope {
        // The proto keeps the round private; its serde form is the round's number (a varint).
        proto::DeliveryScope::Swarm(round) => postcard::to_slice(&round, &mut [0u8; 4])
            .ok()
            .and_then(|bytes| postcard::from_bytes::<u16>(bytes).ok())
            .map_or(0, |round| u32::from(round) + 1),
        proto::DeliveryScope::Neighbors => 1,
    }
}

/// Real gossip frames for tests: proto state machines wired back to back.
#[cfg(test)]
pub(crate) mod testing {
    use super::*;

    /// Two proto state machines wired back to back; returns every encoded frame A sent.
    pub(crate) fn pump(
        a: &mut proto::State<AgentId, StdRng>,
        b: &mut proto::State<AgentId, StdRng>,
        first: InEvent<AgentId>,
    ) -> Vec<Vec<u8>> {
        let (id_a, id_b) = (*a.me(), *b.me());
        let mut sent_by_a = Vec::new();
        let mut inbox = vec![(true, first)];
        while let Some((to_a, event)) = inbox.pop() {
            let state = if to_a { &mut *a } else { &mut *b };
            for out in state
                .handle(event, Instant::now(), None)
                .collect::<Vec<_>>()
            {
                if let OutEvent::SendMessage(_, message) = out {
                    let frame = wire::encode(&message).unwrap();
                    if to_a {
                        sent_by_a.push(frame.clone());
                    }
                    let decoded = postcard::from_bytes(&frame).unwrap();
                    let from = if to_a { id_a } else { id_b };
                    inbox.push((!to_a, InEvent::RecvMessage(from, decoded)));
                }
            }
        }
        sent_by_a
    }

    pub(crate) type ProtoState = proto::State<AgentId, StdRng>;

    /// A proto state with the agents' config, its id `byte` repeated.
    pub(crate) fn proto_state(byte: u8) -> ProtoState {
        let id = AgentId([byte; 32]);
        proto::State::new(id, PeerData::default(), proto_config(), rand::make_rng())
    }

    /// The topic of the envelopes tests put in data frames.
    pub(crate) const TEST_TOPIC: &str = "t";

    /// The swarm of [`TEST_TOPIC`].
    pub(crate) fn test_swarm() -> TopicId {
        TopicId::from_bytes(wire::topic_swarm(TEST_TOPIC))
    }

    /// Two proto states, B a first node (joined, alone) and A joined through it, in the
    /// membership swarm and in [`test_swarm`]; also returns the (control) frames A sent to join.
    pub(crate) fn joined_pair() -> (ProtoState, ProtoState, Vec<Vec<u8>>) {
        let (mut a, mut b) = (proto_state(1), proto_state(2));
        let mut control = Vec::new();
        for topic in [network_topic(), test_swarm()] {
            let alone = InEvent::Command(topic, ProtoCommand::Join(vec![]));
            let _timers: Vec<_> = b.handle(alone, Instant::now(), None).collect();
            let join = InEvent::Command(topic, ProtoCommand::Join(vec![*b.me()]));
            control.extend(pump(&mut a, &mut b, join));
        }
        (a, b, control)
    }

    /// The data frame A sends B when it broadcasts `content` in [`test_swarm`].
    pub(crate) fn data_frame(a: &mut ProtoState, b: &mut ProtoState, content: Bytes) -> Vec<u8> {
        let broadcast = ProtoCommand::Broadcast(content, proto::Scope::Swarm);
        let mut data: Vec<_> = pump(a, b, InEvent::Command(test_swarm(), broadcast))
            .into_iter()
            .filter(|f| wire::gossip_data_content(f).is_some())
            .collect();
        assert_eq!(data.len(), 1, "one data frame per broadcast");
        data.remove(0)
    }
}

#[cfg(test)]
mod tests {
    use super::testing::*;
    use super::*;

    #[test]
    fn the_shuffle_timer_is_recognised_and_firing_it_sends_a_shuffle() {
        let (mut a, mut b) = (proto_state(1), proto_state(2));
        let alone = InEvent::Command(network_topic(), ProtoCommand::Join(vec![]));
        let _: Vec<_> = b.handle(alone, Instant::now(), None).collect();
        let join = InEvent::Command(network_topic(), ProtoCommand::Join(vec![*b.me()]));
        let mut shuffle_timers = Vec::new();
        let mut join_message = None;
        for out in a.handle(join, Instant::now(), None).collect::<Vec<_>>() {
            match out {
                OutEvent::ScheduleTimer(delay, timer) if is_shuffle_timer(delay, &timer) => {
                    shuffle_timers.push(timer)
                }
                OutEvent::ScheduleTimer(delay, timer) => {
                    panic!("not a shuffle: {delay:?} {timer:?}")
                }
                OutEvent::SendMessage(_, message) => join_message = Some(message),
                _ => {}
            }
        }
        assert_eq!(
            shuffle_timers.len(),
            1,
            "joining schedules the first shuffle"
        );
        let join_message = join_message.expect("A sends B a join");
        let from_a = InEvent::RecvMessage(*a.me(), join_message);
        pump(&mut b, &mut a, from_a);
        let fired: Vec<_> = a
            .handle(
                InEvent::TimerExpired(shuffle_timers.remove(0)),
                Instant::now(),
                None,
            )
            .collect();
        let sent: Vec<String> = fired
            .iter()
            .filter_map(|out| match out {
                OutEvent::SendMessage(to, message) if to == b.me() => Some(format!("{message:?}")),
                _ => None,
            })
            .collect();
        assert!(
            sent.iter().any(|m| m.contains("Shuffle(")),
            "a shuffle to the neighbour: {sent:?}"
        );
        assert!(
            fired
                .iter()
                .any(|out| matches!(out, OutEvent::ScheduleTimer(d, t) if is_shuffle_timer(*d, t))),
            "and the next one scheduled"
        );
        // Other timers are not taken for it.
        let graft = ProtoCommand::Broadcast(Bytes::from_static(b"x"), proto::Scope::Swarm);
        for out in b
            .handle(
                InEvent::Command(network_topic(), graft),
                Instant::now(),
                None,
            )
            .collect::<Vec<_>>()
        {
            if let OutEvent::ScheduleTimer(delay, timer) = out {
                assert!(!is_shuffle_timer(delay, &timer), "{timer:?}");
            }
        }
    }

    #[test]
    fn data_frames_are_found_and_control_frames_are_not() {
        let (mut a, mut b, control) = joined_pair();
        assert!(!control.is_empty());
        for frame in &control {
            assert_eq!(wire::gossip_data_content(frame), None, "a control frame");
        }
        let content = Bytes::from_static(b"the content to verify");
        let broadcast = ProtoCommand::Broadcast(content.clone(), proto::Scope::Swarm);
        let data = pump(&mut a, &mut b, InEvent::Command(network_topic(), broadcast));
        let found: Vec<_> = data
            .iter()
            .filter_map(|f| wire::gossip_data_content(f))
            .collect();
        assert_eq!(found, vec![&content[..]]);
        let frame = data
            .iter()
            .find(|f| wire::gossip_data_content(f).is_some())
            .unwrap();
        assert_eq!(
            wire::gossip_data_round(frame),
            Some(0),
            "first hop from the origin"
        );
        for control in &control {
            assert_eq!(wire::gossip_data_round(control), None);
        }
        // A relay can claim any round; 65535 overflowed the proto's `round + 1` (found by
        // fuzzing: a panic with overflow checks on). The reader must see and refuse it.
        assert!(
            frame.ends_with(&[0, 0]),
            "scope Swarm(Round(0)) ends the frame"
        );
        let mut forged = frame[..frame.len() - 1].to_vec();
        forged.extend_from_slice(&[0xff, 0xff, 0x03]);
        assert_eq!(wire::gossip_data_round(&forged), Some(65535));
        assert!(postcard::from_bytes::<proto::Message<AgentId>>(&forged).is_ok());
    }

    #[test]
    fn an_announcement_we_write_makes_the_peer_graft_what_it_lacks() {
        let (a, mut b, _) = joined_pair();
        let (id_a, now) = (*a.me(), Instant::now());
        let (missing, round) = ([7u8; 32], 3);
        let frame = wire::ihave_frame(network_topic().as_bytes(), &[(missing, round)]);
        assert_eq!(wire::ihave_min_round(&frame), Some(round));
        assert_eq!(wire::gossip_data_content(&frame), None, "a control frame");
        let message: proto::Message<AgentId> = postcard::from_bytes(&frame).unwrap();
        assert_eq!(
            wire::encode(&message).unwrap(),
            frame,
            "the proto's own encoding"
        );
        let timers: Vec<_> = b
            .handle(InEvent::RecvMessage(id_a, message), now, None)
            .filter_map(|out| match out {
                OutEvent::ScheduleTimer(_, timer) => Some(timer),
                _ => None,
            })
            .collect();
        assert_eq!(timers.len(), 1, "a graft timer for the missing payload");
        let grafts: Vec<_> = b
            .handle(InEvent::TimerExpired(timers[0].clone()), now, None)
            .filter_map(|out| match out {
                OutEvent::SendMessage(to, graft) => Some((to, wire::encode(&graft).unwrap())),
                _ => None,
            })
            .collect();
        assert_eq!(grafts.len(), 1);
        assert_eq!(grafts[0].0, id_a, "the graft goes to the announcer");
        assert!(
            grafts[0].1.windows(32).any(|w| w == missing),
            "it asks for the announced id"
        );
    }

    #[test]
    fn a_neighbour_request_we_write_is_the_one_the_proto_answers_a_join_with() {
        let listen: SocketAddr = "127.0.0.1:4000".parse().unwrap();
        let data = wire::encode(&listen).unwrap();
        let (id_a, id_b) = (AgentId([1; 32]), AgentId([2; 32]));
        let config = proto_config();
        let mut a = ProtoState::new(id_a, PeerData::default(), config.clone(), rand::make_rng());
        let mut b = ProtoState::new(id_b, PeerData::new(data.clone()), config, rand::make_rng());
        let now = Instant::now();
        let alone = InEvent::Command(network_topic(), ProtoCommand::Join(vec![]));
        let _: Vec<_> = b.handle(alone, now, None).collect();
        let join = InEvent::Command(network_topic(), ProtoCommand::Join(vec![id_b]));
        let join_frames: Vec<_> = a
            .handle(join, now, None)
            .filter_map(|out| match out {
                OutEvent::SendMessage(_, message) => Some(message),
                _ => None,
            })
            .collect();
        assert_eq!(join_frames.len(), 1, "one Join");
        let answers: Vec<_> = b
            .handle(
                InEvent::RecvMessage(id_a, join_frames[0].clone()),
                now,
                None,
            )
            .filter_map(|out| match out {
                OutEvent::SendMessage(to, message) => Some((to, wire::encode(&message).unwrap())),
                _ => None,
            })
            .collect();
        let ours = wire::neighbour_request_frame(network_topic().as_bytes(), &data);
        assert!(
            answers.contains(&(id_a, ours.clone())),
            "B's high-priority Neighbor, byte for byte"
        );

        // A peer with no room takes the request, dropping exactly one of its neighbours.
        let mut full = proto_state(9);
        let _: Vec<_> = full
            .handle(
                InEvent::Command(network_topic(), ProtoCommand::Join(vec![])),
                now,
                None,
            )
            .collect();
        let id_full = *full.me();
        for byte in 10..15 {
            let join = InEvent::Command(network_topic(), ProtoCommand::Join(vec![id_full]));
            let _ = pump(&mut proto_state(byte), &mut full, join);
        }
        let request: proto::Message<AgentId> = postcard::from_bytes(&ours).unwrap();
        let (mut up, mut down) = (Vec::new(), Vec::new());
        for out in full.handle(InEvent::RecvMessage(id_b, request), now, None) {
            match out {
                OutEvent::EmitEvent(_, proto::Event::NeighborUp(peer)) => up.push(peer),
                OutEvent::EmitEvent(_, proto::Event::NeighborDown(peer)) => down.push(peer),
                _ => {}
            }
        }
        assert_eq!(up, vec![id_b], "the requester is a neighbour");
        assert_eq!(down.len(), 1, "one neighbour dropped for it: {down:?}");
    }

    #[test]
    fn a_disconnect_we_write_is_one_the_proto_reads() {
        let frame = wire::disconnect_frame(network_topic().as_bytes());
        let message: proto::Message<AgentId> = postcard::from_bytes(&frame).unwrap();
        assert!(format!("{message:?}").contains("Disconnect(Disconnect { alive: true"));
        assert_eq!(
            wire::encode(&message).unwrap(),
            frame,
            "the proto's own encoding"
        );
    }

    #[test]
    fn ihave_rounds_are_found_and_other_frames_have_none() {
        let (mut a, mut b, control) = joined_pair();
        for frame in &control {
            assert_eq!(wire::ihave_min_round(frame), None, "join frames");
        }
        let (id_a, id_b) = (*a.me(), *b.me());
        let now = Instant::now();
        // A broadcasts; returns the frames it sends, after firing the timers it set (its
        // announcements go out when the dispatch timer fires).
        let broadcast = |a: &mut ProtoState, content: &'static [u8]| {
            let command = ProtoCommand::Broadcast(Bytes::from_static(content), proto::Scope::Swarm);
            let mut out: Vec<_> = a
                .handle(InEvent::Command(network_topic(), command), now, None)
                .collect();
            let mut sent = Vec::new();
            while let Some(event) = out.pop() {
                match event {
                    OutEvent::SendMessage(_, message) => sent.push(message),
                    OutEvent::ScheduleTimer(_, timer) => {
                        out.extend(a.handle(InEvent::TimerExpired(timer), now, None));
                    }
                    _ => {}
                }
            }
            sent
        };
        // B gets A's payload twice: it prunes A, and A moves B to its lazy set.
        let sent = broadcast(&mut a, b"first");
        let data: Vec<_> = sent.iter().map(|m| wire::encode(m).unwrap()).collect();
        assert!(data.iter().all(|f| wire::ihave_min_round(f).is_none()));
        for _ in 0..2 {
            for message in &sent {
                let replies: Vec<_> = b
                    .handle(InEvent::RecvMessage(id_a, message.clone()), now, None)
                    .collect();
                for reply in replies {
                    if let OutEvent::SendMessage(_, prune) = reply {
                        let _: Vec<_> = a
                            .handle(InEvent::RecvMessage(id_b, prune), now, None)
                            .collect();
                    }
                }
            }
        }
        // Now A only announces its next payload to B.
        let announced: Vec<_> = broadcast(&mut a, b"second")
            .iter()
            .map(|m| wire::encode(m).unwrap())
            .collect();
        let rounds: Vec<_> = announced
            .iter()
            .filter_map(|f| wire::ihave_min_round(f))
            .collect();
        assert_eq!(rounds, vec![0], "one IHave, round 0 from the publisher");
        assert!(announced
            .iter()
            .all(|f| wire::gossip_data_content(f).is_none()));
        // A truncated IHave has no round.
        let ihave = &announced[0];
        assert_eq!(wire::ihave_min_round(&ihave[..ihave.len() - 2]), None);
    }
}

/// Origin frames at the node: a node subscribed to [`testing::TEST_TOPIC`], and a publisher
/// (a bare proto state with a real agent key) that is its neighbour in that topic's swarm.
#[cfg(test)]
mod origin_tests {
    use std::sync::atomic::Ordering;

    use rand::SeedableRng;

    use super::testing::*;
    use super::*;
    use crate::identity::Keypair;
    use crate::pubsub::{Message, Registry, Subscription};
    use crate::stats::Counters;
    use crate::streams::decode_gossip;

    const PEER_CONN: u64 = 7;

    struct Pair {
        node: Node,
        context: Arc<AgentContext>,
        sub: Subscription,
        key: Keypair,
        peer: ProtoState,
        now: Instant,
        /// Actions other than gossip sends, oldest first.
        actions: Vec<Action>,
    }

    fn items(payload: &str) -> Vec<wire::Item> {
        vec![wire::Item {
            timestamp_ms: 1,
            payload: Bytes::copy_from_slice(payload.as_bytes()),
        }]
    }

    fn origin(seq: u64, prev: Option<u64>, payload: &str) -> wire::Origin {
        wire::Origin {
            topic: TEST_TOPIC.into(),
            seq,
            prev,
            items: items(payload),
        }
    }

    impl Pair {
        fn new() -> Self {
            let context = Arc::new(AgentContext::new(
                Arc::new(Counters::default()),
                Arc::new(Registry::default()),
            ));
            let sub = context.registry.subscribe(TEST_TOPIC, 1024).unwrap();
            let now = Instant::now();
            let me = AgentId([1; 32]);
            let listen: SocketAddr = "127.0.0.1:1".parse().unwrap();
            let rng = StdRng::seed_from_u64(1);
            let node = Node::new(me, 1, listen, Arc::clone(&context), rng, now).unwrap();
            let key = Keypair::generate().unwrap();
            let peer = proto::State::new(
                key.public_key().agent_id(),
                PeerData::default(),
                proto_config(),
                rand::make_rng(),
            );
            let mut pair = Self {
                node,
                context,
                sub,
                key,
                peer,
                now,
                actions: Vec::new(),
            };
            pair.input(Input::Join {
                waiter: 1,
                bootstrap: Vec::new(),
                patience: Duration::from_secs(1),
            });
            let id = pair.peer_id();
            pair.input(Input::Connected(Connected {
                conn_id: PEER_CONN,
                peer: id,
                incarnation: 1,
                listen: "127.0.0.1:2".parse().unwrap(),
                peers: Vec::new(),
                remote: "127.0.0.1:2".parse().unwrap(),
                bootstrap: false,
            }));
            for topic in [network_topic(), test_swarm()] {
                pair.peer_step(InEvent::Command(topic, ProtoCommand::Join(vec![me])));
            }
            assert!(pair.node.swarms[&test_swarm()].neighbours.contains(&id));
            pair
        }

        fn peer_id(&self) -> AgentId {
            self.key.public_key().agent_id()
        }

        fn counters(&self) -> &Counters {
            &self.context.counters
        }

        /// Origin frames received, ignored and delivered.
        fn origin_counts(&self) -> [u64; 3] {
            let c = self.counters();
            [&c.origin_frames_in, &c.origin_ignored, &c.origin_delivered]
                .map(|counter| counter.load(Ordering::Relaxed))
        }

        /// Feeds the node, and carries gossip between it and the peer until both are quiet.
        fn input(&mut self, input: Input) {
            self.node.handle(input, self.now);
            while let Some(action) = self.node.poll_action() {
                match action {
                    Action::Send {
                        frame: Outgoing::Gossip(frame),
                        ..
                    } => {
                        let message = postcard::from_bytes(&frame).unwrap();
                        self.peer_step(InEvent::RecvMessage(AgentId([1; 32]), message));
                    }
                    other => self.actions.push(other),
                }
            }
        }

        /// Feeds the peer; what it sends the node goes through a reader's checks first.
        fn peer_step(&mut self, event: InEvent<AgentId>) {
            self.peer_step_read_as(event, |_| {});
        }

        /// As `peer_step`, with `read_as` changing what the reader made of each data frame.
        fn peer_step_read_as(&mut self, event: InEvent<AgentId>, read_as: impl Fn(&mut Payload)) {
            let out: Vec<_> = self.peer.handle(event, self.now, None).collect();
            for event in out {
                if let OutEvent::SendMessage(_, message) = event {
                    let frame = wire::encode(&message).unwrap();
                    let key = self.key.public_key().clone();
                    let mut received =
                        decode_gossip(&frame, |_, _, envelope| envelope.check(&key)).unwrap();
                    if let Some(payload) = &mut received.payload {
                        read_as(payload);
                    }
                    let peer = self.peer_id();
                    self.input(Input::Frame {
                        peer,
                        received,
                        rtt: Duration::ZERO,
                    });
                }
            }
        }

        /// The peer signs `payload` as envelope `seq` and broadcasts it in the swarm.
        fn sealed(&mut self, seq: u64, payload: &str) {
            let envelope = wire::seal(&self.key, seq, TEST_TOPIC, items(payload)).unwrap();
            let broadcast = ProtoCommand::Broadcast(envelope, proto::Scope::Swarm);
            self.peer_step(InEvent::Command(test_swarm(), broadcast));
        }

        fn origin(&mut self, origin: wire::Origin) {
            let peer = self.peer_id();
            self.input(Input::Origin { peer, origin });
        }

        fn delivered(&mut self) -> Vec<Message> {
            self.sub.try_next_batch(usize::MAX).unwrap()
        }

        fn payloads(&mut self) -> Vec<String> {
            self.delivered()
                .iter()
                .map(|m| String::from_utf8(m.payload.to_vec()).unwrap())
                .collect()
        }
    }

    #[test]
    fn a_received_envelope_is_delivered_as_its_reader_decoded_it_not_decoded_again() {
        let mut pair = Pair::new();
        let seal = |pair: &Pair, seq: u64, payload: &str| {
            let envelope = wire::seal(&pair.key, seq, TEST_TOPIC, items(payload)).unwrap();
            InEvent::Command(
                test_swarm(),
                ProtoCommand::Broadcast(envelope, proto::Scope::Swarm),
            )
        };
        // What the reader decoded is what is delivered (here it differs from the bytes, which
        // only a test can make happen: the node did not decode them).
        let first = seal(&pair, 10, "ten");
        pair.peer_step_read_as(first, |payload| payload.items = items("as read"));
        assert_eq!(pair.payloads(), ["as read"]);
        // A reader's result that is not of the envelope the gossip layer passes on is not used:
        // the envelope is decoded then.
        let second = seal(&pair, 11, "eleven");
        pair.peer_step_read_as(second, |payload| {
            payload.seq += 1;
            payload.items = items("not this one");
        });
        assert_eq!(pair.payloads(), ["eleven"]);
        assert_eq!(pair.counters().dropped_malformed.load(Ordering::Relaxed), 0);
    }

    #[test]
    fn an_origin_is_delivered_at_once_and_its_signed_copy_not_again() {
        let mut pair = Pair::new();
        pair.origin(origin(10, None, "ten"));
        let got = pair.delivered();
        assert_eq!(got.len(), 1);
        assert_eq!(
            (got[0].sender, got[0].hops, &got[0].payload[..]),
            (pair.peer_id(), 1, &b"ten"[..])
        );
        pair.sealed(10, "ten");
        assert_eq!(pair.payloads(), Vec::<String>::new(), "delivered once");
        // The next one follows ten, delivered: at once again.
        pair.origin(origin(11, Some(10), "eleven"));
        assert_eq!(pair.payloads(), ["eleven"]);
        pair.sealed(11, "eleven");
        assert!(pair.payloads().is_empty());
        let c = pair.counters();
        assert_eq!(c.envelopes_received.load(Ordering::Relaxed), 2);
        assert_eq!(c.origin_delivered.load(Ordering::Relaxed), 2);
        assert_eq!(c.dropped_replay.load(Ordering::Relaxed), 0);
        assert_eq!(c.origin_mismatches.load(Ordering::Relaxed), 0);
        assert!(pair
            .actions
            .iter()
            .all(|a| !matches!(a, Action::Close { .. })));
    }

    #[test]
    fn an_origin_before_its_predecessor_is_ignored_and_the_signed_copies_delivered_in_order() {
        let mut pair = Pair::new();
        pair.sealed(19, "nineteen");
        assert_eq!(pair.payloads(), ["nineteen"]);
        // 21 follows 20, which has not come yet: delivering 21 now would break the order.
        pair.origin(origin(21, Some(20), "twenty-one"));
        assert!(pair.payloads().is_empty());
        pair.sealed(20, "twenty");
        pair.sealed(21, "twenty-one");
        assert_eq!(pair.payloads(), ["twenty", "twenty-one"]);
        // An origin whose signed copy came first is not delivered again either.
        pair.origin(origin(21, Some(20), "twenty-one"));
        assert!(pair.payloads().is_empty());
        // Origin frames in, ignored, delivered.
        assert_eq!(pair.origin_counts(), [2, 2, 0]);
    }

    #[test]
    fn a_signed_copy_of_another_batch_is_counted_and_the_link_dropped() {
        let mut pair = Pair::new();
        pair.origin(origin(30, None, "said"));
        assert_eq!(pair.payloads(), ["said"]);
        pair.sealed(30, "signed");
        assert!(
            pair.payloads().is_empty(),
            "not delivered: one of them is a lie"
        );
        assert_eq!(pair.counters().origin_mismatches.load(Ordering::Relaxed), 1);
        assert!(
            pair.actions.iter().any(|a| matches!(
                a,
                Action::Close { conn_id: PEER_CONN, code, .. } if *code == net::CLOSE_INVALID_MESSAGES
            )),
            "{:?}",
            pair.actions
        );
        let peer = pair.peer_id();
        assert!(!pair.node.links.contains(&peer));
        assert!(!pair.node.swarms[&test_swarm()].neighbours.contains(&peer));
    }

    #[test]
    fn origins_from_outside_the_swarm_are_dropped() {
        let mut pair = Pair::new();
        // From an agent that is not a neighbour (not even linked).
        pair.input(Input::Origin {
            peer: AgentId([9; 32]),
            origin: origin(40, None, "stranger"),
        });
        // On a topic whose swarm this agent is not in.
        let mut elsewhere = origin(41, None, "elsewhere");
        elsewhere.topic = "another topic".into();
        let _other = pair.context.registry.subscribe("another topic", 8);
        pair.origin(elsewhere);
        assert!(pair.payloads().is_empty());
        // Origin frames in, ignored, delivered.
        assert_eq!(pair.origin_counts(), [2, 2, 0]);
    }

    #[test]
    fn our_origin_goes_to_the_swarms_neighbours_only() {
        let mut pair = Pair::new();
        let body = Bytes::from(wire::encode_origin(TEST_TOPIC, 5, None, &items("x")).unwrap());
        pair.input(Input::SendOrigin {
            swarm: wire::topic_swarm(TEST_TOPIC),
            body: body.clone(),
        });
        let sent: Vec<_> = pair
            .actions
            .iter()
            .filter_map(|a| match a {
                Action::Send {
                    conn_id,
                    frame: Outgoing::Origin(body),
                } => Some((*conn_id, body.clone())),
                _ => None,
            })
            .collect();
        assert_eq!(sent, vec![(PEER_CONN, body.clone())]);
        // A swarm we are not in: nobody.
        pair.actions.clear();
        pair.input(Input::SendOrigin {
            swarm: wire::topic_swarm("not here"),
            body,
        });
        assert!(pair.actions.is_empty());
        assert_eq!(pair.counters().origin_frames_out.load(Ordering::Relaxed), 1);
    }
}
