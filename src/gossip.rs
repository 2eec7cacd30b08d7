//! The network driver: runs the sans-IO overlay node (`overlay::node::Node`) on tokio
//! and quinn. It is the only part of the network layer that spawns tasks, reads clocks or
//! touches sockets.
//!
//! One task (the driver) owns the node and the connection table, and never awaits a peer:
//! sends go into unbounded per-peer queues drained by writer tasks, so a slow peer cannot stall
//! it (awaiting a bounded per-peer queue deadlocked a 5-node mesh in the prototype). Publishers
//! are throttled instead, by the node-wide send backlog. Reader tasks verify every data message
//! before the node sees it.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU32, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use quinn::{Connection, RecvStream, SendStream};
use rand::rngs::StdRng;
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;

use crate::context::AgentContext;
use crate::direct::Direct;
use crate::error::{Error, ErrorKind, Result};
use crate::identity::{AgentId, MachineId, PublicKey};
use crate::net::{self, Authenticated, ReadError};
use crate::overlay::links::Outgoing;
use crate::overlay::node::{Action, Connected, Input, Node};
pub use crate::overlay::node::{JoinFailure, JoinOutcome};
use crate::penalties::Penalties;
use crate::presence::{capability_key, Presence};
use crate::pubsub::Registry;
use crate::stats::Counters;
use crate::streams::{ConnectionWriter, Incoming, KeyStore, StreamReader, LANES};
use crate::wire::{self, Credentials, Item, Rejection};

/// A peer whose unsent backlog passes this many bytes is treated as dead.
const PEER_HARD_CAP: usize = 256 << 20;
/// Publishers wait while the node-wide unsent backlog is above this many bytes...
const BACKLOG_HIGH: usize = 32 << 20;
/// ...until it falls to this.
const BACKLOG_LOW: usize = 16 << 20;
/// Invalid data messages tolerated from one connection before it is closed.
pub const MAX_STRIKES: u32 = 64;
/// Time a closing connection gets to flush its last frames.
const CLOSE_GRACE: Duration = Duration::from_millis(250);

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

/// The network's own state, shared by the driver, its network tasks, the agent façade and
/// the signer; what the rest of the agent shares is its `context::AgentContext`.
pub struct Shared {
    /// The agent's counters, subscriptions, events and network standing.
    pub context: Arc<AgentContext>,
    connections: AtomicUsize,
    backlog: Backlog,
    penalties: Penalties,
    /// A few known peers' addresses, refreshed by the node, passed on in every hello.
    peer_sample: Mutex<Vec<SocketAddr>>,
    /// Publisher keys, for the writers to announce on the streams they forward payloads on.
    keys: KeyStore,
    /// This agent's card and the cards it holds.
    pub presence: Arc<Presence>,
}

impl Shared {
    /// The network state of agent `context`, whose public key is `me`, before it joins.
    pub(crate) fn new(context: Arc<AgentContext>, me: PublicKey, presence: Arc<Presence>) -> Self {
        Self {
            presence,
            context,
            connections: AtomicUsize::new(0),
            backlog: Backlog::default(),
            penalties: Penalties::default(),
            peer_sample: Mutex::new(Vec::new()),
            keys: KeyStore::new(me),
        }
    }

    /// Open peer connections (as of the driver's last step).
    pub fn connections(&self) -> usize {
        self.connections.load(Ordering::Acquire)
    }

    /// Blocks the caller (the signer thread) while too much is queued for sending.
    pub fn wait_for_send_room(&self) {
        self.backlog.wait_for_room();
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
    /// Send an origin frame (`body`) to our neighbours in swarm `swarm`.
    Origin {
        swarm: [u8; 32],
        body: Bytes,
    },
    /// The caller gave up waiting for a join: stop it, unless it succeeded meanwhile.
    AbortJoin {
        reply: oneshot::Sender<bool>,
    },
    Shutdown {
        reply: oneshot::Sender<()>,
    },
    /// Where does `agent` listen (for a direct connection)?
    Locate {
        agent: AgentId,
        reply: oneshot::Sender<Vec<SocketAddr>>,
    },
    /// This agent now advertises the capabilities with these rendezvous keys.
    Advertise(BTreeSet<[u8; 32]>),
    /// Which agents advertise the capability with rendezvous key `key`?
    Find {
        key: [u8; 32],
        reply: oneshot::Sender<Vec<(AgentId, SocketAddr)>>,
    },
}

/// What the network tasks report to the driver: a connection whose hello checked out (the
/// driver names it before the node decides on it), or an input for the node as it is.
enum NetEvent {
    Connected {
        auth: Authenticated,
        bootstrap: bool,
    },
    Node(Input),
}

/// The façade's handle on the driver.
pub struct Network {
    commands: mpsc::UnboundedSender<Command>,
    shared: Arc<Shared>,
    local_addr: SocketAddr,
    direct: Arc<Direct>,
}

impl Network {
    /// Binds the endpoint and starts the driver (on the current runtime).
    pub fn start(
        credentials: Arc<Credentials>,
        bind: SocketAddr,
        registry: Arc<Registry>,
        counters: Arc<Counters>,
        capabilities: Vec<String>,
        info: BTreeMap<String, String>,
    ) -> Result<Self> {
        let endpoints = net::endpoint(bind)?;
        let endpoint = endpoints.endpoint.clone();
        let local_addr = endpoint
            .local_addr()
            .map_err(|e| Error::io("cannot read the bound address", &e))?;
        let context = Arc::new(AgentContext::new(counters, registry));
        let keys: BTreeSet<[u8; 32]> = capabilities.iter().map(|c| capability_key(c)).collect();
        let presence = Arc::new(Presence::new(
            credentials.agent_key().clone(),
            credentials.incarnation(),
            Arc::clone(&context),
            capabilities,
            info,
        ));
        let shared = Arc::new(Shared::new(
            Arc::clone(&context),
            credentials.agent_key().public_key().clone(),
            Arc::clone(&presence),
        ));
        let (commands, command_rx) = mpsc::unbounded_channel();
        let (net_tx, net_rx) = mpsc::channel(1024);
        let advertised = net::advertised(local_addr);
        let mut addresses = vec![advertised];
        addresses.extend(
            net::local_addrs(local_addr)
                .into_iter()
                .filter(|addr| *addr != advertised),
        );
        presence.set_addresses(addresses);
        let direct = Direct::start(
            Arc::clone(&credentials),
            endpoints,
            advertised,
            Arc::clone(&context),
            Arc::clone(&presence),
        );
        let node = Node::new(
            credentials.agent_id(),
            credentials.incarnation(),
            advertised,
            context,
            rand::make_rng::<StdRng>(),
            Instant::now(),
        )?;
        let driver = Driver {
            node,
            credentials,
            endpoint: endpoint.clone(),
            listen: advertised,
            shared: Arc::clone(&shared),
            net_tx: net_tx.clone(),
            links: HashMap::new(),
            fresh: HashMap::new(),
            waiters: HashMap::new(),
            locators: HashMap::new(),
            finders: HashMap::new(),
            cards_shown: HashMap::new(),
            next_waiter: 0,
            next_conn_id: 0,
            feedback: Vec::new(),
        };
        tokio::spawn(accept_loop(
            endpoint,
            Arc::clone(&driver.credentials),
            advertised,
            net_tx,
            Arc::clone(&shared),
            Arc::clone(&direct),
        ));
        tokio::spawn(driver.run(command_rx, net_rx));
        if !keys.is_empty() {
            let _ = commands.send(Command::Advertise(keys));
        }
        Ok(Self {
            commands,
            shared,
            local_addr,
            direct,
        })
    }

    /// Direct messages and requests.
    pub(crate) fn direct(&self) -> &Arc<Direct> {
        &self.direct
    }

    /// This agent's card and the cards it holds.
    pub(crate) fn presence(&self) -> &Arc<Presence> {
        &self.shared.presence
    }

    /// Advertises exactly `capabilities` (checked by the caller): the records of others are
    /// taken back from the directory, new ones registered, and the new card shown to peers.
    pub fn advertise(&self, capabilities: &[String]) -> Result<()> {
        let keys = capabilities.iter().map(|c| capability_key(c)).collect();
        self.send(Command::Advertise(keys))
    }

    /// The agents (and where they listen) that have records for `capability` in the
    /// directory; empty when not joined or none are found.
    pub async fn find(&self, capability: &str) -> Vec<(AgentId, SocketAddr)> {
        let (reply, done) = oneshot::channel();
        let key = capability_key(capability);
        if self.send(Command::Find { key, reply }).is_err() {
            return Vec::new();
        }
        done.await.unwrap_or_default()
    }

    /// Where `agent` may listen: from the address book, or a directory lookup (empty when not
    /// joined, or nobody knows it).
    pub async fn locate(&self, agent: AgentId) -> Vec<SocketAddr> {
        let (reply, done) = oneshot::channel();
        if self.send(Command::Locate { agent, reply }).is_err() {
            return Vec::new();
        }
        done.await.unwrap_or_default()
    }

    /// State shared with the driver.
    pub fn shared(&self) -> &Arc<Shared> {
        &self.shared
    }

    /// The agent's counters, subscriptions, events and network standing.
    pub fn context(&self) -> &Arc<AgentContext> {
        &self.shared.context
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

    /// A function the signer thread can call to broadcast.
    pub fn broadcaster(&self) -> impl Fn(Bytes) + Send + 'static {
        let commands = self.commands.clone();
        let shared = Arc::clone(&self.shared);
        move |envelope| {
            shared.wait_for_send_room();
            let _ = commands.send(Command::Broadcast(envelope));
        }
    }

    /// A function the signer thread calls with each small batch (topic, sequence number, the
    /// previous sequence number on the topic, messages) before it signs it: the batch goes to
    /// the topic swarm's neighbours as an origin frame, ahead of its envelope.
    pub fn originator(&self) -> impl Fn(&str, u64, Option<u64>, &[Item]) + Send + 'static {
        let commands = self.commands.clone();
        move |topic, seq, prev, items| match wire::encode_origin(topic, seq, prev, items) {
            Ok(body) => {
                let swarm = wire::topic_swarm(topic);
                let body = Bytes::from(body);
                let _ = commands.send(Command::Origin { swarm, body });
            }
            // Cannot happen (encoding into memory); the envelope still goes.
            Err(e) => log::error!("x0x: cannot encode an origin frame: {e}"),
        }
    }

    /// Stops the driver: leaves, closes every connection and the endpoint.
    pub async fn shutdown(&self) {
        // Letters are refused from here on; answers already handed over get the overlay's
        // close grace to leave before the endpoint (and so every connection) closes.
        self.direct.close();
        let (reply, done) = oneshot::channel();
        if self.send(Command::Shutdown { reply }).is_ok() {
            let _ = done.await;
        }
        self.direct.close_links();
    }
}

async fn accept_loop(
    endpoint: quinn::Endpoint,
    credentials: Arc<Credentials>,
    listen: SocketAddr,
    net_tx: mpsc::Sender<NetEvent>,
    shared: Arc<Shared>,
    direct: Arc<Direct>,
) {
    while let Some(incoming) = endpoint.accept().await {
        if shared
            .penalties
            .refuses(incoming.remote_address().ip(), Instant::now())
        {
            // Before the handshake: a refused connection costs one packet.
            let counters = &shared.context.counters;
            counters.add(&counters.connections_refused, 1);
            incoming.refuse();
            continue;
        }
        let credentials = Arc::clone(&credentials);
        let net_tx = net_tx.clone();
        let peers = shared.peer_sample();
        let direct = Arc::clone(&direct);
        tokio::spawn(async move {
            // A failed incoming handshake is the other side's problem: nothing to report.
            if let Ok(auth) = net::accept(incoming, &credentials, listen, peers).await {
                if auth.purpose == net::Purpose::Direct {
                    direct.adopt(auth);
                    return;
                }
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

/// An adopted connection: where its frames go, and how much of them is unsent.
struct DriverLink {
    incarnation: u64,
    frames: mpsc::UnboundedSender<Outgoing>,
    queued: Arc<AtomicUsize>,
    connection: Connection,
    peer: AgentId,
}

/// An authenticated connection the node has not decided on yet.
struct Fresh {
    peer: AgentId,
    incarnation: u64,
    machine: MachineId,
    connection: Connection,
    send: SendStream,
    recv: RecvStream,
}

struct Driver {
    node: Node,
    credentials: Arc<Credentials>,
    endpoint: quinn::Endpoint,
    listen: SocketAddr,
    shared: Arc<Shared>,
    net_tx: mpsc::Sender<NetEvent>,
    /// Adopted connections, by the node's connection id.
    links: HashMap<u64, DriverLink>,
    fresh: HashMap<u64, Fresh>,
    /// `join_network` calls waiting for the node's answer.
    waiters: HashMap<u64, oneshot::Sender<JoinOutcome>>,
    /// `locate` calls waiting for the node's answer.
    locators: HashMap<u64, oneshot::Sender<Vec<SocketAddr>>>,
    /// `find` calls waiting for the node's answer.
    finders: HashMap<u64, oneshot::Sender<Vec<(AgentId, SocketAddr)>>>,
    /// When this agent's current card (signed at the second value) was shown to each peer
    /// run, so that each sees it once.
    cards_shown: HashMap<(AgentId, u64), (Instant, u64)>,
    next_waiter: u64,
    next_conn_id: u64,
    /// Inputs the driver's own actions produced, handed to the node once the batch is done.
    feedback: Vec<Input>,
}

impl Driver {
    async fn run(
        mut self,
        mut commands: mpsc::UnboundedReceiver<Command>,
        mut net_rx: mpsc::Receiver<NetEvent>,
    ) {
        let mut key_pruning = tokio::time::interval(Duration::from_secs(1));
        key_pruning.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        // One sleep, moved to the node's next deadline whenever that changes.
        let far = || Instant::now() + Duration::from_secs(86_400);
        let timer = tokio::time::sleep_until(far());
        tokio::pin!(timer);
        let mut armed: Option<Instant> = None;
        let registry = Arc::clone(&self.shared.context.registry);
        loop {
            let deadline = self.node.poll_timeout();
            if deadline != armed {
                timer.as_mut().reset(deadline.unwrap_or_else(far));
                armed = deadline;
            }
            tokio::select! {
                _ = key_pruning.tick() => {
                    self.shared.keys.prune(std::time::Instant::now());
                    self.shared.presence.expire();
                    self.show_card_to_all();
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
                () = registry.interest_changed() => self.node.sync_topics(Instant::now()),
                () = &mut timer, if armed.is_some() => {
                    armed = None;
                    self.node.handle_timeout(Instant::now());
                }
            }
            self.carry_out();
            self.shared
                .connections
                .store(self.node.connections(), Ordering::Release);
        }
    }

    fn on_command(&mut self, command: Command) {
        let now = Instant::now();
        match command {
            Command::Join {
                bootstrap,
                patience,
                reply,
            } => {
                self.next_waiter += 1;
                let waiter = self.next_waiter;
                self.waiters.insert(waiter, reply);
                self.node.handle(
                    Input::Join {
                        waiter,
                        bootstrap,
                        patience,
                    },
                    now,
                );
            }
            Command::Leave { reply } => {
                self.farewell();
                self.node.handle(Input::Leave, now);
                tokio::spawn(async move {
                    tokio::time::sleep(CLOSE_GRACE).await;
                    let _ = reply.send(());
                });
            }
            Command::Broadcast(envelope) => self.node.handle(Input::Broadcast(envelope), now),
            Command::Origin { swarm, body } => {
                self.node.handle(Input::SendOrigin { swarm, body }, now);
            }
            Command::AbortJoin { reply } => {
                let _ = reply.send(self.node.abort_join(now));
            }
            Command::Locate { agent, reply } => {
                self.next_waiter += 1;
                let waiter = self.next_waiter;
                self.locators.insert(waiter, reply);
                self.node.handle(Input::Locate { waiter, agent }, now);
            }
            Command::Advertise(keys) => {
                self.node.handle(Input::Advertise { keys }, now);
                self.show_card_to_all();
            }
            Command::Find { key, reply } => {
                self.next_waiter += 1;
                let waiter = self.next_waiter;
                self.finders.insert(waiter, reply);
                self.node.handle(Input::Find { waiter, key }, now);
            }
            Command::Shutdown { .. } => unreachable!("handled in run()"),
        }
    }

    fn on_net(&mut self, event: NetEvent) {
        let input = match event {
            NetEvent::Connected { auth, bootstrap } => {
                self.next_conn_id += 1;
                let conn_id = self.next_conn_id;
                let Authenticated {
                    peer,
                    incarnation,
                    listen,
                    peers,
                    connection,
                    send,
                    recv,
                    machine,
                    ..
                } = auth;
                let remote = connection.remote_address();
                self.fresh.insert(
                    conn_id,
                    Fresh {
                        peer,
                        incarnation,
                        machine,
                        connection,
                        send,
                        recv,
                    },
                );
                Input::Connected(Connected {
                    conn_id,
                    peer,
                    incarnation,
                    listen,
                    peers,
                    remote,
                    bootstrap,
                })
            }
            NetEvent::Node(input) => {
                if let Input::Closed { conn_id, .. } = input {
                    self.links.remove(&conn_id);
                }
                input
            }
        };
        self.node.handle(input, Instant::now());
    }

    /// Carries out every action the node asks for, and hands it what that produced.
    fn carry_out(&mut self) {
        loop {
            while let Some(action) = self.node.poll_action() {
                self.act(action);
            }
            if self.feedback.is_empty() {
                break;
            }
            let now = Instant::now();
            for input in std::mem::take(&mut self.feedback) {
                self.node.handle(input, now);
            }
        }
        // The node decides on each new connection at once; one it passed over is dropped.
        self.fresh.clear();
    }

    fn act(&mut self, action: Action) {
        match action {
            Action::Send { conn_id, frame } => self.send(conn_id, frame),
            Action::Dial {
                addr,
                expected,
                bootstrap,
                timeout,
            } => self.dial(addr, expected, bootstrap, timeout),
            Action::Adopt { conn_id } => {
                self.adopt(conn_id);
                if let Some(card) = self.current_card() {
                    self.show_card(conn_id, &card);
                }
            }
            Action::Close {
                conn_id,
                code,
                reason,
            } => {
                let connection = match self.fresh.remove(&conn_id) {
                    Some(fresh) => Some(fresh.connection),
                    None => self.links.remove(&conn_id).map(|link| link.connection),
                };
                if let Some(connection) = connection {
                    if code == net::CLOSE_INVALID_MESSAGES {
                        // The node caught the peer out (it equivocated): as a strike-out.
                        self.shared
                            .penalties
                            .strike_out(connection.remote_address().ip(), Instant::now());
                    }
                    connection.close(code.into(), reason);
                }
            }
            Action::CloseAfterGrace { conn_id, reason } => {
                if let Some(link) = self.links.remove(&conn_id) {
                    // Dropping the sender lets the writer flush what is queued and finish the
                    // stream.
                    drop(link.frames);
                    tokio::spawn(async move {
                        tokio::time::sleep(CLOSE_GRACE).await;
                        link.connection.close(net::CLOSE_NORMAL.into(), reason);
                    });
                }
            }
            Action::JoinDone { waiters, outcome } => {
                for waiter in waiters {
                    if let Some(reply) = self.waiters.remove(&waiter) {
                        let _ = reply.send(outcome.clone());
                    }
                }
            }
            Action::Found { waiters, members } => {
                for waiter in waiters {
                    if let Some(reply) = self.finders.remove(&waiter) {
                        let _ = reply.send(members.clone());
                    }
                }
            }
            Action::Located { waiters, addrs } => {
                for waiter in waiters {
                    if let Some(reply) = self.locators.remove(&waiter) {
                        let _ = reply.send(addrs.clone());
                    }
                }
            }
            Action::PeerSample(sample) => {
                *self
                    .shared
                    .peer_sample
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner) = sample;
            }
        }
    }

    fn send(&mut self, conn_id: u64, frame: Outgoing) {
        let Some(link) = self.links.get(&conn_id) else {
            return; // closed meanwhile: the node hears of it
        };
        if link.queued.load(Ordering::Acquire) > PEER_HARD_CAP {
            // It stopped reading: cut it loose rather than buffer without bound.
            let link = self.links.remove(&conn_id).expect("just looked up");
            link.connection
                .close(net::CLOSE_TOO_SLOW.into(), b"too slow");
            self.feedback.push(Input::LinkFailed {
                peer: link.peer,
                conn_id,
            });
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
    }

    fn dial(&self, addr: SocketAddr, expected: Option<AgentId>, bootstrap: bool, limit: Duration) {
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
                Err(error) => {
                    log::debug!("x0x: dial to {addr} failed: {error}");
                    NetEvent::Node(Input::DialFailed {
                        addr,
                        peer: expected,
                        bootstrap,
                        error,
                    })
                }
            };
            let _ = net_tx.send(event).await;
        });
    }

    /// Starts reading and writing a connection the node keeps.
    fn adopt(&mut self, conn_id: u64) {
        let Some(Fresh {
            peer,
            incarnation,
            machine,
            connection,
            send,
            recv,
        }) = self.fresh.remove(&conn_id)
        else {
            return;
        };
        tokio::spawn(read_loop(
            peer,
            machine,
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
        self.links.insert(
            conn_id,
            DriverLink {
                incarnation,
                frames,
                queued,
                connection,
                peer,
            },
        );
    }

    /// This agent's current card and when it was signed (`None`, logged, if it cannot sign).
    fn current_card(&self) -> Option<(Bytes, u64)> {
        self.shared
            .presence
            .card()
            .map_err(|e| log::error!("x0x: cannot sign this agent's card: {e}"))
            .ok()
    }

    /// Shows `card` (signed at `signed`) on `conn_id` unless that peer run has seen it.
    fn show_card(&mut self, conn_id: u64, (card, signed): &(Bytes, u64)) {
        let Some(link) = self.links.get(&conn_id) else {
            return;
        };
        let peer = (link.peer, link.incarnation);
        if self
            .cards_shown
            .get(&peer)
            .is_some_and(|(_, shown)| shown == signed)
        {
            return;
        }
        self.cards_shown.insert(peer, (Instant::now(), *signed));
        self.send(conn_id, Outgoing::Card(card.clone()));
    }

    /// Shows the current card on every link whose peer has not seen it (it was renewed or
    /// changed), and forgets peers not shown a card for a card's lifetime.
    fn show_card_to_all(&mut self) {
        if let Some(card) = self.current_card() {
            let links: Vec<u64> = self.links.keys().copied().collect();
            for conn_id in links {
                self.show_card(conn_id, &card);
            }
        }
        let now = Instant::now();
        self.cards_shown
            .retain(|_, (at, _)| now.duration_since(*at) < crate::presence::CARD_TTL);
    }

    /// Tells every link's peer that this agent is leaving (a card that expires at once).
    fn farewell(&mut self) {
        let Ok(card) = self.shared.presence.farewell() else {
            return;
        };
        self.cards_shown.clear();
        let links: Vec<u64> = self.links.keys().copied().collect();
        for conn_id in links {
            self.send(conn_id, Outgoing::Card(card.clone()));
        }
    }

    async fn shutdown(&mut self) {
        self.farewell();
        self.node.handle(Input::Leave, Instant::now());
        self.carry_out();
        tokio::time::sleep(CLOSE_GRACE).await;
        self.endpoint.close(net::CLOSE_NORMAL.into(), b"closed");
        self.shared.context.registry.close_all();
        self.shared.context.events.close_all();
    }
}

async fn read_loop(
    peer: AgentId,
    machine: MachineId,
    conn_id: u64,
    recv: RecvStream,
    connection: Connection,
    net_tx: mpsc::Sender<NetEvent>,
    shared: Arc<Shared>,
) {
    let strikes = Arc::new(AtomicU32::new(0));
    let lanes = tokio::spawn(accept_lanes(
        peer,
        machine,
        connection.clone(),
        net_tx.clone(),
        Arc::clone(&shared),
        Arc::clone(&strikes),
    ));
    let finished = read_frames(
        peer,
        machine,
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
            shared.context.identity_conflict(format_args!(
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
        .send(NetEvent::Node(Input::Closed {
            peer,
            conn_id,
            by_peer,
        }))
        .await;
}

/// Reads the peer's data lanes (see `streams::lane_of`) as they are opened.
async fn accept_lanes(
    peer: AgentId,
    machine: MachineId,
    connection: Connection,
    net_tx: mpsc::Sender<NetEvent>,
    shared: Arc<Shared>,
    strikes: Arc<AtomicU32>,
) {
    while let Ok(recv) = connection.accept_uni().await {
        tokio::spawn(read_frames(
            peer,
            machine,
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
    machine: MachineId,
    mut recv: RecvStream,
    connection: Connection,
    net_tx: mpsc::Sender<NetEvent>,
    shared: Arc<Shared>,
    strikes: Arc<AtomicU32>,
) -> bool {
    let counters = &shared.context.counters;
    let mut reader = StreamReader::default();
    loop {
        let frame = match net::read_frame_checked(&mut recv).await {
            Ok(Some(frame)) => frame,
            Ok(None) => return true,
            Err(ReadError::Io(_)) => return false,
            Err(ReadError::Oversized(_)) => {
                // The stream cannot be resynchronised after a bad length: drop the connection.
                counters.add(&counters.dropped_oversized, 1);
                connection.close(net::CLOSE_FRAME_TOO_LARGE.into(), b"frame too large");
                return false;
            }
        };
        counters.add(&counters.bytes_in, frame.len() as u64 + 4);
        // Decode and verify here, off the driver: the node only ever sees valid messages.
        let received = match reader.read(&frame, &shared.keys) {
            Ok(Some(Incoming::Gossip(received))) => received,
            Ok(Some(Incoming::Card(card))) => {
                shared.presence.accept(peer, machine, &card);
                continue;
            }
            Ok(Some(Incoming::Origin(origin))) => {
                // The sender is this connection's peer: the frame names nobody else.
                let input = Input::Origin { peer, origin };
                if net_tx.send(NetEvent::Node(input)).await.is_err() {
                    return false;
                }
                continue;
            }
            Ok(Some(Incoming::Directory(message))) => {
                let input = Input::Directory { peer, message };
                if net_tx.send(NetEvent::Node(input)).await.is_err() {
                    return false;
                }
                continue;
            }
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
                    connection.close(
                        net::CLOSE_INVALID_MESSAGES.into(),
                        b"too many invalid messages",
                    );
                    return false;
                }
                continue;
            }
        };
        // Only an IHave's hold reads the link's round-trip time (and reading it takes a lock).
        let rtt = if received.payload.is_none() && received.ihave_round.is_some() {
            connection.rtt()
        } else {
            Duration::ZERO
        };
        if net_tx
            .send(NetEvent::Node(Input::Frame {
                peer,
                received,
                rtt,
            }))
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
    mut frames: mpsc::UnboundedReceiver<Outgoing>,
    queued: Arc<AtomicUsize>,
    shared: Arc<Shared>,
) {
    let mut streams: Vec<Option<SendStream>> = (0..=LANES).map(|_| None).collect();
    streams[0] = Some(control);
    let mut bufs: Vec<BytesMut> = (0..=LANES).map(|_| BytesMut::new()).collect();
    let mut writer = ConnectionWriter::default();
    let mut batch = Vec::with_capacity(256);
    while frames.recv_many(&mut batch, 256).await > 0 {
        let payload: usize = batch.iter().map(Outgoing::len).sum();
        for frame in batch.drain(..) {
            match frame {
                // Not sent only if the publisher's key left the store (unused for a minute,
                // or over 4,096 publishers): the peer can still graft the payload from another.
                Outgoing::Gossip(frame) => {
                    writer.put(&mut bufs, &frame, &shared.keys);
                }
                Outgoing::Directory(body) => writer.put_directory(&mut bufs, &body),
                Outgoing::Card(card) => writer.put_card(&mut bufs, &card),
                Outgoing::Origin(body) => writer.put_origin(&mut bufs, &body, &shared.keys),
            }
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
            let counters = &shared.context.counters;
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
            connection.close(net::CLOSE_STREAM_FAILED.into(), b"stream failed");
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
