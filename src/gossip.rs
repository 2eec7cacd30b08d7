//! The network actor: drives iroh-gossip's sans-IO `proto` state machine with our QUIC
//! connections and timers.
//!
//! One task (the actor) owns the protocol state, the timers and the connection table, and never
//! awaits a peer: sends go into unbounded per-peer queues drained by writer tasks, so a slow peer
//! cannot stall the actor (awaiting a bounded per-peer queue deadlocked a 5-node mesh in the
//! prototype). Publishers are throttled instead, by the node-wide send backlog.
//!
//! Every agent joins one swarm, the network topic; application topics travel inside the signed
//! envelopes and are filtered locally. Reader tasks verify every data message before the gossip
//! layer sees it, so nothing unverified is ever delivered or forwarded.

use std::collections::{HashMap, HashSet, VecDeque};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU8, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use iroh_gossip::proto::{self, Command as ProtoCommand, InEvent, OutEvent, PeerData, TopicId};
use quinn::{Connection, RecvStream, SendStream};
use rand::rngs::StdRng;
use rand::seq::IteratorRandom;
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;
use tokio_util::time::{delay_queue, DelayQueue};

use crate::duplicates::{Duplicates, Verdict};
use crate::error::{Error, ErrorKind, Result};
use crate::events::{Event, EventHub};
use crate::identity::AgentId;
use crate::net::{self, Authenticated, ReadError};
use crate::penalties::Penalties;
use crate::pubsub::Registry;
use crate::replay::ReplayGuard;
use crate::stats::Counters;
use crate::streams::{ConnectionWriter, KeyStore, Received, StreamReader, LANES};
use crate::wire::{self, Credentials, Rejection, GOSSIP_MAX_MESSAGE_SIZE};

/// A peer whose unsent backlog passes this many bytes is treated as dead.
const PEER_HARD_CAP: usize = 256 << 20;
/// Publishers wait while the node-wide unsent backlog is above this many bytes...
const BACKLOG_HIGH: usize = 32 << 20;
/// ...until it falls to this.
const BACKLOG_LOW: usize = 16 << 20;
/// Frames kept for a peer we are still dialing.
const PENDING_CAP: usize = 4096;
/// Invalid data messages tolerated from one connection before it is closed.
pub const MAX_STRIKES: u32 = 64;
/// Time a closing connection gets to flush its last frames.
const CLOSE_GRACE: Duration = Duration::from_millis(250);
/// Peer addresses remembered at most.
const ADDR_BOOK_CAP: usize = 4096;
/// How often an agent with too few neighbours reaches out to one more known peer.
const TOP_UP_PERIOD: Duration = Duration::from_secs(1);
/// Below this many neighbours an agent tops up. HyParView refills its active view only from its
/// passive view, once per failure, and drops passive peers it could not reach — so after a
/// partition (or many crashes) an agent can stay with one neighbour, or a healed partition can
/// stay split for good. Reaching out to known and bootstrap addresses repairs both.
const TOP_UP_BELOW: usize = 3;
/// Top-up dials at once.
const TOP_UP_DIALS: usize = 3;
/// Probe dials to lost peers at once (one new one per top-up period).
const PROBE_DIALS: usize = 2;
/// Probes and top-up dials give up sooner than a join: many go to dead peers, and a dead one
/// holds a dial slot for this long (5 s slots made R3 survivors take 7 s now and then).
const REPAIR_DIAL_TIMEOUT: Duration = Duration::from_secs(2);
/// Lost peers are probed for this long, at most this many.
const LOST_RETENTION: Duration = Duration::from_secs(300);
const LOST_CAP: usize = 256;
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
/// The longest an IHave is held back (see `Actor::ihave_hold`).
const MAX_IHAVE_HOLD: Duration = Duration::from_millis(100);
/// Publishers whose path depth is tracked (those heard within [`DEPTH_TTL`]).
const DEPTHS_CAP: usize = 256;
const DEPTH_TTL: Duration = Duration::from_secs(10);
/// Incarnations that a newer one of the same agent replaced, remembered this long (at most
/// [`SUPERSEDED_CAP`]): a connection from one of them is a second live copy of that agent.
const SUPERSEDED_RETENTION: Duration = Duration::from_secs(600);
const SUPERSEDED_CAP: usize = 1024;
/// Hello hints kept at most (see `Actor::hints`).
const HINTS_CAP: usize = 64;
/// Payloads announced to a new neighbour: those of the last 4 s (the gossip layer answers
/// grafts from a 5 s cache), at most 1024 (a 35 KB IHave).
const RECENT_RETENTION: Duration = Duration::from_secs(4);
const RECENT_CAP: usize = 1024;

/// The gossip topic every agent joins (application topics travel inside envelopes).
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
    config
}

/// Whether `timer` is the gossip layer's next shuffle (scheduled [`SHUFFLE_INTERVAL`] ahead).
/// Timers are opaque; their debug form names the kind (tested against the pinned version).
fn is_shuffle_timer(delay: Duration, timer: &proto::Timer<AgentId>) -> bool {
    delay == SHUFFLE_INTERVAL && format!("{timer:?}").contains("Swarm(DoShuffle)")
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
enum Mode {
    Left = 0,
    Joining = 1,
    Joined = 2,
}

/// The node-wide count of bytes queued for sending, and the gate publishers wait at.
#[derive(Default)]
struct Backlog {
    bytes: Mutex<usize>,
    drained: Condvar,
}

impl Backlog {
    fn add(&self, n: usize) {
        *self.bytes.lock().unwrap_or_else(|e| e.into_inner()) += n;
    }

    fn sub(&self, n: usize) {
        let mut bytes = self.bytes.lock().unwrap_or_else(|e| e.into_inner());
        *bytes = bytes.saturating_sub(n);
        if *bytes <= BACKLOG_LOW {
            self.drained.notify_all();
        }
    }

    /// Blocks (the signer thread) while the backlog is above the high-water mark.
    fn wait_for_room(&self) {
        let mut bytes = self.bytes.lock().unwrap_or_else(|e| e.into_inner());
        while *bytes > BACKLOG_HIGH {
            // The timeout only guards against a lost wake-up; the loop re-checks.
            bytes = self
                .drained
                .wait_timeout(bytes, Duration::from_millis(100))
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
    }
}

/// State shared between the actor, the agent façade and the signer.
pub struct Shared {
    /// Traffic counters.
    pub counters: Arc<Counters>,
    /// Local subscriptions.
    pub registry: Arc<Registry>,
    /// Event streams.
    pub events: EventHub,
    neighbours: AtomicUsize,
    connections: AtomicUsize,
    mode: AtomicU8,
    backlog: Backlog,
    penalties: Penalties,
    /// A few known peers' addresses, refreshed by the actor, passed on in every hello.
    peer_sample: Mutex<Vec<SocketAddr>>,
    /// Publisher keys, for the writers to announce on the streams they forward payloads on.
    keys: KeyStore,
    /// Whether an identity conflict was logged (once per agent; each is counted).
    conflict_logged: AtomicBool,
}

impl Shared {
    /// Current gossip neighbours.
    pub fn neighbours(&self) -> usize {
        self.neighbours.load(Ordering::Acquire)
    }

    /// Open peer connections (as of the actor's last step).
    pub fn connections(&self) -> usize {
        self.connections.load(Ordering::Acquire)
    }

    fn mode(&self) -> Mode {
        match self.mode.load(Ordering::Acquire) {
            2 => Mode::Joined,
            1 => Mode::Joining,
            _ => Mode::Left,
        }
    }

    fn set_mode(&self, mode: Mode) {
        self.mode.store(mode as u8, Ordering::Release);
    }

    /// Whether publishing is allowed: the agent has joined (or is joining) the network.
    pub fn is_joined(&self) -> bool {
        self.mode() != Mode::Left
    }

    /// Blocks the caller (the signer thread) while too much is queued for sending.
    pub fn wait_for_send_room(&self) {
        self.backlog.wait_for_room();
    }

    /// Counts an agent id seen live in two processes at once, and logs the first.
    fn identity_conflict(&self, what: std::fmt::Arguments<'_>) {
        self.counters.add(&self.counters.identity_conflicts, 1);
        if !self.conflict_logged.swap(true, Ordering::AcqRel) {
            log::warn!("x0x: {what} (logged once; stats() counts identity_conflicts)");
        }
    }

    fn peer_sample(&self) -> Vec<SocketAddr> {
        self.peer_sample
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }
}

enum Command {
    Join {
        bootstrap: Vec<SocketAddr>,
        /// How long each dial may take.
        patience: Duration,
        reply: oneshot::Sender<JoinOutcome>,
    },
    Leave {
        reply: oneshot::Sender<()>,
    },
    Broadcast(Bytes),
    /// The caller gave up waiting for a join: stop it, unless it succeeded meanwhile.
    AbortJoin {
        reply: oneshot::Sender<bool>,
    },
    Shutdown {
        reply: oneshot::Sender<()>,
    },
}

enum NetEvent {
    Connected {
        auth: Authenticated,
        bootstrap: bool,
    },
    DialFailed {
        addr: SocketAddr,
        peer: Option<AgentId>,
        bootstrap: bool,
        error: Error,
    },
    Frame {
        peer: AgentId,
        received: Received,
    },
    Closed {
        peer: AgentId,
        conn_id: u64,
        /// The peer ended the connection itself (it is alive), rather than it timing out or
        /// failing.
        by_peer: bool,
    },
}

/// How one round of dials to the bootstrap peers ended: a neighbour is up, or every dial
/// failed (each address with its error), or the round was abandoned (left, aborted, closed).
pub type JoinOutcome = std::result::Result<(), JoinFailure>;

/// Why a join round ended without a neighbour.
#[derive(Debug)]
pub enum JoinFailure {
    /// Every bootstrap dial failed: each address, with why.
    Unreachable(Vec<(SocketAddr, Error)>),
    /// Not worth another round (the agent left or closed, or the join was abandoned).
    Ended(Error),
}

/// The façade's handle on the actor.
pub struct Network {
    commands: mpsc::UnboundedSender<Command>,
    shared: Arc<Shared>,
    local_addr: SocketAddr,
}

impl Network {
    /// Binds the endpoint and starts the actor (on the current runtime).
    pub fn start(
        credentials: Arc<Credentials>,
        bind: SocketAddr,
        registry: Arc<Registry>,
        counters: Arc<Counters>,
    ) -> Result<Self> {
        let endpoint = net::endpoint(bind)?;
        let local_addr = endpoint
            .local_addr()
            .map_err(|e| Error::io("cannot read the bound address", &e))?;
        let shared = Arc::new(Shared {
            counters,
            registry,
            events: EventHub::default(),
            neighbours: AtomicUsize::new(0),
            connections: AtomicUsize::new(0),
            mode: AtomicU8::new(Mode::Left as u8),
            backlog: Backlog::default(),
            penalties: Penalties::default(),
            peer_sample: Mutex::new(Vec::new()),
            keys: KeyStore::new(credentials.agent_key().public_key().clone()),
            conflict_logged: AtomicBool::new(false),
        });
        let (commands, command_rx) = mpsc::unbounded_channel();
        let (net_tx, net_rx) = mpsc::channel(1024);
        let me = credentials.agent_id();
        let advertised = net::advertised(local_addr);
        let me_data = PeerData::new(wire::encode(&advertised)?);
        let actor = Actor {
            me,
            credentials,
            endpoint: endpoint.clone(),
            listen: advertised,
            state: proto::State::new(me, me_data, proto_config(), rand::make_rng::<StdRng>()),
            timers: DelayQueue::new(),
            shuffle_timer: None,
            last_shuffle: None,
            learn_gap: MIN_SHUFFLE_GAP,
            known_at_learn: 0,
            links: HashMap::new(),
            spares: Vec::new(),
            pending: HashMap::new(),
            addr_book: HashMap::new(),
            neighbours: HashSet::new(),
            next_conn_id: 0,
            shared: Arc::clone(&shared),
            net_tx: net_tx.clone(),
            join: None,
            replay: ReplayGuard::default(),
            bootstrap: Vec::new(),
            top_up_dials: HashMap::new(),
            lost: HashMap::new(),
            probes: HashMap::new(),
            received: 0,
            superseded: HashMap::new(),
            duplicates: Duplicates::default(),
            hints: HashSet::new(),
            held_ihaves: DelayQueue::new(),
            depths: PathDepths::default(),
            recent: VecDeque::new(),
        };
        tokio::spawn(accept_loop(
            endpoint,
            Arc::clone(&actor.credentials),
            advertised,
            net_tx,
            Arc::clone(&actor.shared),
        ));
        tokio::spawn(actor.run(command_rx, net_rx));
        Ok(Self {
            commands,
            shared,
            local_addr,
        })
    }

    /// State shared with the actor.
    pub fn shared(&self) -> &Arc<Shared> {
        &self.shared
    }

    /// The bound UDP address.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    fn send(&self, command: Command) -> Result<()> {
        self.commands
            .send(command)
            .map_err(|_| Error::new(ErrorKind::Closed, "the agent is closed"))
    }

    /// Dials `bootstrap` once each, each dial given up after `patience`; done when one
    /// neighbour is up (at once if empty), or when every dial failed.
    pub async fn join(&self, bootstrap: Vec<SocketAddr>, patience: Duration) -> JoinOutcome {
        let closed = || JoinFailure::Ended(Error::new(ErrorKind::Closed, "the agent is closed"));
        let (reply, done) = oneshot::channel();
        let patience = patience.min(net::HANDSHAKE_TIMEOUT);
        self.send(Command::Join {
            bootstrap,
            patience,
            reply,
        })
        .map_err(|_| closed())?;
        done.await.map_err(|_| closed())?
    }

    /// Stops a join that is still waiting for its first neighbour. Returns true if it stopped
    /// one, false if the join had succeeded (or there was none).
    pub async fn abort_join(&self) -> bool {
        let (reply, done) = oneshot::channel();
        if self.send(Command::AbortJoin { reply }).is_err() {
            return true;
        }
        done.await.unwrap_or(true)
    }

    /// Leaves the network gracefully.
    pub async fn leave(&self) -> Result<()> {
        let (reply, done) = oneshot::channel();
        self.send(Command::Leave { reply })?;
        let _ = done.await;
        Ok(())
    }

    /// Hands a signed envelope to the gossip layer (a closed agent drops it).
    pub fn broadcast(&self, envelope: Bytes) {
        let _ = self.send(Command::Broadcast(envelope));
    }

    /// A function the signer thread can call to broadcast.
    pub fn broadcaster(&self) -> impl Fn(Bytes) + Send + 'static {
        let commands = self.commands.clone();
        let shared = Arc::clone(&self.shared);
        move |envelope| {
            shared.wait_for_send_room();
            let _ = commands.send(Command::Broadcast(envelope));
        }
    }

    /// Stops the actor: leaves, closes every connection and the endpoint.
    pub async fn shutdown(&self) {
        let (reply, done) = oneshot::channel();
        if self.send(Command::Shutdown { reply }).is_ok() {
            let _ = done.await;
        }
    }
}

async fn accept_loop(
    endpoint: quinn::Endpoint,
    credentials: Arc<Credentials>,
    listen: SocketAddr,
    net_tx: mpsc::Sender<NetEvent>,
    shared: Arc<Shared>,
) {
    while let Some(incoming) = endpoint.accept().await {
        if shared
            .penalties
            .refuses(incoming.remote_address().ip(), Instant::now())
        {
            // Before the handshake: a refused connection costs one packet.
            let counters = &shared.counters;
            counters.add(&counters.connections_refused, 1);
            incoming.refuse();
            continue;
        }
        let credentials = Arc::clone(&credentials);
        let net_tx = net_tx.clone();
        let peers = shared.peer_sample();
        tokio::spawn(async move {
            // A failed incoming handshake is the other side's problem: nothing to report.
            if let Ok(auth) = net::accept(incoming, &credentials, listen, peers).await {
                let _ = net_tx
                    .send(NetEvent::Connected {
                        auth,
                        bootstrap: false,
                    })
                    .await;
            }
        });
    }
}

struct Link {
    peer: AgentId,
    incarnation: u64,
    conn_id: u64,
    frames: mpsc::UnboundedSender<Bytes>,
    queued: Arc<AtomicUsize>,
    connection: Connection,
}

struct JoinAttempt {
    waiters: Vec<oneshot::Sender<JoinOutcome>>,
    outstanding: usize,
    /// A bootstrap peer answered: wait for the neighbourship rather than fail.
    answered: bool,
    errors: Vec<(SocketAddr, Error)>,
}

struct Actor {
    me: AgentId,
    credentials: Arc<Credentials>,
    endpoint: quinn::Endpoint,
    listen: SocketAddr,
    state: proto::State<AgentId, StdRng>,
    timers: DelayQueue<proto::Timer<AgentId>>,
    /// The gossip layer's pending shuffle timer, fired early by [`Actor::shuffle_now`].
    shuffle_timer: Option<delay_queue::Key>,
    last_shuffle: Option<Instant>,
    /// How long [`Actor::learn_peers`] waits between shuffles, and how many other peers this
    /// agent knew at its last one.
    learn_gap: Duration,
    known_at_learn: usize,
    /// The connection we send on, per peer.
    links: HashMap<AgentId, Link>,
    /// Extra connections from simultaneous dials: read from, kept open, promoted if needed.
    spares: Vec<Link>,
    pending: HashMap<AgentId, Vec<Bytes>>,
    addr_book: HashMap<AgentId, SocketAddr>,
    neighbours: HashSet<AgentId>,
    next_conn_id: u64,
    shared: Arc<Shared>,
    net_tx: mpsc::Sender<NetEvent>,
    join: Option<JoinAttempt>,
    replay: ReplayGuard,
    /// The bootstrap addresses of the last join, for topping up.
    bootstrap: Vec<SocketAddr>,
    /// Top-up dials under way, by address, with when they started. Up to [`TOP_UP_DIALS`] at
    /// once: a dial to a dead address takes a whole handshake timeout (5 s), and one at a time
    /// let a dead bootstrap peer hold up every other candidate (R3: survivors whose bootstrap
    /// peer was killed stayed below 3 neighbours for 9 s or for good).
    top_up_dials: HashMap<SocketAddr, Instant>,
    /// Peers lost while joined (their last connection closed, or a dial to them failed), with
    /// their address and when they were lost. Probed whatever the neighbour count, so that a
    /// healed partition is found again even when both sides have enough neighbours of their own
    /// (measured: with top-ups alone a 4|4 partition healed only when some agent happened to
    /// be below 3 neighbours).
    lost: HashMap<AgentId, (SocketAddr, Instant)>,
    /// Probe dials under way, by address, with when they started.
    probes: HashMap<SocketAddr, Instant>,
    /// Addresses peers passed on in their hellos ([`wire::Hello::peers`]): top-up candidates
    /// besides the address book (which shuffles fill, see [`Actor::learn_peers`]).
    hints: HashSet<SocketAddr>,
    /// IHaves held back (see `ihave_hold`).
    held_ihaves: DelayQueue<(AgentId, proto::Message<AgentId>)>,
    /// How far recent publishers are, for [`Actor::ihave_hold`].
    depths: PathDepths,
    /// Payloads received or published lately (when, id, round), oldest first; see
    /// [`Actor::announce_recent`].
    recent: VecDeque<(Instant, [u8; 32], u64)>,
    /// Payloads the gossip layer delivered (each once), to tell duplicates apart.
    received: u64,
    /// Peers' incarnations that a newer one replaced, and when (see [`SUPERSEDED_RETENTION`]).
    superseded: HashMap<AgentId, (u64, Instant)>,
    /// Recent payload ids, and which duplicates may prune.
    duplicates: Duplicates,
}

impl Actor {
    async fn run(
        mut self,
        mut commands: mpsc::UnboundedReceiver<Command>,
        mut net_rx: mpsc::Receiver<NetEvent>,
    ) {
        let mut top_up = tokio::time::interval(TOP_UP_PERIOD);
        top_up.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = top_up.tick() => {
                    self.top_up();
                    self.learn_peers();
                    self.probe_lost();
                    self.refresh_peer_sample();
                    self.shared.keys.prune(std::time::Instant::now());
                }
                command = commands.recv() => match command {
                    Some(Command::Shutdown { reply }) => {
                        self.shutdown().await;
                        let _ = reply.send(());
                        break;
                    }
                    Some(command) => self.on_command(command),
                    None => {
                        self.shutdown().await;
                        break;
                    }
                },
                Some(event) = net_rx.recv() => self.on_net(event),
                Some(timer) = std::future::poll_fn(|cx| self.timers.poll_expired(cx)) => {
                    if self.shuffle_timer == Some(timer.key()) {
                        self.shuffle_timer = None;
                        self.last_shuffle = Some(Instant::now());
                    }
                    self.handle(InEvent::TimerExpired(timer.into_inner()));
                }
                Some(held) = std::future::poll_fn(|cx| self.held_ihaves.poll_expired(cx)) => {
                    let (peer, message) = held.into_inner();
                    // Not from a peer that left meanwhile: the gossip layer would graft from it.
                    if self.neighbours.contains(&peer) {
                        self.handle(InEvent::RecvMessage(peer, message));
                    }
                }
            }
            self.shared
                .connections
                .store(self.links.len() + self.spares.len(), Ordering::Release);
        }
    }

    fn handle(&mut self, event: InEvent<AgentId>) {
        // The iterator borrows the state: collect before acting on it.
        let out: Vec<_> = self.state.handle(event, Instant::now(), None).collect();
        for event in out {
            self.apply(event);
        }
    }

    fn apply(&mut self, event: OutEvent<AgentId>) {
        match event {
            OutEvent::SendMessage(to, message) => match wire::encode(&message) {
                Ok(frame) => self.send_to(to, Bytes::from(frame)),
                Err(e) => eprintln!("x0x: cannot encode a gossip message: {e}"),
            },
            OutEvent::EmitEvent(topic, event) if topic == network_topic() => self.on_gossip(event),
            OutEvent::EmitEvent(..) => {}
            OutEvent::ScheduleTimer(delay, timer) => {
                let shuffle = is_shuffle_timer(delay, &timer);
                let key = self.timers.insert(timer, delay);
                if shuffle {
                    self.shuffle_timer = Some(key);
                }
            }
            OutEvent::DisconnectPeer(peer) => {
                if let Some(link) = self.links.remove(&peer) {
                    close_after_grace(link, b"disconnect");
                }
            }
            OutEvent::PeerData(peer, data) => {
                if let Ok(addr) = postcard::from_bytes::<SocketAddr>(data.as_bytes()) {
                    // A wildcard names no host (agents advertise a concrete address): never
                    // let it replace one we know.
                    if !addr.ip().is_unspecified() || !self.addr_book.contains_key(&peer) {
                        self.addr_book.insert(peer, addr);
                    }
                }
            }
        }
    }

    fn on_gossip(&mut self, event: proto::Event<AgentId>) {
        match event {
            proto::Event::NeighborUp(peer) => {
                if self.neighbours.insert(peer) {
                    self.announce_recent(peer);
                    self.shared
                        .neighbours
                        .store(self.neighbours.len(), Ordering::Release);
                    self.shared.events.emit(Event::PeerJoined(peer));
                    if self.neighbours.len() == 1 {
                        self.shared.events.emit(Event::Connected { neighbours: 1 });
                    }
                }
                if self.shared.mode() == Mode::Joining {
                    self.shared.set_mode(Mode::Joined);
                }
                if let Some(join) = self.join.take() {
                    for waiter in join.waiters {
                        let _ = waiter.send(Ok(()));
                    }
                }
            }
            proto::Event::NeighborDown(peer) => self.lose_neighbour(peer),
            proto::Event::Received(gossip) => {
                self.received += 1;
                let hops = delivery_hops(gossip.scope);
                // Verified by the reader before the proto saw it; decode only.
                match wire::open_verified(&gossip.content) {
                    Ok(envelope) if !self.replay.accept(envelope.sender, envelope.seq) => {
                        let counters = &self.shared.counters;
                        counters.add(&counters.dropped_replay, 1);
                    }
                    Ok(envelope) => {
                        self.depths.note(envelope.sender, hops, Instant::now());
                        self.shared.registry.deliver(
                            envelope.sender,
                            &envelope.items,
                            hops,
                            &self.shared.counters,
                        );
                    }
                    Err(_) => {
                        let counters = &self.shared.counters;
                        counters.add(&counters.dropped_malformed, 1);
                    }
                }
            }
        }
    }

    fn remember_recent(&mut self, id: [u8; 32], round: u64) {
        if self.recent.len() >= RECENT_CAP {
            self.recent.pop_front();
        }
        self.recent.push_back((Instant::now(), id, round));
    }

    /// Tells a new neighbour which payloads arrived (or were published) here lately; it grafts
    /// those it lacks. Plumtree only pushes a payload when it arrives, so without this a peer
    /// that was cut off (say, all its neighbours were killed: it notices at the idle timeout)
    /// never gets what was published meanwhile, and its own payloads from that time reach
    /// nobody (R3: a publisher whose neighbours all died lost ~3 s of its messages).
    fn announce_recent(&mut self, peer: AgentId) {
        let now = Instant::now();
        while self
            .recent
            .front()
            .is_some_and(|(at, _, _)| now.duration_since(*at) > RECENT_RETENTION)
        {
            self.recent.pop_front();
        }
        if self.recent.is_empty() {
            return;
        }
        let ihaves: Vec<_> = self
            .recent
            .iter()
            .map(|&(_, id, round)| (id, round))
            .collect();
        let frame = wire::ihave_frame(network_topic().as_bytes(), &ihaves);
        self.send_to(peer, Bytes::from(frame));
    }

    fn lose_neighbour(&mut self, peer: AgentId) {
        if self.neighbours.remove(&peer) {
            self.shared
                .neighbours
                .store(self.neighbours.len(), Ordering::Release);
            self.shared.events.emit(Event::PeerLeft(peer));
            if self.neighbours.is_empty() {
                self.shared.events.emit(Event::Disconnected);
            }
            // At once rather than at the next period: the 5 s to regain neighbours (R3) start
            // when the peer dies, and noticing it takes the 2 s idle timeout already.
            self.top_up();
        }
    }

    fn send_to(&mut self, to: AgentId, frame: Bytes) {
        if let Some(link) = self.links.get(&to) {
            if link.queued.load(Ordering::Acquire) > PEER_HARD_CAP {
                // It stopped reading: cut it loose rather than buffer without bound.
                let link = self.links.remove(&to).expect("just looked up");
                link.connection.close(3u32.into(), b"too slow");
                self.handle(InEvent::PeerDisconnected(to));
                return;
            }
            let len = frame.len();
            link.queued.fetch_add(len, Ordering::AcqRel);
            self.shared.backlog.add(len);
            if link.frames.send(frame).is_err() {
                // The writer is gone (the connection failed); its Closed event is on the way.
                link.queued.fetch_sub(len, Ordering::AcqRel);
                self.shared.backlog.sub(len);
            }
            return;
        }
        let queue = self.pending.entry(to).or_default();
        if queue.len() < PENDING_CAP {
            queue.push(frame);
        }
        if queue.len() == 1 {
            match self.addr_book.get(&to) {
                Some(&addr) => self.dial(addr, Some(to), false),
                None => {
                    self.pending.remove(&to);
                    self.handle(InEvent::PeerDisconnected(to));
                }
            }
        }
    }

    fn dial(&self, addr: SocketAddr, expected: Option<AgentId>, bootstrap: bool) {
        self.dial_within(addr, expected, bootstrap, net::HANDSHAKE_TIMEOUT);
    }

    fn dial_within(
        &self,
        addr: SocketAddr,
        expected: Option<AgentId>,
        bootstrap: bool,
        limit: Duration,
    ) {
        let endpoint = self.endpoint.clone();
        let credentials = Arc::clone(&self.credentials);
        let listen = self.listen;
        let net_tx = self.net_tx.clone();
        let peers = self.shared.peer_sample();
        tokio::spawn(async move {
            let dial = net::dial(&endpoint, &credentials, listen, addr, expected, peers);
            let result = tokio::time::timeout(limit, dial).await.unwrap_or_else(|_| {
                Err(Error::new(
                    ErrorKind::Timeout,
                    format!("cannot connect to {addr}: timed out"),
                ))
            });
            let event = match result {
                Ok(auth) => NetEvent::Connected { auth, bootstrap },
                Err(error) => NetEvent::DialFailed {
                    addr,
                    peer: expected,
                    bootstrap,
                    error,
                },
            };
            let _ = net_tx.send(event).await;
        });
    }

    fn on_command(&mut self, command: Command) {
        match command {
            Command::Join {
                bootstrap,
                patience,
                reply,
            } => self.start_join(bootstrap, patience, reply),
            Command::Leave { reply } => {
                self.leave();
                tokio::spawn(async move {
                    tokio::time::sleep(CLOSE_GRACE).await;
                    let _ = reply.send(());
                });
            }
            Command::Broadcast(envelope) => {
                if self.shared.mode() != Mode::Left {
                    // Our own payload: copies that come back are duplicates, and we publish.
                    let id = *blake3::hash(&envelope).as_bytes();
                    if let Some(publisher) = wire::claimed_sender(&envelope) {
                        self.duplicates.remember(id, publisher, Instant::now());
                    }
                    self.remember_recent(id, 0);
                    self.handle(InEvent::Command(
                        network_topic(),
                        ProtoCommand::Broadcast(envelope, proto::Scope::Swarm),
                    ));
                }
            }
            Command::AbortJoin { reply } => {
                let aborted = self.shared.mode() == Mode::Joining;
                if aborted {
                    if let Some(join) = self.join.take() {
                        for waiter in join.waiters {
                            let _ = waiter.send(Err(JoinFailure::Ended(Error::new(
                                ErrorKind::Timeout,
                                "the join was abandoned",
                            ))));
                        }
                    }
                    self.handle(InEvent::Command(network_topic(), ProtoCommand::Quit));
                    self.shared.set_mode(Mode::Left);
                }
                let _ = reply.send(aborted);
            }
            Command::Shutdown { .. } => unreachable!("handled in run()"),
        }
    }

    /// When short of neighbours, reaches out to known, bootstrap and hinted peers that are not
    /// neighbours (a Join through each that answers makes it, or a peer it forwards us to, a
    /// neighbour), or with nobody to dial, joins again through a neighbour.
    fn top_up(&mut self) {
        let now = Instant::now();
        // Every dial ends within its timeout; this only guards the bookkeeping.
        self.top_up_dials
            .retain(|_, started| now.duration_since(*started) < 2 * REPAIR_DIAL_TIMEOUT);
        if self.shared.mode() != Mode::Joined || self.neighbours.len() >= TOP_UP_BELOW {
            return;
        }
        // Addresses of peers we are linked to already: dialing them again only opens a spare
        // connection (once one per second with two agents, leaking ~5 MiB a minute in R8).
        // A peer may be known under the address it advertises and the one we reached it at
        // (a bootstrap address such as 0.0.0.0:PORT or 127.0.0.1:PORT): both count.
        let linked: HashSet<SocketAddr> = self
            .links
            .iter()
            .flat_map(|(peer, link)| {
                let advertised = self.addr_book.get(peer).copied();
                advertised
                    .into_iter()
                    .chain([link.connection.remote_address()])
            })
            .collect();
        let known: Vec<(Option<AgentId>, SocketAddr)> = self
            .others_known()
            .map(|(peer, addr)| (Some(*peer), *addr))
            .chain(
                self.bootstrap
                    .iter()
                    .chain(&self.hints)
                    .filter(|addr| !linked.contains(&net::dialable(**addr)))
                    .map(|addr| (None, *addr)),
            )
            .filter(|(_, addr)| !self.top_up_dials.contains_key(addr))
            .collect();
        let free = TOP_UP_DIALS.saturating_sub(self.top_up_dials.len());
        if free == 0 || known.is_empty() {
            // Nobody (else) to dial: learn of more peers, and join again through a neighbour.
            self.shuffle_now();
            // The neighbour sends ForwardJoin random walks to its other neighbours, and each
            // walk that does not end at one of our neighbours ends at a peer that asks us to be
            // its neighbour (in small overlays most end at ours: the shuffle is what helps
            // there). Each join makes some peers drop a random neighbour for us.
            if let Some(&via) = self.neighbours.iter().choose(&mut rand::rng()) {
                self.handle(InEvent::Command(
                    network_topic(),
                    ProtoCommand::Join(vec![via]),
                ));
            }
            return;
        }
        // Several at once: some candidates are dead, and a dial to a dead address holds its
        // slot for the whole dial timeout.
        for (peer, addr) in known.into_iter().sample(&mut rand::rng(), free) {
            match peer {
                Some(peer) if self.links.contains_key(&peer) => {
                    self.handle(InEvent::Command(
                        network_topic(),
                        ProtoCommand::Join(vec![peer]),
                    ));
                }
                _ => {
                    self.top_up_dials.insert(addr, now);
                    self.dial_within(addr, peer, true, REPAIR_DIAL_TIMEOUT);
                }
            }
        }
    }

    /// Address-book entries of peers that are not neighbours.
    fn others_known(&self) -> impl Iterator<Item = (&AgentId, &SocketAddr)> {
        self.addr_book
            .iter()
            .filter(|(peer, _)| **peer != self.me && !self.neighbours.contains(peer))
    }

    /// Shuffles at once when this agent knows few peers besides its neighbours (just joined, or
    /// most of those it knew died), so that top-ups have somebody to dial.
    fn learn_peers(&mut self) {
        if self.shared.mode() != Mode::Joined {
            return;
        }
        let others = self.others_known().count();
        if others >= KNOWN_BELOW {
            self.learn_gap = MIN_SHUFFLE_GAP;
            return;
        }
        let now = Instant::now();
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
        let now = Instant::now();
        if self.neighbours.is_empty()
            || self
                .last_shuffle
                .is_some_and(|last| now.duration_since(last) < MIN_SHUFFLE_GAP)
        {
            return false;
        }
        let Some(expired) = self
            .shuffle_timer
            .take()
            .and_then(|key| self.timers.try_remove(&key))
        else {
            return false;
        };
        self.last_shuffle = Some(now);
        self.handle(InEvent::TimerExpired(expired.into_inner()));
        true
    }

    /// Picks the addresses the next hellos pass on: a random few from the address book.
    fn refresh_peer_sample(&self) {
        let mut rng = rand::rng();
        let sample: Vec<SocketAddr> = self
            .addr_book
            .values()
            .copied()
            .sample(&mut rng, wire::HELLO_PEERS);
        *self
            .shared
            .peer_sample
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = sample;
    }

    /// Dials one lost peer (if fewer than [`PROBE_DIALS`] probes are under way); on success it
    /// joins through it, as a top-up does.
    fn probe_lost(&mut self) {
        let now = Instant::now();
        self.lost
            .retain(|_, (_, lost_at)| now.duration_since(*lost_at) < LOST_RETENTION);
        self.probes
            .retain(|_, started| now.duration_since(*started) < 2 * REPAIR_DIAL_TIMEOUT);
        if self.shared.mode() != Mode::Joined
            || self.join.is_some()
            || self.probes.len() >= PROBE_DIALS
        {
            return;
        }
        let candidates: Vec<(AgentId, SocketAddr)> = self
            .lost
            .iter()
            .filter(|(peer, (addr, _))| {
                !self.links.contains_key(peer)
                    && !self.probes.contains_key(addr)
                    && !self.top_up_dials.contains_key(addr)
            })
            .map(|(peer, (addr, _))| (*peer, *addr))
            .collect();
        if candidates.is_empty() {
            return;
        }
        let (peer, addr) = candidates[rand::random_range(0..candidates.len())];
        self.probes.insert(addr, now);
        self.dial_within(addr, Some(peer), true, REPAIR_DIAL_TIMEOUT);
    }

    fn remember_lost(&mut self, peer: AgentId, addr: SocketAddr) {
        if self.shared.mode() != Mode::Joined || peer == self.me {
            return;
        }
        if self.lost.len() >= LOST_CAP && !self.lost.contains_key(&peer) {
            let oldest = self
                .lost
                .iter()
                .min_by_key(|(_, (_, at))| *at)
                .map(|(p, _)| *p);
            if let Some(oldest) = oldest {
                self.lost.remove(&oldest);
            }
        }
        // A failed probe keeps the original time: lost peers expire LOST_RETENTION after loss.
        self.lost.entry(peer).or_insert((addr, Instant::now()));
    }

    /// Remembers that `incarnation` of `peer` was replaced by a newer one.
    fn supersede(&mut self, peer: AgentId, incarnation: u64) {
        let now = Instant::now();
        if self.superseded.len() >= SUPERSEDED_CAP {
            self.superseded
                .retain(|_, (_, at)| now.duration_since(*at) < SUPERSEDED_RETENTION);
            if self.superseded.len() >= SUPERSEDED_CAP {
                return;
            }
        }
        self.superseded.insert(peer, (incarnation, now));
    }

    /// Whether `incarnation` of `peer` was replaced by a newer one lately: a restarted agent's
    /// old run never connects again, so this is a second live process with the same agent key.
    fn is_superseded(&self, peer: AgentId, incarnation: u64) -> bool {
        self.superseded
            .get(&peer)
            .is_some_and(|(old, at)| *old == incarnation && at.elapsed() < SUPERSEDED_RETENTION)
    }

    fn start_join(
        &mut self,
        bootstrap: Vec<SocketAddr>,
        patience: Duration,
        reply: oneshot::Sender<JoinOutcome>,
    ) {
        if !bootstrap.is_empty() {
            self.bootstrap = bootstrap.clone();
        }
        if self.shared.mode() == Mode::Joined
            && (bootstrap.is_empty() || !self.neighbours.is_empty())
        {
            let _ = reply.send(Ok(()));
            return;
        }
        if self.shared.mode() == Mode::Left {
            self.handle(InEvent::Command(
                network_topic(),
                ProtoCommand::Join(vec![]),
            ));
        }
        if bootstrap.is_empty() {
            // The first node of a network: there is nobody to wait for.
            self.shared.set_mode(Mode::Joined);
            let _ = reply.send(Ok(()));
            return;
        }
        self.shared.set_mode(Mode::Joining);
        let join = self.join.get_or_insert_with(|| JoinAttempt {
            waiters: Vec::new(),
            outstanding: 0,
            answered: false,
            errors: Vec::new(),
        });
        join.waiters.push(reply);
        join.outstanding += bootstrap.len();
        for addr in bootstrap {
            self.dial_within(addr, None, true, patience);
        }
    }

    fn leave(&mut self) {
        self.lost.clear();
        if self.shared.mode() == Mode::Left {
            return;
        }
        // Quit sends Disconnect to our neighbours, so they drop us at once instead of timing out.
        self.handle(InEvent::Command(network_topic(), ProtoCommand::Quit));
        self.shared.set_mode(Mode::Left);
        for peer in self.neighbours.clone() {
            self.lose_neighbour(peer);
        }
        if let Some(join) = self.join.take() {
            for waiter in join.waiters {
                let _ = waiter.send(Err(JoinFailure::Ended(Error::new(
                    ErrorKind::Cancelled,
                    "left the network before the join completed",
                ))));
            }
        }
        for (_, link) in self.links.drain() {
            close_after_grace(link, b"leave");
        }
        for link in self.spares.drain(..) {
            close_after_grace(link, b"leave");
        }
        self.pending.clear();
    }

    async fn shutdown(&mut self) {
        self.leave();
        tokio::time::sleep(CLOSE_GRACE).await;
        self.endpoint.close(0u32.into(), b"closed");
        self.shared.registry.close_all();
        self.shared.events.close_all();
    }

    fn on_net(&mut self, event: NetEvent) {
        match event {
            NetEvent::Connected { auth, bootstrap } => self.on_connected(auth, bootstrap),
            NetEvent::DialFailed {
                addr,
                peer,
                bootstrap,
                error,
            } => {
                if error.kind() == ErrorKind::InUse {
                    self.shared.identity_conflict(format_args!(
                        "the agent at {addr} refused this agent: another process runs with this \
                         agent's id (the same agent key)"
                    ));
                }
                if let Some(peer) = peer {
                    self.pending.remove(&peer);
                    // Unreachable: don't keep dialing it (a crashed peer, or a rogue's
                    // throwaway key); the gossip layer reintroduces it if it comes back.
                    self.addr_book.remove(&peer);
                    self.remember_lost(peer, addr);
                    self.handle(InEvent::PeerDisconnected(peer));
                }
                if bootstrap {
                    self.bootstrap_failed(addr, error);
                }
            }
            NetEvent::Frame { peer, received } => self.on_frame(peer, received),
            NetEvent::Closed {
                peer,
                conn_id,
                by_peer,
            } => self.on_closed(peer, conn_id, by_peer),
        }
    }

    fn on_frame(&mut self, peer: AgentId, received: Received) {
        let Received {
            message,
            payload,
            ihave_round,
        } = received;
        let Some(payload) = payload else {
            match ihave_round.and_then(|round| self.ihave_hold(peer, round)) {
                Some(hold) => {
                    self.held_ihaves.insert((peer, message), hold);
                }
                None => self.handle(InEvent::RecvMessage(peer, message)),
            }
            return;
        };
        let counters = &self.shared.counters;
        // Before delivery: stats never lag a message a reader already has.
        counters.add(&counters.envelopes_received, 1);
        let verdict = self
            .duplicates
            .check(payload.id, payload.publisher, Instant::now());
        if verdict == Verdict::Drop {
            counters.add(&counters.duplicates, 1);
            return;
        }
        let received_before = self.received;
        self.handle(InEvent::RecvMessage(peer, message));
        // The gossip layer delivers a payload the first time it sees it, at once; one it does
        // not deliver is a duplicate it suppressed (and pruned the link it came on).
        if self.received == received_before {
            let counters = &self.shared.counters;
            counters.add(&counters.duplicates, 1);
        } else if let Some(round) = payload.round {
            // Delivered here: announce it to new neighbours for a while, at the round the
            // gossip layer forwards it with.
            self.remember_recent(payload.id, round + 1);
        }
    }

    /// How long to hold an IHave from `peer` announcing payloads at `round` before the gossip
    /// layer sees it (and starts its graft timer), or `None` to pass it on at once.
    ///
    /// The graft timeout runs from the first announcement, and an announcement from a peer
    /// nearer the publisher arrives before the eager copy does even when nothing is wrong:
    /// `depth - round - 1` hops earlier. On deep paths that used up most of the timeout, so a
    /// payload a retransmission delayed by one RTT was grafted, arrived twice, and the graft
    /// closed a cycle (R1: grafts and duplicates grew with the tree's depth). Holding the
    /// announcement for those hops gives every path the same slack.
    fn ihave_hold(&self, peer: AgentId, round: u64) -> Option<Duration> {
        let behind = self.depths.deepest(Instant::now()) - round as f64 - 1.0;
        if behind <= 0.0 {
            return None;
        }
        let hop = self.links.get(&peer)?.connection.rtt() / 2;
        let hold = hop.mul_f64(behind).min(MAX_IHAVE_HOLD);
        (hold >= Duration::from_millis(1)).then_some(hold)
    }

    fn on_connected(&mut self, auth: Authenticated, bootstrap: bool) {
        let Authenticated {
            peer,
            machine: _,
            incarnation,
            listen,
            peers,
            connection,
            send,
            recv,
        } = auth;
        let remote = connection.remote_address();
        if peer == self.me {
            let error = if incarnation == self.credentials.incarnation() {
                connection.close(net::CLOSE_SELF.into(), b"that address is this agent's own");
                net::self_dial_error()
            } else {
                self.shared.identity_conflict(format_args!(
                    "the agent at {remote} has this agent's id {:?}: another process runs \
                     with the same agent key",
                    self.me
                ));
                connection.close(
                    net::CLOSE_DUPLICATE_IDENTITY.into(),
                    b"another process runs with this agent's id (the same agent key)",
                );
                net::duplicate_identity_error(self.me)
            };
            if bootstrap {
                self.bootstrap_failed(remote, error);
            }
            return;
        }
        if self.is_superseded(peer, incarnation) {
            self.shared.identity_conflict(format_args!(
                "two processes run as agent {peer:?} (one at {remote}): they share an agent key"
            ));
            connection.close(
                net::CLOSE_DUPLICATE_IDENTITY.into(),
                b"another process runs with this agent's id (the same agent key)",
            );
            if bootstrap {
                let error = Error::new(
                    ErrorKind::InUse,
                    format!("agent {peer:?} there also runs in another process"),
                );
                self.bootstrap_failed(remote, error);
            }
            return;
        }
        if self.shared.mode() == Mode::Left {
            connection.close(0u32.into(), b"not now");
            if bootstrap {
                self.bootstrap_failed(remote, Error::invalid_argument("left"));
            }
            return;
        }
        if self.addr_book.len() >= ADDR_BOOK_CAP && !self.addr_book.contains_key(&peer) {
            // Bounded: every authenticated key adds an entry, and keys cost an attacker nothing.
            let victim = self
                .addr_book
                .keys()
                .nth(rand::random_range(0..self.addr_book.len()));
            if let Some(victim) = victim.copied() {
                self.addr_book.remove(&victim);
            }
        }
        self.addr_book.insert(peer, listen);
        self.hints.remove(&listen);
        for hint in peers {
            if self.hints.len() >= HINTS_CAP {
                break;
            }
            if hint != self.listen && !self.addr_book.values().any(|addr| *addr == hint) {
                self.hints.insert(hint);
            }
        }
        let repair = bootstrap
            && (self.top_up_dials.contains_key(&remote) || self.probes.contains_key(&remote));
        if repair
            && self
                .links
                .get(&peer)
                .is_some_and(|link| link.incarnation == incarnation)
        {
            // A top-up or probe reached a peer we are linked to already (its address changed,
            // or it reconnected meanwhile): join through the link, keep no spare connection.
            self.top_up_dials.remove(&remote);
            self.probes.remove(&remote);
            self.lost.remove(&peer);
            connection.close(0u32.into(), b"already connected");
            self.handle(InEvent::Command(
                network_topic(),
                ProtoCommand::Join(vec![peer]),
            ));
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
                old.connection.close(5u32.into(), b"peer restarted");
                self.supersede(peer, old.incarnation);
            }
            self.spares.retain(|spare| spare.peer != peer);
            self.handle(InEvent::PeerDisconnected(peer));
        }
        self.next_conn_id += 1;
        let conn_id = self.next_conn_id;
        tokio::spawn(read_loop(
            peer,
            conn_id,
            recv,
            connection.clone(),
            self.net_tx.clone(),
            Arc::clone(&self.shared),
        ));
        let (frames, frame_rx) = mpsc::unbounded_channel();
        let queued = Arc::new(AtomicUsize::new(0));
        tokio::spawn(write_loop(
            send,
            connection.clone(),
            frame_rx,
            Arc::clone(&queued),
            Arc::clone(&self.shared),
        ));
        let link = Link {
            peer,
            incarnation,
            conn_id,
            frames,
            queued,
            connection,
        };
        match self.links.entry(peer) {
            std::collections::hash_map::Entry::Occupied(_) => self.spares.push(link),
            std::collections::hash_map::Entry::Vacant(slot) => {
                slot.insert(link);
                for frame in self.pending.remove(&peer).unwrap_or_default() {
                    self.send_to(peer, frame);
                }
            }
        }
        self.lost.remove(&peer);
        if bootstrap {
            let repair =
                self.top_up_dials.remove(&remote).is_some() | self.probes.remove(&remote).is_some();
            if let (false, Some(join)) = (repair, self.join.as_mut()) {
                join.outstanding = join.outstanding.saturating_sub(1);
                join.answered = true;
            }
            self.handle(InEvent::Command(
                network_topic(),
                ProtoCommand::Join(vec![peer]),
            ));
        }
    }

    fn bootstrap_failed(&mut self, addr: SocketAddr, error: Error) {
        self.hints.remove(&addr);
        let repair =
            self.top_up_dials.remove(&addr).is_some() | self.probes.remove(&addr).is_some();
        if repair {
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
        let join = self.join.take().expect("checked above");
        for waiter in join.waiters {
            let _ = waiter.send(Err(JoinFailure::Unreachable(join.errors.clone())));
        }
        self.handle(InEvent::Command(network_topic(), ProtoCommand::Quit));
        self.shared.set_mode(Mode::Left);
    }

    fn on_closed(&mut self, peer: AgentId, conn_id: u64, by_peer: bool) {
        if let Some(i) = self.spares.iter().position(|l| l.conn_id == conn_id) {
            self.spares.swap_remove(i);
            return;
        }
        if self.links.get(&peer).is_some_and(|l| l.conn_id == conn_id) {
            self.links.remove(&peer);
            if let Some(i) = self.spares.iter().position(|l| l.peer == peer) {
                let spare = self.spares.swap_remove(i);
                self.links.insert(peer, spare);
            } else {
                if !by_peer {
                    // Most likely gone: a top-up should not spend a handshake timeout on it.
                    // If it is alive, gossip brings its address back (or it dials us).
                    // A peer that closed the connection itself is alive and chose to: probing
                    // it would join through it, forcing the neighbourship it refused (and one
                    // of its neighbours out).
                    if let Some(addr) = self.addr_book.remove(&peer) {
                        self.remember_lost(peer, addr);
                    }
                }
                self.handle(InEvent::PeerDisconnected(peer));
            }
        }
    }
}

/// Per recent publisher: a moving average of the hops its payloads took to reach us, and when
/// the last one came.
#[derive(Debug, Default)]
struct PathDepths(HashMap<AgentId, (f64, Instant)>);

impl PathDepths {
    fn note(&mut self, publisher: AgentId, hops: u32, now: Instant) {
        if self.0.len() >= DEPTHS_CAP && !self.0.contains_key(&publisher) {
            self.0
                .retain(|_, (_, at)| now.duration_since(*at) <= DEPTH_TTL);
            if self.0.len() >= DEPTHS_CAP {
                return;
            }
        }
        let (depth, at) = self.0.entry(publisher).or_insert((f64::from(hops), now));
        *depth += (f64::from(hops) - *depth) / 16.0;
        *at = now;
    }

    /// The path depth of the recent publisher farthest from us. An IHave names no publisher,
    /// and one eager tree serves them all, shaped by the pruner's payloads: other publishers'
    /// payloads take longer paths through it (R1: up to twice the depth), and those are the
    /// ones an early graft turns into duplicates. (Holding by the mean depth over all
    /// publishers instead: R1 redundancy 0.43-0.56 in runs with deep trees, now 0.34-0.49.)
    fn deepest(&self, now: Instant) -> f64 {
        self.0
            .values()
            .filter(|(_, at)| now.duration_since(*at) <= DEPTH_TTL)
            .map(|(depth, _)| *depth)
            .fold(0.0, f64::max)
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

fn close_after_grace(link: Link, reason: &'static [u8]) {
    // Dropping the sender lets the writer flush what is queued and finish the stream.
    drop(link.frames);
    tokio::spawn(async move {
        tokio::time::sleep(CLOSE_GRACE).await;
        link.connection.close(0u32.into(), reason);
    });
}

async fn read_loop(
    peer: AgentId,
    conn_id: u64,
    recv: RecvStream,
    connection: Connection,
    net_tx: mpsc::Sender<NetEvent>,
    shared: Arc<Shared>,
) {
    let strikes = Arc::new(AtomicU32::new(0));
    let lanes = tokio::spawn(accept_lanes(
        peer,
        connection.clone(),
        net_tx.clone(),
        Arc::clone(&shared),
        Arc::clone(&strikes),
    ));
    let finished = read_frames(
        peer,
        recv,
        connection.clone(),
        net_tx.clone(),
        Arc::clone(&shared),
        strikes,
    )
    .await;
    lanes.abort();
    if let Some(quinn::ConnectionError::ApplicationClosed(close)) = connection.close_reason() {
        if close.error_code == net::CLOSE_DUPLICATE_IDENTITY.into() {
            shared.identity_conflict(format_args!(
                "the agent at {} refused this agent: another process runs with this agent's id \
                 (the same agent key)",
                connection.remote_address()
            ));
        }
    }
    // A peer that finishes its stream or closes the connection is alive: it dropped us (a
    // refused or ended neighbourship, a shuffle answered over a passing connection). Only a
    // connection that timed out or failed means the peer may be gone.
    let by_peer = finished
        || matches!(
            connection.close_reason(),
            Some(quinn::ConnectionError::ApplicationClosed(_))
        );
    let _ = net_tx
        .send(NetEvent::Closed {
            peer,
            conn_id,
            by_peer,
        })
        .await;
}

/// Reads the peer's data lanes (see [`crate::streams::lane_of`]) as they are opened.
async fn accept_lanes(
    peer: AgentId,
    connection: Connection,
    net_tx: mpsc::Sender<NetEvent>,
    shared: Arc<Shared>,
    strikes: Arc<AtomicU32>,
) {
    while let Ok(recv) = connection.accept_uni().await {
        tokio::spawn(read_frames(
            peer,
            recv,
            connection.clone(),
            net_tx.clone(),
            Arc::clone(&shared),
            Arc::clone(&strikes),
        ));
    }
}

/// Reads, checks and verifies the frames of one stream until it ends; invalid messages count
/// as strikes against the whole connection. True if the peer finished the stream.
async fn read_frames(
    peer: AgentId,
    mut recv: RecvStream,
    connection: Connection,
    net_tx: mpsc::Sender<NetEvent>,
    shared: Arc<Shared>,
    strikes: Arc<AtomicU32>,
) -> bool {
    let counters = &shared.counters;
    let mut reader = StreamReader::default();
    loop {
        let frame = match net::read_frame_checked(&mut recv).await {
            Ok(Some(frame)) => frame,
            Ok(None) => return true,
            Err(ReadError::Io(_)) => return false,
            Err(ReadError::Oversized(_)) => {
                // The stream cannot be resynchronised after a bad length: drop the connection.
                counters.add(&counters.dropped_oversized, 1);
                connection.close(2u32.into(), b"frame too large");
                return false;
            }
        };
        counters.add(&counters.bytes_in, frame.len() as u64 + 4);
        // Decode and verify here, off the actor: the actor only ever sees valid messages.
        let received = match reader.read(&frame, &shared.keys) {
            Ok(Some(received)) => received,
            Ok(None) => continue,
            Err(rejection) => {
                counters.add(
                    match rejection {
                        Rejection::BadSignature => &counters.dropped_bad_signature,
                        Rejection::WrongSender => &counters.dropped_wrong_sender,
                        Rejection::Malformed => &counters.dropped_malformed,
                    },
                    1,
                );
                if strikes.fetch_add(1, Ordering::AcqRel) + 1 >= MAX_STRIKES {
                    // Recorded first: a reconnect that races the close must see it.
                    shared
                        .penalties
                        .strike_out(connection.remote_address().ip(), Instant::now());
                    connection.close(4u32.into(), b"too many invalid messages");
                    return false;
                }
                continue;
            }
        };
        if net_tx
            .send(NetEvent::Frame { peer, received })
            .await
            .is_err()
        {
            return false;
        }
    }
}

async fn write_loop(
    control: SendStream,
    connection: Connection,
    mut frames: mpsc::UnboundedReceiver<Bytes>,
    queued: Arc<AtomicUsize>,
    shared: Arc<Shared>,
) {
    let mut streams: Vec<Option<SendStream>> = (0..=LANES).map(|_| None).collect();
    streams[0] = Some(control);
    let mut bufs: Vec<BytesMut> = (0..=LANES).map(|_| BytesMut::new()).collect();
    let mut writer = ConnectionWriter::default();
    let mut batch = Vec::with_capacity(256);
    while frames.recv_many(&mut batch, 256).await > 0 {
        let payload: usize = batch.iter().map(Bytes::len).sum();
        for frame in batch.drain(..) {
            // Not sent only if the publisher's key left the store (unused for a minute, or
            // over 4,096 publishers): the peer can still graft the payload from another.
            writer.put(&mut bufs, &frame, &shared.keys);
        }
        let mut failed = false;
        for (lane, buf) in bufs.iter_mut().enumerate() {
            if buf.is_empty() {
                continue;
            }
            let stream = match &mut streams[lane] {
                Some(stream) => stream,
                slot => match connection.open_uni().await {
                    Ok(stream) => slot.insert(stream),
                    Err(_) => {
                        failed = true;
                        break;
                    }
                },
            };
            let written = stream.write_all(buf).await;
            let counters = &shared.counters;
            counters.add(&counters.bytes_out, buf.len() as u64);
            buf.clear();
            if written.is_err() {
                failed = true;
                break;
            }
        }
        queued.fetch_sub(payload, Ordering::AcqRel);
        shared.backlog.sub(payload);
        if failed {
            // Close the whole connection: a link whose writer is gone would stay a neighbour
            // that silently drops everything (a peer can stop one stream and keep the rest).
            connection.close(6u32.into(), b"stream failed");
            break;
        }
    }
    // Whatever is still queued will never be sent: take it off the backlog.
    frames.close();
    while let Ok(frame) = frames.try_recv() {
        shared.backlog.sub(frame.len());
    }
    for stream in streams.iter_mut().flatten() {
        let _ = stream.finish();
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

    /// Two proto states, B a first node (joined, alone) and A joined through it; also returns
    /// the (control) frames A sent to join.
    pub(crate) fn joined_pair() -> (ProtoState, ProtoState, Vec<Vec<u8>>) {
        let (mut a, mut b) = (proto_state(1), proto_state(2));
        let alone = InEvent::Command(network_topic(), ProtoCommand::Join(vec![]));
        let _timers: Vec<_> = b.handle(alone, Instant::now(), None).collect();
        let join = InEvent::Command(network_topic(), ProtoCommand::Join(vec![*b.me()]));
        let control = pump(&mut a, &mut b, join);
        (a, b, control)
    }

    /// The data frame A sends B when it broadcasts `content`.
    pub(crate) fn data_frame(a: &mut ProtoState, b: &mut ProtoState, content: Bytes) -> Vec<u8> {
        let broadcast = ProtoCommand::Broadcast(content, proto::Scope::Swarm);
        let mut data: Vec<_> = pump(a, b, InEvent::Command(network_topic(), broadcast))
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
    fn ihaves_are_held_for_the_farthest_recent_publisher() {
        let mut depths = PathDepths::default();
        let (near, far) = (AgentId([1; 32]), AgentId([2; 32]));
        let start = Instant::now();
        assert_eq!(depths.deepest(start), 0.0);
        for _ in 0..64 {
            depths.note(near, 2, start);
            depths.note(far, 6, start);
        }
        assert_eq!(
            depths.deepest(start),
            6.0,
            "the far publisher's, not the mean"
        );
        let later = start + DEPTH_TTL / 2;
        depths.note(near, 2, later);
        let far_silent = later + DEPTH_TTL / 2 + Duration::from_millis(1);
        assert_eq!(depths.deepest(far_silent), 2.0, "the far one fell silent");
        // One unusual path moves the average only a little.
        depths.note(near, 10, later);
        assert!(depths.deepest(far_silent) < 3.0);
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
