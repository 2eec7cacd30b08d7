//! The public façade: [`AgentBuilder`] and [`Agent`].

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;

use crate::error::{Error, ErrorKind, Result};
use crate::events::{EventStream, DEFAULT_EVENT_CAPACITY};
use crate::gossip::Network;
use crate::identity::{self, AgentId, Keypair, MachineId, PublicKey};
use crate::pubsub::{Publisher, Registry, Subscription, DEFAULT_SUBSCRIPTION_CAPACITY};
use crate::stats::{Counters, Stats};
use crate::tasklists::{ListId, TaskList, TaskLists};

/// The bind address when none is given: any interface, any free port.
pub const DEFAULT_BIND: &str = "0.0.0.0:0";
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

/// Configures and builds an [`Agent`]. Setters take `&mut self` and return it so calls chain, as
/// with `std::process::Command`; [`AgentBuilder::build`] can be called more than once.
#[derive(Clone, Debug, Default)]
pub struct AgentBuilder {
    machine_key: MachineKeySource,
    agent_key: Option<Keypair>,
    bind: Option<SocketAddr>,
    bootstrap: Vec<String>,
    data_dir: Option<PathBuf>,
}

impl AgentBuilder {
    /// A builder with the defaults: machine key at `~/.x0x/machine.key`, a fresh agent key.
    pub fn new() -> Self {
        Self::default()
    }

    /// Use (or create) the machine key file at `path` instead of `~/.x0x/machine.key`.
    pub fn with_machine_key(&mut self, path: impl Into<PathBuf>) -> &mut Self {
        self.machine_key = MachineKeySource::Path(path.into());
        self
    }

    /// Use a fresh machine key that is never written to disk.
    pub fn with_ephemeral_machine_key(&mut self) -> &mut Self {
        self.machine_key = MachineKeySource::Ephemeral;
        self
    }

    /// Use this agent key pair instead of generating a fresh one.
    pub fn with_agent_key(&mut self, keypair: Keypair) -> &mut Self {
        self.agent_key = Some(keypair);
        self
    }

    /// The local UDP address to bind (default `127.0.0.1:0` once networking starts).
    pub fn with_bind(&mut self, addr: SocketAddr) -> &mut Self {
        self.bind = Some(addr);
        self
    }

    /// Keep task lists in `dir` (created if missing) and reload them on the next build.
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

    /// Where the machine key comes from.
    pub fn machine_key_source(&self) -> &MachineKeySource {
        &self.machine_key
    }

    /// Loads or creates the keys and returns the agent.
    pub async fn build(&self) -> Result<Agent> {
        let machine_key = match self.machine_key.clone() {
            MachineKeySource::Ephemeral => Keypair::generate()?,
            MachineKeySource::DefaultPath => {
                load_key_file_blocking(identity::default_machine_key_path()?).await?
            }
            MachineKeySource::Path(path) => load_key_file_blocking(path).await?,
        };
        let agent_key = match &self.agent_key {
            Some(keypair) => keypair.clone(),
            None => Keypair::generate()?,
        };
        let bind = self
            .bind
            .unwrap_or_else(|| DEFAULT_BIND.parse().expect("a valid socket address"));
        let machine_key = Arc::new(machine_key);
        let registry = Arc::new(Registry::default());
        let counters = Arc::new(Counters::default());
        let network = Network::start(
            Arc::clone(&machine_key),
            agent_key.public_key().clone(),
            bind,
            Arc::clone(&registry),
            Arc::clone(&counters),
        )?;
        let publisher = Publisher::start(
            agent_key.clone(),
            Arc::clone(&registry),
            counters,
            network.broadcaster(),
        )?;
        let (tasklists, warnings) = TaskLists::start(
            agent_key.public_key().agent_id(),
            publisher.clone(),
            Arc::clone(network.shared()),
            Arc::clone(&registry),
            network.shared().events.subscribe(DEFAULT_EVENT_CAPACITY),
            self.data_dir.as_deref(),
        )?;
        Ok(Agent {
            machine_key,
            agent_key,
            bootstrap: self.bootstrap.clone(),
            network,
            publisher,
            registry,
            tasklists,
            warnings: Mutex::new(warnings),
            closed: AtomicBool::new(false),
        })
    }
}

async fn load_key_file_blocking(path: PathBuf) -> Result<Keypair> {
    // File I/O and fsync must not stall a runtime worker.
    tokio::task::spawn_blocking(move || identity::load_or_create_key_file(&path))
        .await
        .map_err(|e| Error::new(ErrorKind::Io, format!("key file task failed: {e}")))?
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
    machine_key: Arc<Keypair>,
    agent_key: Keypair,
    bootstrap: Vec<String>,
    network: Network,
    publisher: Publisher,
    registry: Arc<Registry>,
    tasklists: Arc<TaskLists>,
    warnings: Mutex<Vec<String>>,
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

    /// The id of this agent's machine key; also its peer id in the network.
    pub fn machine_id(&self) -> MachineId {
        self.machine_key.public_key().machine_id()
    }

    /// The id of this agent's agent key.
    pub fn agent_id(&self) -> AgentId {
        self.agent_key.public_key().agent_id()
    }

    /// The agent's public key.
    pub fn public_key(&self) -> &PublicKey {
        self.agent_key.public_key()
    }

    /// The agent key pair, serialized (secret: see `identity` for the format).
    pub fn agent_keypair_bytes(&self) -> Vec<u8> {
        self.agent_key.to_bytes()
    }

    /// The UDP address the agent is bound to (give it to others as their bootstrap address).
    pub fn local_addr(&self) -> SocketAddr {
        self.network.local_addr()
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

    /// Joins the network through the bootstrap peers: done when one neighbour is up, or at once
    /// without bootstrap peers (this agent starts a network). Fails with a timeout error when no
    /// bootstrap peer answers within `timeout`.
    pub async fn join_network(&self, timeout: Duration) -> Result<()> {
        self.check_open()?;
        let mut addrs = Vec::new();
        let mut unresolved = Vec::new();
        for peer in &self.bootstrap {
            match tokio::net::lookup_host(peer.as_str()).await {
                Ok(found) => addrs.extend(found),
                Err(e) => unresolved.push(format!("{peer}: {e}")),
            }
        }
        if addrs.is_empty() && !unresolved.is_empty() {
            return Err(Error::new(
                ErrorKind::Io,
                format!("could not join the network: {}", unresolved.join("; ")),
            ));
        }
        match tokio::time::timeout(timeout, self.network.join(addrs)).await {
            Ok(result) => result,
            // A neighbour may have come up just as time ran out: then the join stands.
            Err(_) if !self.network.abort_join().await => Ok(()),
            Err(_) => Err(Error::new(
                ErrorKind::Timeout,
                format!(
                    "could not join the network within {:.1} s: no neighbour through bootstrap peers {}",
                    timeout.as_secs_f64(),
                    self.bootstrap.join(", ")
                ),
            )),
        }
    }

    /// Leaves the network gracefully (neighbours are told). Publishing then fails until the next
    /// `join_network`.
    pub async fn leave_network(&self) -> Result<()> {
        self.check_open()?;
        self.network.leave().await
    }

    /// Whether the agent has at least one gossip neighbour.
    pub fn is_connected(&self) -> bool {
        self.network.shared().neighbours() > 0
    }

    /// Publishes `payload` on `topic`, signed by this agent. It reaches every subscriber in the
    /// network, this agent's own included. Resolves once queued for signing.
    pub async fn publish(&self, topic: &str, payload: Bytes) -> Result<()> {
        self.check_open()?;
        if !self.network.shared().is_joined() {
            return Err(Error::new(
                ErrorKind::NotConnected,
                "not connected to the network: call join_network() first",
            ));
        }
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

    /// A new stream of this agent's events.
    pub fn events(&self) -> Result<EventStream> {
        self.check_open()?;
        Ok(self
            .network
            .shared()
            .events
            .subscribe(DEFAULT_EVENT_CAPACITY))
    }

    /// A snapshot of the agent's traffic counters.
    pub fn stats(&self) -> Stats {
        let shared = self.network.shared();
        shared
            .counters
            .snapshot(shared.neighbours(), shared.connections())
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
            self.network.shutdown().await;
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
        let a = Agent::builder()
            .with_ephemeral_machine_key()
            .build()
            .await
            .unwrap();
        let key = Keypair::from_bytes(&a.agent_keypair_bytes()).unwrap();
        let b = Agent::builder()
            .with_ephemeral_machine_key()
            .with_agent_key(key)
            .build()
            .await
            .unwrap();
        assert_eq!(a.agent_id(), b.agent_id());
        assert_ne!(a.machine_id(), b.machine_id());
    }
}
