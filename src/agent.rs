//! The public façade: [`AgentBuilder`] and [`Agent`].

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;

use crate::direct::Inbox;
use crate::error::{Error, ErrorKind, Result};
use crate::events::{EventStream, DEFAULT_EVENT_CAPACITY};
use crate::gossip::{JoinFailure, Network};
use crate::identity::{self, AgentId, Keypair, MachineId, PublicKey};
use crate::instance::InstanceLock;
use crate::presence::{self, AgentInfo};
use crate::pubsub::{Publisher, Registry, Subscription, DEFAULT_SUBSCRIPTION_CAPACITY};
use crate::stats::{Counters, Stats, TopicStats};
use crate::tasklists::{ListId, TaskList, TaskLists};
use crate::wire::{Answer, Credentials, Letter};

/// The bind address when none is given: any interface, any free port.
pub const DEFAULT_BIND: &str = "0.0.0.0:0";
/// How long `send` waits for the recipient's acknowledgement, and `request` for its reply, by
/// default.
pub const DEFAULT_DIRECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Unread messages an inbox keeps by default (the oldest is dropped beyond it).
pub const DEFAULT_INBOX_CAPACITY: usize = 1024;
/// How long `join_network` waits for a first neighbour by default.
pub const DEFAULT_JOIN_TIMEOUT: Duration = Duration::from_secs(10);

/// Where the machine key comes from.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum MachineKeySource {
    /// `$HOME/.x0x/machine.key`, created on first use.
    #[default]
    DefaultPath,
    /// A key file at this path, created on first use.
    Path(PathBuf),
    /// A fresh key that lives only as long as the agent.
    Ephemeral,
}

/// Where the agent key comes from (the data dir's `agent.key` when neither is set and a data
/// dir is given; a fresh key otherwise).
#[derive(Clone, Debug, Default)]
enum AgentKeySource {
    #[default]
    Unset,
    File(PathBuf),
    Given(Keypair),
}

/// The agent key file inside a data dir.
pub const AGENT_KEY_FILE: &str = "agent.key";
/// The lock file inside a data dir, held while an agent uses the directory.
pub const DATA_DIR_LOCK_FILE: &str = "agent.lock";

/// Configures and builds an [`Agent`]. Setters take `&mut self` and return it so calls chain, as
/// with `std::process::Command`; [`AgentBuilder::build`] can be called more than once.
///
/// The agent key (the agent's identity, [`Agent::agent_id`]) is kept in the data dir when one is
/// given, or in a key file of the user's; without either it is ephemeral: a new agent id on
/// every build.
#[derive(Clone, Debug, Default)]
pub struct AgentBuilder {
    machine_key: MachineKeySource,
    agent_key: AgentKeySource,
    bind: Option<SocketAddr>,
    bootstrap: Vec<String>,
    data_dir: Option<PathBuf>,
    capabilities: Vec<String>,
    info: BTreeMap<String, String>,
}

impl AgentBuilder {
    /// A builder with the defaults: machine key at `~/.x0x/machine.key`, an ephemeral agent key.
    pub fn new() -> Self {
        Self::default()
    }

    /// Use (or create) the machine key file at `path` instead of `~/.x0x/machine.key`.
    pub fn with_machine_key(&mut self, path: impl Into<PathBuf>) -> &mut Self {
        self.machine_key = MachineKeySource::Path(path.into());
        self
    }

    /// Use a fresh machine key that is never written to disk (for agents that must leave no
    /// file behind; several agents on one machine share the machine key without it).
    pub fn with_ephemeral_machine_key(&mut self) -> &mut Self {
        self.machine_key = MachineKeySource::Ephemeral;
        self
    }

    /// Use this agent key pair (it wins over a key file and the data dir's key).
    pub fn with_agent_key(&mut self, keypair: Keypair) -> &mut Self {
        self.agent_key = AgentKeySource::Given(keypair);
        self
    }

    /// Keep the agent key in the file at `path` (created, mode 0600, on first use; it wins over
    /// the data dir's key). While the agent runs, `<path>.lock` is locked.
    pub fn with_agent_key_file(&mut self, path: impl Into<PathBuf>) -> &mut Self {
        self.agent_key = AgentKeySource::File(path.into());
        self
    }

    /// The local UDP address to bind (default [`DEFAULT_BIND`]).
    pub fn with_bind(&mut self, addr: SocketAddr) -> &mut Self {
        self.bind = Some(addr);
        self
    }

    /// Make `dir` the agent's home (created if missing): its agent key (`agent.key`, unless
    /// another key is given) and its task lists live there, so a restart with the same dir is
    /// the same agent. While the agent runs, `agent.lock` there is locked.
    pub fn with_data_dir(&mut self, dir: impl Into<PathBuf>) -> &mut Self {
        self.data_dir = Some(dir.into());
        self
    }

    /// Adds a bootstrap peer, `host:port`. Fails when the text is not of that form.
    pub fn with_bootstrap(&mut self, addr: &str) -> Result<&mut Self> {
        validate_host_port(addr)?;
        self.bootstrap.push(addr.to_owned());
        Ok(self)
    }

    /// Advertise these capabilities (e.g. `"summarize"`, `"translate:fr"`): other agents find
    /// this one by them ([`Agent::find`]). At most 64, each 1 to 128 bytes without spaces.
    pub fn with_capabilities<S: Into<String>>(
        &mut self,
        capabilities: impl IntoIterator<Item = S>,
    ) -> Result<&mut Self> {
        let capabilities: Vec<String> = capabilities.into_iter().map(Into::into).collect();
        presence::check_card(&capabilities, &self.info)?;
        self.capabilities = capabilities;
        Ok(self)
    }

    /// A small map this agent's card shows ([`AgentInfo::info`]): at most 4 KiB of keys and
    /// values.
    pub fn with_info(&mut self, info: BTreeMap<String, String>) -> Result<&mut Self> {
        presence::check_card(&self.capabilities, &info)?;
        self.info = info;
        Ok(self)
    }

    /// Where the machine key comes from.
    pub fn machine_key_source(&self) -> &MachineKeySource {
        &self.machine_key
    }

    /// Loads or creates the keys and returns the agent. Fails with [`ErrorKind::InUse`] while
    /// another running agent uses the same data dir or agent key file.
    pub async fn build(&self) -> Result<Agent> {
        let config = self.clone();
        // File I/O and fsync must not stall a runtime worker.
        let home = tokio::task::spawn_blocking(move || config.open_home())
            .await
            .map_err(|e| Error::new(ErrorKind::Io, format!("key file task failed: {e}")))??;
        let bind = self
            .bind
            .unwrap_or_else(|| DEFAULT_BIND.parse().expect("a valid socket address"));
        let credentials = Arc::new(Credentials::new(home.agent_key, &home.machine_key)?);
        let registry = Arc::new(Registry::default());
        let counters = Arc::new(Counters::default());
        let network = Network::start(
            Arc::clone(&credentials),
            bind,
            Arc::clone(&registry),
            Arc::clone(&counters),
            self.capabilities.clone(),
            self.info.clone(),
        )?;
        let publisher = Publisher::start(
            credentials.agent_key().clone(),
            Arc::clone(&registry),
            counters,
            network.broadcaster(),
            network.originator(),
        )?;
        let (tasklists, warnings) = TaskLists::start(
            credentials.agent_id(),
            publisher.clone(),
            Arc::clone(network.context()),
            Arc::clone(&registry),
            network.context().events.subscribe(DEFAULT_EVENT_CAPACITY),
            self.data_dir.as_deref(),
        )?;
        Ok(Agent {
            credentials,
            bootstrap: self.bootstrap.clone(),
            network,
            publisher,
            registry,
            tasklists,
            warnings: Mutex::new(warnings),
            locks: Mutex::new(home.locks),
            closed: AtomicBool::new(false),
        })
    }

    /// The keys, with the locks that keep a second agent off the same data dir and key file.
    fn open_home(self) -> Result<Home> {
        let machine_key = match self.machine_key {
            MachineKeySource::Ephemeral => Keypair::generate()?,
            MachineKeySource::DefaultPath => {
                identity::load_or_create_key_file(&identity::default_machine_key_path()?)?
            }
            MachineKeySource::Path(path) => identity::load_or_create_key_file(&path)?,
        };
        let mut locks = Vec::new();
        if let Some(dir) = &self.data_dir {
            crate::private_files::dir_builder()
                .create(dir)
                .map_err(|e| Error::io(format_args!("cannot create {}", dir.display()), &e))?;
            locks.push(InstanceLock::acquire(
                &dir.join(DATA_DIR_LOCK_FILE),
                &format!("the data dir {}", dir.display()),
            )?);
        }
        let key_file = match (&self.agent_key, &self.data_dir) {
            (AgentKeySource::Given(_), _) => None,
            (AgentKeySource::File(path), _) => Some(path.clone()),
            (AgentKeySource::Unset, Some(dir)) => Some(dir.join(AGENT_KEY_FILE)),
            (AgentKeySource::Unset, None) => None,
        };
        let agent_key = match (self.agent_key, &key_file) {
            (AgentKeySource::Given(keypair), _) => keypair,
            (_, Some(path)) => identity::load_or_create_key_file(path)?,
            (_, None) => Keypair::generate()?,
        };
        if let (Some(path), None) = (&key_file, &self.data_dir) {
            // A key file of the user's (one in the data dir is covered by the dir's lock).
            let mut lock = path.clone().into_os_string();
            lock.push(".lock");
            locks.push(InstanceLock::acquire(
                Path::new(&lock),
                &format!("the agent key file {}", path.display()),
            )?);
        }
        Ok(Home {
            machine_key,
            agent_key,
            locks,
        })
    }
}

struct Home {
    machine_key: Keypair,
    agent_key: Keypair,
    locks: Vec<InstanceLock>,
}

/// Pauses between rounds of bootstrap dials in `join_network`.
const JOIN_BACKOFF_MIN: Duration = Duration::from_millis(100);
const JOIN_BACKOFF_MAX: Duration = Duration::from_secs(2);
/// How long the first round's dials may take, doubling each round up to the handshake
/// timeout: a peer that is not up yet (started together by a process manager) costs a second
/// early on, while a slow link gets the full timeout from the fourth round.
const JOIN_DIAL_PATIENCE_MIN: Duration = Duration::from_secs(1);

/// A bootstrap peer as `join_network` tries it.
struct BootstrapPeer {
    name: String,
    addrs: Vec<SocketAddr>,
    attempts: u32,
    last_error: Option<Error>,
}

impl BootstrapPeer {
    /// False once it proved to be this agent (or a clone of it): no later round can change that.
    fn worth_dialing(&self) -> bool {
        !self.last_error.as_ref().is_some_and(|error| {
            matches!(error.kind(), ErrorKind::InvalidArgument | ErrorKind::InUse)
        })
    }
}

/// Each bootstrap peer with what happened to it.
fn describe(peers: &[BootstrapPeer]) -> String {
    peers
        .iter()
        .map(|peer| {
            let tries = match peer.attempts {
                1 => "1 attempt".to_owned(),
                n => format!("{n} attempts"),
            };
            match &peer.last_error {
                Some(error) => format!("{} ({tries}, last: {error})", peer.name),
                None => format!("{} ({tries}, answered but no neighbourship yet)", peer.name),
            }
        })
        .collect::<Vec<_>>()
        .join("; ")
}

fn join_timeout(timeout: Duration, peers: &[BootstrapPeer]) -> Error {
    Error::new(
        ErrorKind::Timeout,
        format!(
            "could not join the network within {:.1} s: {}",
            timeout.as_secs_f64(),
            describe(peers)
        ),
    )
}

fn validate_host_port(addr: &str) -> Result<()> {
    let bad = |why: &str| {
        Error::invalid_argument(format!(
            "invalid bootstrap address {addr:?}: {why} (expected host:port, e.g. 127.0.0.1:5483)"
        ))
    };
    if addr.parse::<SocketAddr>().is_ok() {
        return Ok(());
    }
    let (host, port) = addr.rsplit_once(':').ok_or_else(|| bad("no port"))?;
    port.parse::<u16>()
        .map_err(|_| bad("the port is not a number from 0 to 65535"))?;
    if host.is_empty() || host.contains(|c: char| c.is_whitespace() || c == ':') {
        return Err(bad("the host is empty or malformed"));
    }
    Ok(())
}

/// An agent: a machine identity, an agent identity, and a place in the gossip network.
pub struct Agent {
    credentials: Arc<Credentials>,
    bootstrap: Vec<String>,
    network: Network,
    publisher: Publisher,
    registry: Arc<Registry>,
    tasklists: Arc<TaskLists>,
    warnings: Mutex<Vec<String>>,
    /// Held until [`Agent::close`] (see `instance`).
    locks: Mutex<Vec<InstanceLock>>,
    closed: AtomicBool,
}

impl std::fmt::Debug for Agent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Agent")
            .field("agent_id", &self.agent_id())
            .field("machine_id", &self.machine_id())
            .field("local_addr", &self.local_addr())
            .finish()
    }
}

impl Agent {
    /// A new [`AgentBuilder`].
    pub fn builder() -> AgentBuilder {
        AgentBuilder::new()
    }

    /// The id of this agent's machine key: shared by every agent on the machine.
    pub fn machine_id(&self) -> MachineId {
        self.credentials.machine_id()
    }

    /// The id of this agent's agent key; also its identity in the network (see
    /// [`Agent::peer_id`]).
    pub fn agent_id(&self) -> AgentId {
        self.credentials.agent_id()
    }

    /// This agent's identity in the network: its agent id, which its hellos prove (peers name
    /// it by this id in their events).
    pub fn peer_id(&self) -> AgentId {
        self.agent_id()
    }

    /// The agent's public key.
    pub fn public_key(&self) -> &PublicKey {
        self.credentials.agent_key().public_key()
    }

    /// The agent key pair, serialized (secret: see `identity` for the format).
    pub fn agent_keypair_bytes(&self) -> Vec<u8> {
        self.credentials.agent_key().to_bytes()
    }

    /// The UDP address the agent is bound to. With the default bind it is `0.0.0.0:PORT`, which
    /// other agents on this machine can dial as it is (an unspecified address is dialed as the
    /// loopback address); see [`Agent::local_addrs`] for addresses to give other machines.
    pub fn local_addr(&self) -> SocketAddr {
        self.network.local_addr()
    }

    /// Addresses others can dial to reach this agent: the bound address, or when bound to a
    /// wildcard (`0.0.0.0`, `[::]`) each address of that family on this host's network
    /// interfaces, with the bound port, loopback first.
    pub fn local_addrs(&self) -> Vec<SocketAddr> {
        crate::net::local_addrs(self.local_addr())
    }

    /// The configured bootstrap peers.
    pub fn bootstrap_peers(&self) -> &[String] {
        &self.bootstrap
    }

    fn check_open(&self) -> Result<()> {
        if self.closed.load(Ordering::Acquire) {
            return Err(Error::new(ErrorKind::Closed, "the agent is closed"));
        }
        Ok(())
    }

    /// Open and joined (or joining): what publishing and talking to other agents need.
    fn check_joined(&self) -> Result<()> {
        self.check_open()?;
        if !self.network.context().is_joined() {
            return Err(Error::new(
                ErrorKind::NotConnected,
                "not connected to the network: call join_network() first",
            ));
        }
        Ok(())
    }

    /// Joins the network through the bootstrap peers: done when one neighbour is up, or at once
    /// without bootstrap peers (this agent starts a network).
    ///
    /// Bootstrap peers that cannot be reached yet (not started, a name that does not resolve
    /// yet) are dialed again, backing off from 100 ms to 2 s, until `timeout`: then it fails
    /// with [`ErrorKind::Timeout`], naming each address and its last error. An address that is
    /// this agent's own is not dialed again; when no other is left it fails at once
    /// ([`ErrorKind::InvalidArgument`]), as it does when another process runs with this agent's
    /// key ([`ErrorKind::InUse`]).
    pub async fn join_network(&self, timeout: Duration) -> Result<()> {
        self.check_open()?;
        let deadline = tokio::time::Instant::now() + timeout;
        let mut peers: Vec<BootstrapPeer> = self
            .bootstrap
            .iter()
            .map(|name| BootstrapPeer {
                name: name.clone(),
                addrs: Vec::new(),
                attempts: 0,
                last_error: None,
            })
            .collect();
        let mut backoff = JOIN_BACKOFF_MIN;
        let mut patience = JOIN_DIAL_PATIENCE_MIN;
        loop {
            let mut addrs = Vec::new();
            for peer in peers.iter_mut().filter(|peer| peer.worth_dialing()) {
                peer.attempts += 1;
                match tokio::net::lookup_host(peer.name.as_str()).await {
                    Ok(found) => {
                        peer.addrs = found.collect();
                        addrs.extend(&peer.addrs);
                    }
                    Err(e) => {
                        peer.last_error = Some(Error::new(
                            ErrorKind::Io,
                            format!("cannot resolve {}: {e}", peer.name),
                        ))
                    }
                }
            }
            let round = async {
                if addrs.is_empty() && !self.bootstrap.is_empty() {
                    // Nothing resolved this round: nobody to dial yet.
                    return Err(JoinFailure::Unreachable(Vec::new()));
                }
                self.network.join(addrs, patience).await
            };
            let failures = match tokio::time::timeout_at(deadline, round).await {
                Ok(Ok(())) => return Ok(()),
                Ok(Err(JoinFailure::Ended(error))) => return Err(error),
                Ok(Err(JoinFailure::Unreachable(failures))) => failures,
                // A neighbour may have come up just as time ran out: then the join stands.
                Err(_) if !self.network.abort_join().await => return Ok(()),
                Err(_) => return Err(join_timeout(timeout, &peers)),
            };
            for (addr, error) in failures {
                if let Some(peer) = peers.iter_mut().find(|peer| peer.addrs.contains(&addr)) {
                    peer.last_error = Some(error);
                }
            }
            if !peers.iter().any(BootstrapPeer::worth_dialing) {
                // Every address is ours or a clone of ours: waiting cannot help.
                let fatal = peers.iter().filter_map(|peer| peer.last_error.as_ref());
                let kind = fatal
                    .clone()
                    .map(Error::kind)
                    .find(|kind| *kind == ErrorKind::InUse)
                    .unwrap_or(ErrorKind::InvalidArgument);
                return Err(Error::new(
                    kind,
                    format!("could not join the network: {}", describe(&peers)),
                ));
            }
            let pause =
                backoff.min(deadline.saturating_duration_since(tokio::time::Instant::now()));
            tokio::time::sleep(pause).await;
            if tokio::time::Instant::now() >= deadline {
                return Err(join_timeout(timeout, &peers));
            }
            backoff = (backoff * 2).min(JOIN_BACKOFF_MAX);
            patience = (patience * 2).min(crate::net::HANDSHAKE_TIMEOUT);
        }
    }

    /// Leaves the network gracefully (neighbours and direct peers are told). Publishing and
    /// direct messages then fail until the next `join_network`.
    pub async fn leave_network(&self) -> Result<()> {
        self.check_open()?;
        self.say_farewell();
        self.network.leave().await
    }

    /// Shows direct peers a card that expires at once (overlay peers get it from the driver).
    fn say_farewell(&self) {
        if let Ok(card) = self.network.presence().farewell() {
            self.network.direct().show_cards(&card);
        }
    }

    /// The agents this agent holds a valid card of: those it has been connected to (overlay
    /// neighbours, directory peers, direct peers) and those [`Agent::find`] found, at most
    /// [`presence::MAX_PEERS`]. A snapshot, by agent id.
    pub fn peers(&self) -> Vec<AgentInfo> {
        self.network.presence().peers()
    }

    /// The capabilities this agent advertises.
    pub fn capabilities(&self) -> Vec<String> {
        self.network.presence().capabilities()
    }

    /// Advertises `capabilities` instead of the current ones, and `info` if given: the
    /// directory records follow, and peers are shown the new card.
    pub fn advertise(
        &self,
        capabilities: Vec<String>,
        info: Option<BTreeMap<String, String>>,
    ) -> Result<()> {
        self.check_open()?;
        let presence = self.network.presence();
        let info = match info {
            Some(info) => info,
            None => presence.info(),
        };
        presence::check_card(&capabilities, &info)?;
        presence.advertise(capabilities.clone(), info);
        self.network.advertise(&capabilities)?;
        let (card, _) = presence.card()?;
        self.network.direct().show_cards(&card);
        Ok(())
    }

    /// Agents that advertise `capability`, with their verified cards: those known already, and
    /// when that is fewer than `limit` (or no limit is given), those a directory lookup finds,
    /// each card fetched over a direct connection. Returns what it has when `timeout` passes
    /// (possibly nothing); never this agent itself.
    pub async fn find(
        &self,
        capability: &str,
        timeout: Duration,
        limit: Option<usize>,
    ) -> Result<Vec<AgentInfo>> {
        self.check_joined()?;
        presence::check_capability(capability)?;
        let limit = limit.unwrap_or(usize::MAX);
        let deadline = tokio::time::Instant::now() + timeout;
        let presence = Arc::clone(self.network.presence());
        let offers = |info: &AgentInfo| info.capabilities.iter().any(|c| c == capability);
        let mut found: Vec<AgentInfo> = presence.peers().into_iter().filter(offers).collect();
        if found.len() >= limit {
            found.truncate(limit);
            return Ok(found);
        }
        let members = tokio::time::timeout_at(deadline, self.network.find(capability))
            .await
            .unwrap_or_default();
        let me = self.agent_id();
        let mut fetches = tokio::task::JoinSet::new();
        for (agent, addr) in members {
            if agent == me || found.iter().any(|info| info.agent_id == agent) {
                continue;
            }
            let direct = Arc::clone(self.network.direct());
            let presence = Arc::clone(&presence);
            fetches.spawn(async move {
                let mut addrs = vec![addr];
                addrs.extend(presence.addresses(&agent));
                direct.connect(agent, addrs).await.ok()?;
                loop {
                    let arrived = presence.arrivals().notified();
                    tokio::pin!(arrived);
                    arrived.as_mut().enable();
                    if let Some(info) = presence.get(&agent) {
                        return Some(info);
                    }
                    arrived.await;
                }
            });
        }
        while found.len() < limit {
            match tokio::time::timeout_at(deadline, fetches.join_next()).await {
                Ok(Some(Ok(Some(info)))) if offers(&info) => found.push(info),
                Ok(Some(_)) => {}
                Ok(None) | Err(_) => break,
            }
        }
        Ok(found)
    }

    /// Whether the agent has at least one gossip neighbour.
    pub fn is_connected(&self) -> bool {
        self.network.context().neighbours() > 0
    }

    /// Publishes `payload` on `topic`, signed by this agent. It reaches every subscriber in the
    /// network, this agent's own included. Resolves once queued for signing.
    pub async fn publish(&self, topic: &str, payload: Bytes) -> Result<()> {
        self.check_joined()?;
        self.publisher.publish(topic, payload).await
    }

    /// Subscribes to `topic` with the default queue capacity.
    pub fn subscribe(&self, topic: &str) -> Result<Subscription> {
        self.subscribe_with_capacity(topic, DEFAULT_SUBSCRIPTION_CAPACITY)
    }

    /// Subscribes to `topic`; the subscription keeps at most `capacity` unread messages and drops
    /// the oldest beyond that (counted in `dropped()`).
    pub fn subscribe_with_capacity(&self, topic: &str, capacity: usize) -> Result<Subscription> {
        self.check_open()?;
        self.registry.subscribe(topic, capacity)
    }

    /// Sends `payload` to agent `to` over a direct connection (opened on demand, end-to-end
    /// encrypted, no relay). Resolves once the recipient's inbox holds it.
    ///
    /// Fails with [`ErrorKind::NotFound`] when no agent `to` can be found or reached,
    /// [`ErrorKind::Remote`] when it refused the message (it has no inbox open),
    /// [`ErrorKind::Timeout`] when no acknowledgement came within `timeout` (the message may
    /// still arrive), [`ErrorKind::NotConnected`] before `join_network` or after a leave.
    pub async fn send(&self, to: AgentId, payload: Bytes, timeout: Duration) -> Result<()> {
        match self.post(to, payload, 0, timeout).await? {
            Answer::Delivered => Ok(()),
            Answer::Reply(_) => Err(Error::new(
                ErrorKind::Protocol,
                format!("agent {to:?} answered a message as if it were a request"),
            )),
            Answer::Refused(why) => Err(Error::new(ErrorKind::Remote, why)),
        }
    }

    /// Sends `payload` to agent `to` as a request and returns its reply.
    ///
    /// Fails as [`Agent::send`] does, and with [`ErrorKind::Remote`] carrying the other agent's
    /// reason when its handler failed or it dropped the request unanswered. On
    /// [`ErrorKind::Timeout`] the request may still have been processed. Dropping the future
    /// cancels the request (the recipient's reply is discarded).
    pub async fn request(&self, to: AgentId, payload: Bytes, timeout: Duration) -> Result<Bytes> {
        let id = self.network.direct().request_id();
        match self.post(to, payload, id, timeout).await? {
            Answer::Reply(reply) => Ok(reply),
            Answer::Delivered => Err(Error::new(
                ErrorKind::Protocol,
                format!("agent {to:?} acknowledged a request without a reply"),
            )),
            Answer::Refused(why) => Err(Error::new(ErrorKind::Remote, why)),
        }
    }

    async fn post(
        &self,
        to: AgentId,
        payload: Bytes,
        request_id: u64,
        timeout: Duration,
    ) -> Result<Answer> {
        self.check_joined()?;
        if to == self.agent_id() {
            return Err(Error::invalid_argument(
                "that is this agent's own id: an agent does not send to itself",
            ));
        }
        if payload.len() > crate::wire::MAX_PAYLOAD_LEN {
            return Err(Error::invalid_argument(format!(
                "a direct message is at most {} bytes, not {}",
                crate::wire::MAX_PAYLOAD_LEN,
                payload.len()
            )));
        }
        let letter = Letter {
            request_id,
            timestamp_ms: crate::pubsub::now_ms(),
            payload,
        };
        let post = self
            .network
            .direct()
            .post(to, letter, self.network.locate(to));
        tokio::time::timeout(timeout, post).await.map_err(|_| {
            Error::new(
                ErrorKind::Timeout,
                format!(
                    "agent {to:?} did not answer within {:.1} s{}",
                    timeout.as_secs_f64(),
                    if request_id == 0 {
                        ""
                    } else {
                        " (the request may still have been processed)"
                    }
                ),
            )
        })?
    }

    /// Opens this agent's inbox: the direct messages and requests other agents send it
    /// arrive there. It keeps at most `capacity` unread messages and drops the oldest beyond
    /// that (a dropped request is refused). One inbox at a time ([`ErrorKind::InUse`] while
    /// one is open); without one, senders get [`ErrorKind::Remote`].
    pub fn inbox(&self, capacity: usize) -> Result<Inbox> {
        self.check_open()?;
        self.network.direct().open_inbox(capacity)
    }

    /// A new stream of this agent's events.
    pub fn events(&self) -> Result<EventStream> {
        self.check_open()?;
        Ok(self
            .network
            .context()
            .events
            .subscribe(DEFAULT_EVENT_CAPACITY))
    }

    /// What the agent's parts share (for `testing`).
    #[cfg(any(feature = "testing", fuzzing))]
    pub(crate) fn context(&self) -> &crate::context::AgentContext {
        self.network.context()
    }

    /// This agent's card and the cards it holds (for `testing`).
    #[cfg(any(feature = "testing", fuzzing))]
    pub(crate) fn presence(&self) -> &crate::presence::Presence {
        self.network.presence()
    }

    /// A snapshot of the agent's traffic counters.
    pub fn stats(&self) -> Stats {
        let context = self.network.context();
        let connections = self.network.shared().connections() + self.network.direct().connections();
        context.counters.snapshot(context.neighbours(), connections)
    }

    /// The traffic of `topic` at this agent: envelope copies in and out, and their bytes.
    /// `NotFound` if the agent has neither subscribed to nor published on it in this run (what
    /// arrives on such topics is counted in [`Stats::foreign_bytes_in`]).
    pub fn topic_stats(&self, topic: &str) -> Result<TopicStats> {
        self.registry.traffic().get(topic).ok_or_else(|| {
            Error::new(
                ErrorKind::NotFound,
                format!("this agent has not subscribed to or published on topic {topic:?}"),
            )
        })
    }

    /// Creates a task list shared with every agent that joins it by id.
    pub fn create_task_list(&self, name: &str) -> Result<Arc<TaskList>> {
        self.check_open()?;
        self.tasklists.create(name)
    }

    /// Joins a task list by id: a replica that fills up from the others (and from then on
    /// converges with them).
    pub fn join_task_list(&self, id: ListId) -> Result<Arc<TaskList>> {
        self.check_open()?;
        self.tasklists.join(id)
    }

    /// This agent's task lists, by id.
    pub fn task_lists(&self) -> Vec<Arc<TaskList>> {
        self.tasklists.all()
    }

    /// Writes every changed task list to the data directory now (they are also written shortly
    /// after each change, and at close). Blocking: call it from a thread that may block.
    pub fn save_task_lists(&self) -> Result<()> {
        self.tasklists.flush()
    }

    /// Problems found while loading (damaged task list files that were set aside); each is
    /// returned once.
    pub fn take_warnings(&self) -> Vec<String> {
        std::mem::take(&mut *self.warnings.lock().unwrap_or_else(|e| e.into_inner()))
    }

    /// Whether [`Agent::close`] was called.
    pub fn is_closed(&self) -> bool {
        self.closed.load(Ordering::Acquire)
    }

    /// Leaves the network and closes the endpoint, subscriptions and event streams. Idempotent.
    pub async fn close(&self) -> Result<()> {
        if !self.closed.swap(true, Ordering::AcqRel) {
            let tasklists = Arc::clone(&self.tasklists);
            let flushed = tokio::task::spawn_blocking(move || tasklists.flush()).await;
            self.say_farewell();
            self.network.shutdown().await;
            // The lists are saved: another agent may take this home now.
            self.locks.lock().unwrap_or_else(|e| e.into_inner()).clear();
            flushed.map_err(|e| {
                Error::new(ErrorKind::Io, format!("saving task lists failed: {e}"))
            })??;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bootstrap_addresses_are_validated() {
        for good in [
            "127.0.0.1:5483",
            "[::1]:1",
            "localhost:80",
            "node.example:65535",
        ] {
            AgentBuilder::new().with_bootstrap(good).unwrap();
        }
        for bad in ["", "127.0.0.1", "host:", ":80", "host:99999", "a b:1"] {
            let err = AgentBuilder::new().with_bootstrap(bad).unwrap_err();
            assert_eq!(err.kind(), ErrorKind::InvalidArgument, "{bad}");
            assert!(err.message().contains("expected host:port"), "{err}");
        }
    }

    #[tokio::test]
    async fn same_key_file_gives_same_machine_id() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("machine.key");
        let a = Agent::builder()
            .with_machine_key(&path)
            .build()
            .await
            .unwrap();
        let b = Agent::builder()
            .with_machine_key(&path)
            .build()
            .await
            .unwrap();
        assert_eq!(a.machine_id(), b.machine_id());
        assert_ne!(
            a.agent_id(),
            b.agent_id(),
            "agent keys are fresh unless given"
        );
    }

    #[tokio::test]
    async fn agent_key_bytes_restore_the_agent_id() {
        let a = Agent::builder().build().await.unwrap();
        let key = Keypair::from_bytes(&a.agent_keypair_bytes()).unwrap();
        let b = Agent::builder().with_agent_key(key).build().await.unwrap();
        assert_eq!(a.agent_id(), b.agent_id());
        assert_eq!(a.machine_id(), b.machine_id(), "one machine");
        let c = Agent::builder().build().await.unwrap();
        assert_ne!(
            c.agent_id(),
            a.agent_id(),
            "agent keys are ephemeral by default"
        );
    }

    #[tokio::test]
    async fn an_ephemeral_machine_key_is_a_machine_of_its_own() {
        let a = Agent::builder().build().await.unwrap();
        let b = Agent::builder()
            .with_ephemeral_machine_key()
            .build()
            .await
            .unwrap();
        assert_ne!(a.machine_id(), b.machine_id());
    }
}
