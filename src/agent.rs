//! The public façade: [`AgentBuilder`] and [`Agent`].

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};

use crate::error::{Error, ErrorKind, Result};
use crate::identity::{self, AgentId, Keypair, MachineId, PublicKey};

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
        Ok(Agent {
            machine_key,
            agent_key,
            bind: self.bind,
            bootstrap: self.bootstrap.clone(),
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

/// An agent: a machine identity, an agent identity, and (from the network issue on) a place in
/// the gossip network.
#[derive(Debug)]
pub struct Agent {
    machine_key: Keypair,
    agent_key: Keypair,
    bind: Option<SocketAddr>,
    bootstrap: Vec<String>,
    closed: AtomicBool,
}

impl Agent {
    /// A new [`AgentBuilder`].
    pub fn builder() -> AgentBuilder {
        AgentBuilder::new()
    }

    /// The id of this agent's machine key.
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

    /// The configured bind address, if any.
    pub fn bind_addr(&self) -> Option<SocketAddr> {
        self.bind
    }

    /// The configured bootstrap peers.
    pub fn bootstrap_peers(&self) -> &[String] {
        &self.bootstrap
    }

    /// Whether [`Agent::close`] was called.
    pub fn is_closed(&self) -> bool {
        self.closed.load(Ordering::Acquire)
    }

    /// Closes the agent. Idempotent.
    pub async fn close(&self) -> Result<()> {
        self.closed.store(true, Ordering::Release);
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
