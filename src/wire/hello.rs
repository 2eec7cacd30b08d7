//! The hello: the first frame each way, binding the agent key, its machine's endorsement and
//! the incarnation to this very QUIC connection.

use std::net::SocketAddr;

use serde::{Deserialize, Serialize};

use super::{encode, protocol};
use crate::error::{Error, ErrorKind, Result};
use crate::identity::{AgentId, Keypair, MachineId, PublicKey, ID_LEN};

const HELLO_DOMAIN: &[u8] = b"x0x-hello-v2";
const ENDORSEMENT_DOMAIN: &[u8] = b"x0x-agent-on-machine-v1";
/// The TLS exporter label that binds a [`Hello`] to its QUIC connection.
pub const EXPORTER_LABEL: &[u8] = b"EXPORTER-x0x-peer-binding-v1";

/// Which end of a connection signed a [`Hello`]; part of the signed bytes so that a hello can't
/// be reflected back to its sender.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    /// The side that opened the connection.
    Dialer = 0,
    /// The side that accepted it.
    Acceptor = 1,
}

/// What an agent proves in every hello: its agent key (its identity in the network: peer id =
/// `AgentId`), that its machine key vouches for that agent key, and its incarnation.
///
/// The endorsement is made once per agent (at build), the hello signature once per connection.
pub struct Credentials {
    agent_key: Keypair,
    machine_key: PublicKey,
    endorsement: Vec<u8>,
    incarnation: u64,
}

impl Credentials {
    /// Credentials for `agent_key` on the machine of `machine_key`, with a fresh incarnation.
    pub fn new(agent_key: Keypair, machine_key: &Keypair) -> Result<Self> {
        let endorsement = machine_key.sign(&endorsed_bytes(agent_key.public_key()))?;
        let mut incarnation = [0u8; 8];
        aws_lc_rs::rand::fill(&mut incarnation)
            .map_err(|_| Error::new(ErrorKind::Crypto, "the system random source failed"))?;
        Ok(Self {
            agent_key,
            machine_key: machine_key.public_key().clone(),
            endorsement,
            incarnation: u64::from_le_bytes(incarnation),
        })
    }

    /// The agent's id: its identity in the network.
    pub fn agent_id(&self) -> AgentId {
        self.agent_key.public_key().agent_id()
    }

    /// The agent key pair.
    pub fn agent_key(&self) -> &Keypair {
        &self.agent_key
    }

    /// The id of the machine key that endorsed the agent key.
    pub fn machine_id(&self) -> MachineId {
        self.machine_key.machine_id()
    }

    /// This agent run's incarnation (see [`Hello::incarnation`]).
    pub fn incarnation(&self) -> u64 {
        self.incarnation
    }
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials")
            .field("agent", &self.agent_id())
            .field("machine", &self.machine_id())
            .finish_non_exhaustive()
    }
}

fn endorsed_bytes(agent_key: &PublicKey) -> Vec<u8> {
    [ENDORSEMENT_DOMAIN, agent_key.as_bytes()].concat()
}

/// The first frame each way (hello version 2): proves the sender holds the agent key for its
/// `AgentId` on this very connection, and that its machine key vouches for that agent key.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Hello {
    /// The sender's agent public key (ML-DSA-65): its identity in the network.
    #[serde(with = "serde_bytes")]
    pub agent_key: Vec<u8>,
    /// The sender's machine public key (ML-DSA-65).
    #[serde(with = "serde_bytes")]
    pub machine_key: Vec<u8>,
    /// The machine key's signature over `"x0x-agent-on-machine-v1" ‖ agent public key`.
    #[serde(with = "serde_bytes")]
    pub endorsement: Vec<u8>,
    /// Where the sender accepts connections.
    pub listen: SocketAddr,
    /// Random per agent run: a connection from a known peer with a new incarnation means the
    /// peer restarted, so its old connection is dead even if it has not timed out yet; the same
    /// agent id with an incarnation it left behind is a second copy of that agent.
    pub incarnation: u64,
    /// The agent key's ML-DSA-65 signature over `"x0x-hello-v2" ‖ role ‖ exporter secret ‖
    /// machine id ‖ postcard(listen) ‖ incarnation`.
    #[serde(with = "serde_bytes")]
    pub signature: Vec<u8>,
    /// Where some other peers the sender knows accept connections (at most [`HELLO_PEERS`]
    /// are used): candidates for when the receiver runs short of neighbours. Hints, like the
    /// addresses the gossip layer passes around: not signed, and checked by dialing them.
    pub peers: Vec<SocketAddr>,
}

/// How many of a hello's [`Hello::peers`] a receiver uses.
pub const HELLO_PEERS: usize = 8;

/// Who a verified hello came from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HelloSender {
    /// The sender's agent key (its id is the peer's identity in the network).
    pub agent_key: PublicKey,
    /// The sender's machine.
    pub machine: MachineId,
}

fn hello_transcript(
    role: Role,
    exporter: &[u8; 32],
    machine: &MachineId,
    listen: &SocketAddr,
    incarnation: u64,
) -> Result<Vec<u8>> {
    let mut out = Vec::with_capacity(HELLO_DOMAIN.len() + 1 + 32 + ID_LEN + 32 + 8);
    out.extend_from_slice(HELLO_DOMAIN);
    out.push(role as u8);
    out.extend_from_slice(exporter);
    out.extend_from_slice(machine.as_bytes());
    out.extend_from_slice(&encode(listen)?);
    out.extend_from_slice(&incarnation.to_le_bytes());
    Ok(out)
}

impl Hello {
    /// A hello from `role` on the connection whose exporter secret is `exporter`.
    pub fn new(
        credentials: &Credentials,
        role: Role,
        exporter: &[u8; 32],
        listen: SocketAddr,
    ) -> Result<Self> {
        let incarnation = credentials.incarnation;
        let transcript = hello_transcript(
            role,
            exporter,
            &credentials.machine_id(),
            &listen,
            incarnation,
        )?;
        Ok(Self {
            agent_key: credentials.agent_key.public_key().as_bytes().to_vec(),
            machine_key: credentials.machine_key.as_bytes().to_vec(),
            endorsement: credentials.endorsement.clone(),
            listen,
            incarnation,
            signature: credentials.agent_key.sign(&transcript)?,
            peers: Vec::new(),
        })
    }

    /// The same hello, with `peers` as its hints (see [`Hello::peers`]).
    pub fn with_peers(mut self, mut peers: Vec<SocketAddr>) -> Self {
        peers.truncate(HELLO_PEERS);
        self.peers = peers;
        self
    }

    /// Checks a hello sent by `role` on the connection whose exporter secret is `exporter`:
    /// the agent key signed this connection, and the machine key endorsed the agent key.
    pub fn verify(&self, role: Role, exporter: &[u8; 32]) -> Result<HelloSender> {
        let agent_key = PublicKey::from_bytes(&self.agent_key)
            .map_err(|e| protocol(format!("hello: agent key: {e}")))?;
        let machine_key = PublicKey::from_bytes(&self.machine_key)
            .map_err(|e| protocol(format!("hello: machine key: {e}")))?;
        let machine = machine_key.machine_id();
        let transcript =
            hello_transcript(role, exporter, &machine, &self.listen, self.incarnation)?;
        if !agent_key.verify(&transcript, &self.signature) {
            return Err(protocol(
                "hello: bad signature (the peer does not hold its agent key)",
            ));
        }
        if !machine_key.verify(&endorsed_bytes(&agent_key), &self.endorsement) {
            return Err(protocol(
                "hello: bad endorsement (the machine key did not vouch for the agent key)",
            ));
        }
        Ok(HelloSender { agent_key, machine })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hello_binds_role_and_connection() {
        let machine = Keypair::generate().unwrap();
        let key = Credentials::new(Keypair::generate().unwrap(), &machine).unwrap();
        let listen: SocketAddr = "127.0.0.1:5000".parse().unwrap();
        let hello = Hello::new(&key, Role::Dialer, &[1; 32], listen).unwrap();
        let sender = hello.verify(Role::Dialer, &[1; 32]).unwrap();
        assert_eq!(sender.agent_key.agent_id(), key.agent_id());
        assert_eq!(sender.machine, machine.public_key().machine_id());
        assert_eq!(hello.incarnation, key.incarnation());
        assert!(hello.verify(Role::Acceptor, &[1; 32]).is_err(), "reflected");
        assert!(
            hello.verify(Role::Dialer, &[2; 32]).is_err(),
            "other connection"
        );
        let peers: Vec<SocketAddr> = (0..10)
            .map(|i| SocketAddr::from(([127, 0, 0, 1], 6000 + i)))
            .collect();
        let hinted = hello.clone().with_peers(peers.clone());
        assert_eq!(hinted.peers, peers[..HELLO_PEERS], "at most HELLO_PEERS");
        let decoded: Hello = postcard::from_bytes(&encode(&hinted).unwrap()).unwrap();
        assert_eq!(decoded.peers, hinted.peers);
        assert!(
            decoded.verify(Role::Dialer, &[1; 32]).is_ok(),
            "hints are not signed"
        );
        let mut moved = hello.clone();
        moved.listen = "127.0.0.1:5001".parse().unwrap();
        assert!(
            moved.verify(Role::Dialer, &[1; 32]).is_err(),
            "tampered address"
        );
        // The machine claim is checked twice: the machine endorsed this agent key, and the
        // agent signed this machine id.
        let other_machine = Keypair::generate().unwrap();
        let mut claimed = hello.clone();
        claimed.machine_key = other_machine.public_key().as_bytes().to_vec();
        let err = claimed.verify(Role::Dialer, &[1; 32]).unwrap_err();
        assert!(err.message().contains("bad signature"), "{err}");
        let other = Credentials::new(Keypair::generate().unwrap(), &other_machine).unwrap();
        let mut endorsed = hello.clone();
        endorsed.machine_key = other_machine.public_key().as_bytes().to_vec();
        endorsed.endorsement = Hello::new(&other, Role::Dialer, &[1; 32], listen)
            .unwrap()
            .endorsement;
        let err = endorsed.verify(Role::Dialer, &[1; 32]).unwrap_err();
        assert!(err.message().contains("bad signature"), "{err}");
        // A hello whose endorsement names another agent key.
        let mut foreign = hello.clone();
        foreign.endorsement = Hello::new(
            &Credentials::new(Keypair::generate().unwrap(), &machine).unwrap(),
            Role::Dialer,
            &[1; 32],
            listen,
        )
        .unwrap()
        .endorsement;
        let err = foreign.verify(Role::Dialer, &[1; 32]).unwrap_err();
        assert!(err.message().contains("bad endorsement"), "{err}");
    }
}
