//! The directory: how an agent finds the other members of a topic swarm without every agent
//! hearing of every topic. Sans-IO, owned by the node.
//!
//! A rendezvous in the id space, Kademlia-style: the agents whose ids are closest (XOR) to a
//! swarm's *rendezvous key* keep its member records (agent, listen address, expiry), and
//! members find them by an iterative lookup that asks the closest agents it knows for closer
//! ones, starting from its address book. A member registers with the [`REPLICAS`] closest it
//! found and re-registers every [`REGISTER_PERIOD`]; a lookup also collects the records the
//! agents it asked keep. An agent looks itself up after joining, so that the agents near its
//! id learn of it (that is what makes the closest agents findable).
//!
//! Messages travel point to point ([`crate::wire::FrameKind::Directory`]) on the connections
//! the node opens anyway; the sender of a registration is the connection's authenticated peer,
//! and every address a message names is only a hint, checked by the hello of the dial to it.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::time::Instant;

use crate::identity::AgentId;

/// How many of the closest agents a lookup settles on, and an answer names.
pub(crate) const CLOSEST: usize = 8;
/// Queries a lookup keeps under way at once.
const PARALLEL: usize = 3;
/// Queries a lookup makes at most (a network of 10,000 needs about a dozen).
const MAX_QUERIES: usize = 48;
/// A query not answered by then (a dial's timeout and a round trip) counts as failed.
pub(crate) const QUERY_TIMEOUT: Duration = Duration::from_secs(3);
/// The closest agents a member registers with: records survive all but that many failures.
const REPLICAS: usize = 4;
/// How long a record lives without a refresh, and how often members refresh theirs.
const RECORD_TTL: Duration = Duration::from_secs(300);
pub(crate) const REGISTER_PERIOD: Duration = Duration::from_secs(120);
/// Records kept per key, and keys kept: every authenticated key can register, and keys cost
/// an attacker only a handshake, so both are bounded (the oldest record makes room).
const RECORDS_PER_KEY: usize = 64;
const KEYS_CAP: usize = 4096;
/// Member records an answer carries at most (a random-enough sample: the newest).
const MEMBERS_PER_ANSWER: usize = 16;

/// A 32-byte point of the id space: an agent id, or a swarm's rendezvous key.
pub(crate) type Key = [u8; 32];

/// What travels between agents (postcard, after the frame kind byte).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) enum Message {
    /// Which agents closest to `target` do you know, and which members of the swarm whose
    /// rendezvous key is `target` do you keep?
    Find { query: u64, target: Key },
    /// The answer to `Find` number `query`.
    Found {
        query: u64,
        closer: Vec<(AgentId, SocketAddr)>,
        members: Vec<(AgentId, SocketAddr)>,
    },
    /// The sender (the connection's peer) is a member of the swarm with rendezvous key `key`.
    Register { key: Key },
    /// The sender left that swarm: its record would send joiners to a dead address.
    Unregister { key: Key },
}

/// Why a lookup runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Purpose {
    /// The agent's own id: makes it known to the agents near it.
    Myself,
    /// Members of a swarm (by its rendezvous key), and where to register.
    Swarm(Key),
    /// Agents that advertise a capability (by its rendezvous key, `presence::capability_key`),
    /// and where to register when this agent advertises it too.
    Capability(Key),
    /// Where an agent listens (for a direct connection): the lookup walks towards its id,
    /// which the agents nearest to it know (it looked itself up when it joined).
    Agent(AgentId),
}

/// A lookup that ended: the closest agents that answered, and the members they keep.
#[derive(Debug)]
pub(crate) struct Done {
    pub purpose: Purpose,
    /// Where to register (at most [`REPLICAS`], closest first).
    pub register_with: Vec<AgentId>,
    pub members: BTreeMap<AgentId, SocketAddr>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Ask {
    Unasked,
    Asked { query: u64, since: Instant },
    Answered,
    Failed,
}

#[derive(Debug)]
struct Lookup {
    target: Key,
    /// Candidates by distance to the target.
    candidates: BTreeMap<Key, (AgentId, SocketAddr, Ask)>,
    members: BTreeMap<AgentId, SocketAddr>,
    queries: usize,
}

/// What the directory asks the node to send.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Send {
    pub to: AgentId,
    pub addr: SocketAddr,
    pub message: Message,
}

/// One agent's directory: the records it keeps for others, and its lookups under way.
#[derive(Debug, Default)]
pub(crate) struct Directory {
    records: BTreeMap<Key, BTreeMap<AgentId, (SocketAddr, Instant)>>,
    lookups: BTreeMap<Purpose, Lookup>,
    next_query: u64,
}

/// XOR distance between two points.
pub(crate) fn distance(a: &Key, b: &Key) -> Key {
    std::array::from_fn(|i| a[i] ^ b[i])
}

impl Directory {
    /// Whether a lookup for `purpose` is under way.
    pub(crate) fn looking(&self, purpose: Purpose) -> bool {
        self.lookups.contains_key(&purpose)
    }

    /// Starts a lookup from `known` (the address book: the closest to the target are taken);
    /// returns the first queries, or the lookup's end if there is nobody to ask. A lookup
    /// already under way for the same purpose goes on.
    pub(crate) fn start(
        &mut self,
        me: AgentId,
        purpose: Purpose,
        known: impl Iterator<Item = (AgentId, SocketAddr)>,
        now: Instant,
    ) -> (Vec<Send>, Option<Done>) {
        if self.lookups.contains_key(&purpose) {
            return (Vec::new(), None);
        }
        let target = match purpose {
            Purpose::Myself => me.0,
            Purpose::Swarm(key) | Purpose::Capability(key) => key,
            Purpose::Agent(agent) => agent.0,
        };
        let mut lookup = Lookup {
            target,
            candidates: BTreeMap::new(),
            members: BTreeMap::new(),
            queries: 0,
        };
        for (peer, addr) in known {
            lookup.add(me, peer, addr);
        }
        if let Purpose::Swarm(key) | Purpose::Capability(key) = purpose {
            // What we keep ourselves counts as an answer of our own.
            lookup.members.extend(self.members(&key, me, now));
        }
        self.lookups.insert(purpose, lookup);
        self.progress(purpose, now)
    }

    /// An answer from `peer`: the agents it named join the lookup that asked; returns the next
    /// queries, and the lookup if this ended it. An answer nobody asked for is ignored.
    pub(crate) fn found(
        &mut self,
        me: AgentId,
        peer: AgentId,
        query: u64,
        closer: Vec<(AgentId, SocketAddr)>,
        members: Vec<(AgentId, SocketAddr)>,
        now: Instant,
    ) -> (Vec<Send>, Option<Done>) {
        let Some((&purpose, lookup)) = self.lookups.iter_mut().find(|(_, l)| {
            l.candidates.values().any(|(p, _, ask)| {
                *p == peer && matches!(ask, Ask::Asked { query: q, .. } if *q == query)
            })
        }) else {
            return (Vec::new(), None);
        };
        lookup.set(&peer, Ask::Answered);
        for (agent, addr) in closer.into_iter().take(CLOSEST) {
            if purpose == Purpose::Agent(agent) {
                lookup.members.insert(agent, addr);
            }
            lookup.add(me, agent, addr);
        }
        if let Purpose::Swarm(_) | Purpose::Capability(_) = purpose {
            for (agent, addr) in members.into_iter().take(MEMBERS_PER_ANSWER) {
                if agent != me {
                    lookup.members.insert(agent, addr);
                }
            }
        }
        self.progress(purpose, now)
    }

    /// `peer` cannot be reached (its dial failed, or its connection ended): every lookup that
    /// waits for it goes on without it.
    pub(crate) fn unreachable(&mut self, peer: &AgentId, now: Instant) -> (Vec<Send>, Vec<Done>) {
        let waiting: Vec<Purpose> = self
            .lookups
            .iter_mut()
            .filter_map(|(purpose, lookup)| lookup.set(peer, Ask::Failed).then_some(*purpose))
            .collect();
        self.progress_all(waiting, now)
    }

    /// Fails queries not answered within [`QUERY_TIMEOUT`]; returns what follows.
    pub(crate) fn expire(&mut self, now: Instant) -> (Vec<Send>, Vec<Done>) {
        let mut late = Vec::new();
        for (purpose, lookup) in &mut self.lookups {
            let mut any = false;
            for (_, _, ask) in lookup.candidates.values_mut() {
                if matches!(ask, Ask::Asked { since, .. } if now.duration_since(*since) >= QUERY_TIMEOUT)
                {
                    *ask = Ask::Failed;
                    any = true;
                }
            }
            if any {
                late.push(*purpose);
            }
        }
        self.progress_all(late, now)
    }

    /// The members the answers of the lookup for `purpose` named so far.
    pub(crate) fn members_found(&self, purpose: Purpose) -> Vec<(AgentId, SocketAddr)> {
        self.lookups
            .get(&purpose)
            .map(|lookup| lookup.members.iter().map(|(a, addr)| (*a, *addr)).collect())
            .unwrap_or_default()
    }

    /// Forgets every lookup (the agent left).
    pub(crate) fn stop(&mut self) {
        self.lookups.clear();
    }

    /// A `Find` for `target` from `peer`: the agents closest to it among `known` (not `peer`
    /// itself) and the members of the swarm `target` we keep.
    pub(crate) fn answer(
        &mut self,
        me: AgentId,
        peer: AgentId,
        query: u64,
        target: Key,
        known: impl Iterator<Item = (AgentId, SocketAddr)>,
        now: Instant,
    ) -> Message {
        let mut closest: BTreeMap<Key, (AgentId, SocketAddr)> = BTreeMap::new();
        for (agent, addr) in known {
            if agent != peer && agent != me {
                closest.insert(distance(&agent.0, &target), (agent, addr));
                if closest.len() > CLOSEST {
                    closest.pop_last();
                }
            }
        }
        Message::Found {
            query,
            closer: closest.into_values().collect(),
            members: self
                .members(&target, peer, now)
                .take(MEMBERS_PER_ANSWER)
                .collect(),
        }
    }

    /// Keeps `peer`'s record (it listens at `listen`) for the swarm with rendezvous key `key`.
    pub(crate) fn register(&mut self, key: Key, peer: AgentId, listen: SocketAddr, now: Instant) {
        if !self.records.contains_key(&key) && self.records.len() >= KEYS_CAP {
            self.expire_records(now);
            if self.records.len() >= KEYS_CAP {
                return;
            }
        }
        let records = self.records.entry(key).or_default();
        if !records.contains_key(&peer) && records.len() >= RECORDS_PER_KEY {
            let oldest = records
                .iter()
                .min_by_key(|(_, (_, expires))| *expires)
                .map(|(agent, _)| *agent);
            if let Some(oldest) = oldest {
                records.remove(&oldest);
            }
        }
        records.insert(peer, (listen, now + RECORD_TTL));
    }

    /// Drops `peer`'s record for `key` (it left the swarm).
    pub(crate) fn unregister(&mut self, key: &Key, peer: &AgentId) {
        if let Some(records) = self.records.get_mut(key) {
            records.remove(peer);
            if records.is_empty() {
                self.records.remove(key);
            }
        }
    }

    /// Drops expired records.
    pub(crate) fn expire_records(&mut self, now: Instant) {
        self.records.retain(|_, records| {
            records.retain(|_, (_, expires)| *expires > now);
            !records.is_empty()
        });
    }

    /// Live member records of `key`, newest first, except `except`'s.
    fn members(
        &self,
        key: &Key,
        except: AgentId,
        now: Instant,
    ) -> impl Iterator<Item = (AgentId, SocketAddr)> + '_ {
        let mut live: Vec<_> = self
            .records
            .get(key)
            .into_iter()
            .flatten()
            .filter(|(agent, (_, expires))| **agent != except && *expires > now)
            .map(|(agent, (addr, expires))| (*expires, *agent, *addr))
            .collect();
        live.sort_unstable_by(|a, b| b.cmp(a));
        live.into_iter().map(|(_, agent, addr)| (agent, addr))
    }

    fn progress_all(&mut self, purposes: Vec<Purpose>, now: Instant) -> (Vec<Send>, Vec<Done>) {
        let (mut sends, mut done) = (Vec::new(), Vec::new());
        for purpose in purposes {
            let (more, ended) = self.progress(purpose, now);
            sends.extend(more);
            done.extend(ended);
        }
        (sends, done)
    }

    /// Sends the next queries of a lookup, or ends it.
    fn progress(&mut self, purpose: Purpose, now: Instant) -> (Vec<Send>, Option<Done>) {
        let sends = self.advance(purpose, now);
        let Some(lookup) = self.lookups.get(&purpose) else {
            return (sends, None);
        };
        if !sends.is_empty() || lookup.in_flight() > 0 {
            return (sends, None);
        }
        let Some(lookup) = self.lookups.remove(&purpose) else {
            return (sends, None);
        };
        let register_with = lookup
            .candidates
            .values()
            .filter(|(_, _, ask)| *ask == Ask::Answered)
            .take(REPLICAS)
            .map(|(agent, _, _)| *agent)
            .collect();
        let done = Done {
            purpose,
            register_with,
            members: lookup.members,
        };
        (sends, Some(done))
    }

    /// The queries a lookup sends next: to the closest unasked among the [`CLOSEST`] closest
    /// that have not failed, keeping [`PARALLEL`] under way.
    fn advance(&mut self, purpose: Purpose, now: Instant) -> Vec<Send> {
        let Some(lookup) = self.lookups.get_mut(&purpose) else {
            return Vec::new();
        };
        let mut sends = Vec::new();
        let mut room = PARALLEL.saturating_sub(lookup.in_flight());
        let target = lookup.target;
        for (_, (agent, addr, ask)) in lookup
            .candidates
            .iter_mut()
            .filter(|(_, (_, _, ask))| *ask != Ask::Failed)
            .take(CLOSEST)
        {
            if room == 0 || lookup.queries >= MAX_QUERIES {
                break;
            }
            if *ask == Ask::Unasked {
                self.next_query += 1;
                *ask = Ask::Asked {
                    query: self.next_query,
                    since: now,
                };
                lookup.queries += 1;
                room -= 1;
                sends.push(Send {
                    to: *agent,
                    addr: *addr,
                    message: Message::Find {
                        query: self.next_query,
                        target,
                    },
                });
            }
        }
        sends
    }
}

impl Lookup {
    fn add(&mut self, me: AgentId, agent: AgentId, addr: SocketAddr) {
        if agent != me {
            self.candidates
                .entry(distance(&agent.0, &self.target))
                .or_insert((agent, addr, Ask::Unasked));
        }
    }

    /// Sets `peer`'s state if it was asked and has not answered; true if it was.
    fn set(&mut self, peer: &AgentId, to: Ask) -> bool {
        let Some((_, _, ask)) = self
            .candidates
            .get_mut(&distance(&peer.0, &self.target))
            .filter(|(agent, _, _)| agent == peer)
        else {
            return false;
        };
        let waiting = matches!(ask, Ask::Asked { .. });
        if waiting {
            *ask = to;
        }
        waiting
    }

    fn in_flight(&self) -> usize {
        self.candidates
            .values()
            .filter(|(_, _, ask)| matches!(ask, Ask::Asked { .. }))
            .count()
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::*;

    fn ids(members: &BTreeMap<AgentId, SocketAddr>) -> BTreeSet<AgentId> {
        members.keys().copied().collect()
    }

    fn agent(byte: u8) -> AgentId {
        AgentId([byte; 32])
    }

    fn addr(port: u16) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], port))
    }

    /// A network of directories that know each other as `knows` says, answering every query
    /// at once; returns the lookup's end.
    fn run(
        dirs: &mut BTreeMap<AgentId, Directory>,
        knows: &BTreeMap<AgentId, Vec<AgentId>>,
        me: AgentId,
        purpose: Purpose,
        now: Instant,
    ) -> Done {
        let book = |of: AgentId| -> Vec<(AgentId, SocketAddr)> {
            knows[&of]
                .iter()
                .map(|a| (*a, addr(a.0[0].into())))
                .collect()
        };
        let (mut sends, done) =
            dirs.get_mut(&me)
                .unwrap()
                .start(me, purpose, book(me).into_iter(), now);
        assert!(done.is_none(), "it knows agents to ask");
        loop {
            let send = sends.pop().expect("a lookup ends with a Done");
            let Message::Find { query, target } = send.message else {
                panic!("lookups only find")
            };
            let answer = dirs.get_mut(&send.to).unwrap().answer(
                send.to,
                me,
                query,
                target,
                book(send.to).into_iter(),
                now,
            );
            let Message::Found {
                closer, members, ..
            } = answer
            else {
                panic!("answers are Found")
            };
            let (more, done) = dirs
                .get_mut(&me)
                .unwrap()
                .found(me, send.to, query, closer, members, now);
            sends.extend(more);
            if let Some(done) = done {
                assert!(sends.is_empty());
                return done;
            }
        }
    }

    #[test]
    fn members_register_near_the_key_and_a_later_lookup_finds_them() {
        // 64 agents, each knowing the 3 nearest to it (what its own lookup teaches it) and 8
        // scattered ones (what shuffles teach it), so lookups must walk.
        let all: Vec<AgentId> = (0..64u8).map(|i| agent(i.wrapping_mul(4))).collect();
        let knows: BTreeMap<AgentId, Vec<AgentId>> = all
            .iter()
            .enumerate()
            .map(|(i, a)| {
                let mut near: Vec<AgentId> = all.iter().filter(|b| *b != a).copied().collect();
                near.sort_by_key(|b| distance(&a.0, &b.0));
                near.truncate(3);
                near.extend((1..=8).map(|j| all[(i * 37 + j * 11) % all.len()]));
                (*a, near)
            })
            .collect();
        let mut dirs: BTreeMap<AgentId, Directory> =
            all.iter().map(|a| (*a, Directory::default())).collect();
        let now = Instant::now();
        let key = [0x81; 32];
        let (first, second) = (all[5], all[40]);
        let done = run(&mut dirs, &knows, first, Purpose::Swarm(key), now);
        assert!(done.members.is_empty(), "nobody registered yet");
        assert!(!done.register_with.is_empty());
        for at in &done.register_with {
            dirs.get_mut(at).unwrap().register(key, first, addr(5), now);
        }
        let done = run(&mut dirs, &knows, second, Purpose::Swarm(key), now);
        assert_eq!(ids(&done.members), BTreeSet::from([first]));
        // A member that leaves takes its records back.
        let kept_by = done.register_with.clone();
        for at in &kept_by {
            dirs.get_mut(at).unwrap().unregister(&key, &first);
        }
        let done = run(&mut dirs, &knows, second, Purpose::Swarm(key), now);
        assert!(done.members.is_empty());
        for at in &kept_by {
            dirs.get_mut(at).unwrap().register(key, first, addr(5), now);
        }
        // Records expire.
        let later = now + RECORD_TTL;
        let done = run(&mut dirs, &knows, second, Purpose::Swarm(key), later);
        assert!(done.members.is_empty());
    }

    #[test]
    fn unanswered_and_unreachable_queries_fail_and_the_lookup_ends() {
        let mut dir = Directory::default();
        let me = agent(1);
        let now = Instant::now();
        let known = (2..6u8).map(|i| (agent(i), addr(i.into())));
        let (sends, done) = dir.start(me, Purpose::Myself, known, now);
        assert!(done.is_none());
        assert_eq!(sends.len(), PARALLEL);
        assert!(dir.looking(Purpose::Myself));
        let (more, done) = dir.unreachable(&sends[0].to, now);
        assert_eq!(more.len(), 1, "the fourth agent is asked instead");
        assert!(done.is_empty());
        let (more, done) = dir.expire(now + QUERY_TIMEOUT);
        assert!(more.is_empty());
        assert_eq!(done.len(), 1);
        assert!(done[0].register_with.is_empty(), "nobody answered");
        assert!(!dir.looking(Purpose::Myself));
        // Nobody to ask: the lookup ends at once.
        let (sends, done) = dir.start(me, Purpose::Myself, [].into_iter(), now);
        assert!(sends.is_empty() && done.is_some() && !dir.looking(Purpose::Myself));
        // An answer nobody asked for is ignored.
        let (more, done) = dir.found(me, agent(9), 77, vec![], vec![], now);
        assert!(more.is_empty() && done.is_none());
    }

    #[test]
    fn records_are_bounded_per_key_and_answers_skip_the_asker() {
        let mut dir = Directory::default();
        let now = Instant::now();
        let key = [7; 32];
        for i in 0..=RECORDS_PER_KEY {
            let at = now + Duration::from_millis(i as u64);
            dir.register(key, AgentId([i as u8; 32]), addr(i as u16), at);
        }
        assert_eq!(dir.records[&key].len(), RECORDS_PER_KEY);
        assert!(
            !dir.records[&key].contains_key(&agent(0)),
            "the oldest went"
        );
        let asker = agent(3);
        let Message::Found { members, .. } =
            dir.answer(agent(200), asker, 1, key, [].into_iter(), now)
        else {
            panic!()
        };
        assert_eq!(members.len(), MEMBERS_PER_ANSWER);
        assert!(members.iter().all(|(a, _)| *a != asker));
    }
}
