//! Presence: the signed card each agent shows the agents it connects to, and the cards this
//! agent holds of others ([`crate::Agent::peers`]).
//!
//! A card names the agent's key, addresses, capabilities, a small info map, its run
//! (incarnation) and an expiry, signed by the agent key (ML-DSA-65). An agent shows its card
//! on every connection it opens or accepts, overlay or direct, once per peer and run until
//! the card changes or half its life is gone; it shows a card that expires at once when it
//! leaves. A card is kept only when its signature verifies and its key is the key of the
//! connection's authenticated peer: nobody can show another agent's card (those are dropped
//! and counted in `cards_rejected`).
//!
//! Capabilities are found through the directory (`overlay::directory`): an agent registers a
//! record under each capability's rendezvous key (`capability_key`), and `find` looks the
//! key up, then fetches each member's card over a direct connection.

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use serde::{Deserialize, Serialize};
use tokio::sync::Notify;

use crate::context::AgentContext;
use crate::error::{Error, Result};
use crate::events::Event;
use crate::identity::{AgentId, Keypair, MachineId, PublicKey};
use crate::pubsub::now_ms;
use crate::wire;

/// Capabilities an agent may advertise at most.
pub const MAX_CAPABILITIES: usize = 64;
/// A capability's length in bytes at most.
pub const MAX_CAPABILITY_LEN: usize = 128;
/// The info map's size at most: every key's and value's bytes together.
pub const MAX_INFO_BYTES: usize = 4096;
/// Addresses a card names at most.
const MAX_ADDRESSES: usize = 16;
/// Cards of other agents kept at most; past it, the one that expires first makes room.
pub const MAX_PEERS: usize = 4096;
/// How long a card is valid; an agent shows a fresh one to its peers after half of it.
pub(crate) const CARD_TTL: Duration = Duration::from_secs(600);
/// What a card's signature covers besides the card, so that it signs nothing else.
const CARD_DOMAIN: &[u8] = b"x0x-card-v1";

/// An agent as its card shows it ([`crate::Agent::peers`], [`crate::Agent::find`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AgentInfo {
    /// The agent.
    pub agent_id: AgentId,
    /// Its machine, as the hello of the connection that brought the card proved it.
    pub machine_id: MachineId,
    /// Where it accepts connections, as it says.
    pub addresses: Vec<SocketAddr>,
    /// What it says it can do.
    pub capabilities: Vec<String>,
    /// Its info map.
    pub info: BTreeMap<String, String>,
    /// When this agent last received its card (milliseconds since the Unix epoch).
    pub last_seen_ms: u64,
}

/// What a card says, signed.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
struct CardBody {
    agent_key: Vec<u8>,
    addresses: Vec<SocketAddr>,
    capabilities: Vec<String>,
    info: BTreeMap<String, String>,
    incarnation: u64,
    expires_ms: u64,
}

#[derive(Serialize, Deserialize)]
struct SignedCard {
    body: Vec<u8>,
    signature: Vec<u8>,
}

/// Where the members of `capability` register in the directory.
pub(crate) fn capability_key(capability: &str) -> [u8; 32] {
    blake3::derive_key("x0x 2026 capability rendezvous v1", capability.as_bytes())
}

/// Checks a capability list and info map against the limits; the first problem, named.
pub(crate) fn check_card(capabilities: &[String], info: &BTreeMap<String, String>) -> Result<()> {
    if capabilities.len() > MAX_CAPABILITIES {
        return Err(Error::invalid_argument(format!(
            "an agent advertises at most {MAX_CAPABILITIES} capabilities, not {}",
            capabilities.len()
        )));
    }
    for capability in capabilities {
        check_capability(capability)?;
    }
    let info_bytes: usize = info.iter().map(|(k, v)| k.len() + v.len()).sum();
    if info_bytes > MAX_INFO_BYTES {
        return Err(Error::invalid_argument(format!(
            "the info map is at most {MAX_INFO_BYTES} bytes (keys and values), not {info_bytes}"
        )));
    }
    Ok(())
}

/// Checks one capability: 1 to [`MAX_CAPABILITY_LEN`] bytes, no whitespace or control
/// characters.
pub(crate) fn check_capability(capability: &str) -> Result<()> {
    if capability.is_empty() || capability.len() > MAX_CAPABILITY_LEN {
        return Err(Error::invalid_argument(format!(
            "a capability is 1 to {MAX_CAPABILITY_LEN} bytes, not {} ({capability:?})",
            capability.len()
        )));
    }
    if capability
        .chars()
        .any(|c| c.is_whitespace() || c.is_control())
    {
        return Err(Error::invalid_argument(format!(
            "a capability has no spaces or control characters: {capability:?}"
        )));
    }
    Ok(())
}

/// Signs a card for `key`.
fn sign_card(key: &Keypair, body: &CardBody) -> Result<Bytes> {
    let body = wire::encode(body)?;
    let signature = key.sign(&[CARD_DOMAIN, &body].concat())?;
    Ok(Bytes::from(wire::encode(&SignedCard { body, signature })?))
}

/// Why a card was not kept.
#[derive(Debug, PartialEq, Eq)]
enum Rejected {
    /// It does not decode, its signature does not verify, or it breaks the limits.
    Invalid,
    /// It is another agent's card than the presenter's.
    NotThePresenters,
}

/// Reads and checks a card shown by `presenter`.
fn open_card(bytes: &[u8], presenter: AgentId) -> std::result::Result<CardBody, Rejected> {
    let signed: SignedCard = postcard::from_bytes(bytes).map_err(|_| Rejected::Invalid)?;
    let body: CardBody = postcard::from_bytes(&signed.body).map_err(|_| Rejected::Invalid)?;
    let key = PublicKey::from_bytes(&body.agent_key).map_err(|_| Rejected::Invalid)?;
    if key.agent_id() != presenter {
        return Err(Rejected::NotThePresenters);
    }
    if !key.verify(&[CARD_DOMAIN, &signed.body].concat(), &signed.signature) {
        return Err(Rejected::Invalid);
    }
    if check_card(&body.capabilities, &body.info).is_err() || body.addresses.len() > MAX_ADDRESSES {
        return Err(Rejected::Invalid);
    }
    Ok(body)
}

/// Another agent's card as kept.
struct Known {
    info: AgentInfo,
    incarnation: u64,
    expires_ms: u64,
}

/// This agent's own card.
struct Own {
    capabilities: Vec<String>,
    info: BTreeMap<String, String>,
    addresses: Vec<SocketAddr>,
    /// The signed card and when it was signed (a fresh one replaces it after half its life).
    signed: Option<(Bytes, u64)>,
}

/// This agent's card and the cards it holds.
pub(crate) struct Presence {
    me: AgentId,
    key: Keypair,
    incarnation: u64,
    context: Arc<AgentContext>,
    own: Mutex<Own>,
    known: Mutex<HashMap<AgentId, Known>>,
    /// Woken when a card arrives.
    arrived: Notify,
}

impl Presence {
    pub(crate) fn new(
        key: Keypair,
        incarnation: u64,
        context: Arc<AgentContext>,
        capabilities: Vec<String>,
        info: BTreeMap<String, String>,
    ) -> Self {
        Self {
            me: key.public_key().agent_id(),
            key,
            incarnation,
            context,
            own: Mutex::new(Own {
                capabilities,
                info,
                addresses: Vec::new(),
                signed: None,
            }),
            known: Mutex::default(),
            arrived: Notify::new(),
        }
    }

    fn own(&self) -> std::sync::MutexGuard<'_, Own> {
        self.own
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn known(&self) -> std::sync::MutexGuard<'_, HashMap<AgentId, Known>> {
        self.known
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Sets where this agent listens (the card's addresses).
    pub(crate) fn set_addresses(&self, addresses: Vec<SocketAddr>) {
        let mut own = self.own();
        own.addresses = addresses;
        own.addresses.truncate(MAX_ADDRESSES);
        own.signed = None;
    }

    /// The capabilities this agent advertises.
    pub(crate) fn capabilities(&self) -> Vec<String> {
        self.own().capabilities.clone()
    }

    /// The info map this agent's card shows.
    pub(crate) fn info(&self) -> BTreeMap<String, String> {
        self.own().info.clone()
    }

    /// Replaces what this agent advertises (checked by the caller).
    pub(crate) fn advertise(&self, capabilities: Vec<String>, info: BTreeMap<String, String>) {
        let mut own = self.own();
        own.capabilities = capabilities;
        own.info = info;
        own.signed = None;
    }

    /// This agent's signed card: the current one, or a fresh one once half its life is gone
    /// (or what it says changed). The second value is when it was signed: a card signed at
    /// another time is a new card to show.
    pub(crate) fn card(&self) -> Result<(Bytes, u64)> {
        let mut own = self.own();
        let now = now_ms();
        if let Some((card, signed)) = &own.signed {
            if now.saturating_sub(*signed) < CARD_TTL.as_millis() as u64 / 2 {
                return Ok((card.clone(), *signed));
            }
        }
        let body = CardBody {
            agent_key: self.key.public_key().as_bytes().to_vec(),
            addresses: own.addresses.clone(),
            capabilities: own.capabilities.clone(),
            info: own.info.clone(),
            incarnation: self.incarnation,
            expires_ms: now + CARD_TTL.as_millis() as u64,
        };
        let card = sign_card(&self.key, &body)?;
        own.signed = Some((card.clone(), now));
        Ok((card, now))
    }

    /// A card that expires at once: shown when leaving, so that peers drop this agent now.
    pub(crate) fn farewell(&self) -> Result<Bytes> {
        let body = CardBody {
            agent_key: self.key.public_key().as_bytes().to_vec(),
            addresses: Vec::new(),
            capabilities: Vec::new(),
            info: BTreeMap::new(),
            incarnation: self.incarnation,
            expires_ms: 0,
        };
        sign_card(&self.key, &body)
    }

    /// A card `presenter` (on machine `machine`) showed: kept if it is valid and its own;
    /// otherwise counted and dropped.
    pub(crate) fn accept(&self, presenter: AgentId, machine: MachineId, card: &[u8]) {
        let body = match open_card(card, presenter) {
            Ok(body) => body,
            Err(why) => {
                let counters = &self.context.counters;
                counters.add(&counters.cards_rejected, 1);
                log::debug!("x0x: dropped a card from {presenter:?}: {why:?}");
                return;
            }
        };
        if presenter == self.me {
            return;
        }
        let now = now_ms();
        let event = {
            let mut known = self.known();
            if let Some(held) = known.get(&presenter) {
                // An older run's card, or an older card of this run, changes nothing.
                if (body.incarnation, body.expires_ms) < (held.incarnation, held.expires_ms)
                    && body.expires_ms != 0
                {
                    return;
                }
            }
            if body.expires_ms <= now {
                known
                    .remove(&presenter)
                    .map(|_| Event::AgentLeft(presenter))
            } else {
                if !known.contains_key(&presenter) && known.len() >= MAX_PEERS {
                    let first = known
                        .iter()
                        .min_by_key(|(_, held)| held.expires_ms)
                        .map(|(id, _)| *id);
                    if let Some(first) = first {
                        known.remove(&first);
                    }
                }
                let joined = !known.contains_key(&presenter);
                known.insert(
                    presenter,
                    Known {
                        info: AgentInfo {
                            agent_id: presenter,
                            machine_id: machine,
                            addresses: body.addresses,
                            capabilities: body.capabilities,
                            info: body.info,
                            last_seen_ms: now,
                        },
                        incarnation: body.incarnation,
                        expires_ms: body.expires_ms,
                    },
                );
                joined.then_some(Event::AgentJoined(presenter))
            }
        };
        self.arrived.notify_waiters();
        if let Some(event) = event {
            self.context.events.emit(event);
        }
    }

    /// Drops expired cards (each an `AgentLeft` event).
    pub(crate) fn expire(&self) {
        let now = now_ms();
        let gone: Vec<AgentId> = {
            let mut known = self.known();
            let gone: Vec<AgentId> = known
                .iter()
                .filter(|(_, held)| held.expires_ms <= now)
                .map(|(id, _)| *id)
                .collect();
            for id in &gone {
                known.remove(id);
            }
            gone
        };
        for id in gone {
            self.context.events.emit(Event::AgentLeft(id));
        }
    }

    /// The agents whose cards this agent holds.
    pub(crate) fn peers(&self) -> Vec<AgentInfo> {
        let now = now_ms();
        let mut peers: Vec<AgentInfo> = self
            .known()
            .values()
            .filter(|held| held.expires_ms > now)
            .map(|held| held.info.clone())
            .collect();
        peers.sort_by_key(|peer| peer.agent_id);
        peers
    }

    /// The card of `agent`, if held.
    pub(crate) fn get(&self, agent: &AgentId) -> Option<AgentInfo> {
        let now = now_ms();
        self.known()
            .get(agent)
            .filter(|held| held.expires_ms > now)
            .map(|held| held.info.clone())
    }

    /// The addresses `agent`'s card names (none if no card is held).
    pub(crate) fn addresses(&self, agent: &AgentId) -> Vec<SocketAddr> {
        self.get(agent)
            .map(|info| info.addresses)
            .unwrap_or_default()
    }

    /// Notified whenever a card arrives (any agent's).
    pub(crate) fn arrivals(&self) -> &Notify {
        &self.arrived
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pubsub::Registry;
    use crate::stats::Counters;

    fn presence(key: Keypair, capabilities: &[&str]) -> Presence {
        let context = Arc::new(AgentContext::new(
            Arc::new(Counters::default()),
            Arc::new(Registry::default()),
        ));
        Presence::new(
            key,
            1,
            context,
            capabilities.iter().map(|c| (*c).to_owned()).collect(),
            BTreeMap::from([("model".to_owned(), "small".to_owned())]),
        )
    }

    #[test]
    fn a_card_is_kept_only_from_its_own_agent_and_unaltered() {
        let alice_key = Keypair::generate().unwrap();
        let alice_id = alice_key.public_key().agent_id();
        let alice = presence(alice_key, &["summarize", "translate:fr"]);
        let bob = presence(Keypair::generate().unwrap(), &[]);
        let machine = MachineId([9; 32]);
        let (card, _) = alice.card().unwrap();

        // Shown by someone else: dropped and counted.
        let mallory = Keypair::generate().unwrap().public_key().agent_id();
        bob.accept(mallory, machine, &card);
        assert!(bob.peers().is_empty());
        // Altered: the signature no longer verifies.
        let mut forged = card.to_vec();
        let at = forged.len() / 3;
        forged[at] ^= 1;
        bob.accept(alice_id, machine, &forged);
        bob.accept(alice_id, machine, b"not a card");
        assert!(bob.peers().is_empty());
        assert_eq!(bob.context.counters.snapshot(0, 0).cards_rejected, 3);

        bob.accept(alice_id, machine, &card);
        let peers = bob.peers();
        assert_eq!(peers.len(), 1);
        assert_eq!(peers[0].agent_id, alice_id);
        assert_eq!(peers[0].machine_id, machine);
        assert_eq!(peers[0].capabilities, ["summarize", "translate:fr"]);
        assert_eq!(peers[0].info["model"], "small");

        // A farewell drops it.
        bob.accept(alice_id, machine, &alice.farewell().unwrap());
        assert!(bob.peers().is_empty());
    }

    #[test]
    fn limits_are_checked_with_the_cause_named() {
        let many: Vec<String> = (0..=MAX_CAPABILITIES).map(|i| format!("c{i}")).collect();
        let err = check_card(&many, &BTreeMap::new()).unwrap_err();
        assert!(err.message().contains("at most 64 capabilities"), "{err}");
        for bad in [
            "",
            "has space",
            "tab\t",
            &"x".repeat(MAX_CAPABILITY_LEN + 1),
        ] {
            assert!(check_capability(bad).is_err(), "{bad:?}");
        }
        let big = BTreeMap::from([("k".to_owned(), "v".repeat(MAX_INFO_BYTES))]);
        let err = check_card(&[], &big).unwrap_err();
        assert!(err.message().contains("info map"), "{err}");
        check_card(&["translate:fr".to_owned()], &BTreeMap::new()).unwrap();
    }
}
