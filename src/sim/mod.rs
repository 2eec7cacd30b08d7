//! A deterministic simulator: many agents' real overlay nodes (`overlay::node::Node`) in one
//! process, on simulated time, over a modelled network. It replaces only quinn and the clock: every frame
//! a node sends is the real encoded gossip message, decoded by the receiver as the driver's
//! readers decode it, and every envelope is really signed (once, by its publisher) and really
//! verified (once per distinct envelope: a memo, since 10,000 receivers verifying each copy
//! would cost minutes of signature checks and test nothing more).
//!
//! # The network model
//! * Links: a one-way latency per pair of agents, drawn once (uniform in the configured range);
//!   each direction delivers in order (QUIC streams are ordered).
//! * Loss: QUIC retransmits, so a lost packet is delay, not loss: each frame is lost with the
//!   configured probability (again and again, independently), each loss adding one
//!   retransmission timeout (1.5 round trips), and every later frame on that direction waits
//!   for it (head-of-line blocking).
//! * Dials: the acceptor hears of the connection after 1.5 round trips, the dialer after 2
//!   (QUIC + TLS + the hello); a dial to a dead, partitioned or unused address fails at its
//!   timeout.
//! * Crashes and partitions: a link to a dead agent, or across a partition, carries nothing
//!   more; each live end notices at the QUIC idle timeout (2 s), as keep-alives would.
//!
//! # Task lists
//! With `tasklist_holders` set, that many agents hold one shared task list and run the real
//! replica sync (`replica`): the first creates it with a few tasks, the others join by id;
//! during a partition (or, without one, a few seconds later) every holder adds a task and one
//! holder on each side claims the same task; the run reports how long after the heal (or the
//! edits) every live holder had the same state.
//!
//! One seed gives one run: every random draw comes from seeded generators, nodes order what
//! they iterate, and events at the same instant keep the order they were scheduled in.

use std::cmp::Reverse;
use std::collections::{BTreeSet, BinaryHeap, HashMap};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};
use tokio::time::Instant;

use crate::context::AgentContext;
use crate::error::{Error, ErrorKind, Result};
use crate::events::{Event as AgentEvent, EventStream};
use crate::identity::{AgentId, Keypair, PublicKey};
use crate::overlay::links::Outgoing;
use crate::overlay::node::{Action, Connected, Input, Node};
use crate::pubsub::{Registry, Subscription};
use crate::replica::{self, prompts_full_state, ListChannel, Replica, SyncMessage};
use crate::stats::Counters;
use crate::streams::{decode_directory, decode_gossip, Incoming};
use crate::tasklist::{ListId, TaskListState};
use crate::wire::{self, Item, Rejection};

/// The topic simulated publishers publish on, and every agent subscribes to, without `topics`.
const TOPIC: &str = "sim";
/// QUIC's idle timeout as agents configure it: how long a dead peer goes unnoticed.
const IDLE_TIMEOUT: Duration = Duration::from_secs(2);
/// How long a closing connection gets to flush (the driver's grace).
const CLOSE_GRACE: Duration = Duration::from_millis(250);
/// The QUIC port every simulated agent listens on.
const PORT: u16 = 7000;
/// Tasks the first holder creates its list with.
const LIST_TASKS: usize = 10;
/// How often the simulator checks whether the task list replicas agree.
const LIST_CHECK: Duration = Duration::from_millis(100);

/// What to simulate.
#[derive(Clone, Debug)]
pub struct Config {
    /// Agents in the network.
    pub agents: usize,
    /// Agents that publish (chosen at random).
    pub publishers: usize,
    /// Messages each publisher publishes.
    pub messages: usize,
    /// Messages per second per publisher.
    pub rate: f64,
    /// Payload bytes per message.
    pub payload: usize,
    /// One-way link latency range (half the round trip).
    pub latency: (Duration, Duration),
    /// Probability that a frame is lost (and retransmitted).
    pub loss: f64,
    /// Seeds every random choice.
    pub seed: u64,
    /// Time between two agents joining.
    pub join_gap: Duration,
    /// Quiet time after the last join, before publishing starts.
    pub settle: Duration,
    /// Kill this fraction of the agents that do not publish, this long after publishing starts.
    pub kill: Option<(f64, Duration)>,
    /// Split the agents in two (this fraction on one side) this long after publishing starts,
    /// for this long.
    pub partition: Option<(f64, Duration, Duration)>,
    /// Time after the last publish (or heal) that late deliveries may take.
    pub drain: Duration,
    /// Agents that hold one shared task list (0: no task list).
    pub tasklist_holders: usize,
    /// Topics (0: one, which every agent subscribes to). Publisher k publishes on topic
    /// k mod `topics`; each topic has `subscribers` subscribers, drawn at random.
    pub topics: usize,
    pub subscribers: usize,
    /// One more topic, "hot": this many subscribers (drawn at random), one of which publishes
    /// on it at this many messages per second while the others publish.
    pub hot: Option<(usize, f64)>,
    /// Publishers send each message to their swarm neighbours as an origin frame too, before
    /// its envelope, as agents do with small batches (every simulated publish is one message).
    /// The model has no signing or verification time, so they gain no latency here; what it
    /// checks is that each message is still delivered once, and never relayed unsigned.
    pub origin_frames: bool,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            agents: 20,
            publishers: 3,
            messages: 100,
            rate: 10.0,
            payload: 1024,
            latency: (Duration::from_millis(25), Duration::from_millis(25)),
            loss: 0.0,
            seed: 1,
            join_gap: Duration::from_millis(20),
            settle: Duration::from_secs(10),
            kill: None,
            partition: None,
            drain: Duration::from_secs(10),
            tasklist_holders: 0,
            topics: 0,
            subscribers: 0,
            hot: None,
            origin_frames: true,
        }
    }
}

/// What a run measured. Times are simulated, except `wall_s`.
#[derive(Clone, Debug, Default)]
pub struct Report {
    pub agents: usize,
    pub seed: u64,
    /// Messages published.
    pub messages: usize,
    /// Deliveries over (message, receiver) pairs whose receiver was alive from the publish to
    /// the end and reachable from the publisher when it published.
    pub delivered_ratio: f64,
    /// The same, for messages published at least 5 s after the last fault (kill or heal).
    pub delivered_ratio_after_faults: f64,
    /// Messages that no eligible receiver got at all (lost at the publisher, not on the way).
    pub lost_messages: usize,
    /// Publish-to-delivery latency percentiles, milliseconds.
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
    /// Relative message redundancy: payload copies received per delivery, minus one.
    pub rmr: f64,
    /// The most links a delivered message crossed.
    pub max_hops: u32,
    pub mean_hops: f64,
    /// Bytes sent per agent over the whole run (frames plus their 4-byte length).
    pub bytes_per_agent: f64,
    /// Live agents with fewer than 3 neighbours at the end, and the fewest any had.
    pub below_3_neighbours: usize,
    pub min_neighbours: usize,
    /// Connected components of the live agents' neighbour graph at the end.
    pub components: usize,
    /// Live agents with fewer than 3 neighbours 5 s after the last fault (kill or heal), if
    /// there was one.
    pub below_3_after_faults: Option<usize>,
    /// Neighbourships lost (counted at both ends) while the overlay was idle: from 5 s after
    /// the last join until publishing starts.
    pub neighbours_lost_idle: u64,
    /// Connected components 5 s after the last fault, if there was one.
    pub components_after_faults: Option<usize>,
    /// Live agents that never joined.
    pub failed_joins: usize,
    /// The fewest peers besides its neighbours that any live agent has an address for at the
    /// end (what shuffles teach; a top-up dials from these).
    pub min_others_known: usize,
    /// Live agents holding the task list at the end, and the tasks of the first one's copy.
    pub tasklist_replicas: usize,
    pub tasklist_tasks: usize,
    /// Milliseconds from the heal (or, without a partition, the edits) until every live holder
    /// had the same list state; `None` if they never did (or there was no list).
    pub tasklist_converged_ms: Option<f64>,
    /// Live holders whose state differs from the first live holder's at the end.
    pub tasklist_diverged: usize,
    /// Sync messages the holders published (deltas, requests, answers, full states).
    pub tasklist_messages: u64,
    /// Envelope bytes received (copies, duplicates included) on the topics an agent takes part
    /// in, mean over the agents that take part in one; and on the others (relayed for other
    /// agents), mean over all agents.
    pub own_bytes_in_mean: f64,
    pub foreign_bytes_in_mean: f64,
    /// Over the agents that received on their own topics: all bytes received (frames, control
    /// traffic included) divided by those own-topic bytes, median and largest.
    pub in_over_own_p50: f64,
    pub in_over_own_max: f64,
    /// With a hot topic: the hot topic's bytes received per subscriber (mean), and the most
    /// any other agent received of topics it takes no part in (so at least of the hot one).
    pub hot_bytes_in_mean: f64,
    pub hot_non_subscriber_bytes_max: u64,
    /// Messages a subscriber was handed a second time (must be 0).
    pub double_deliveries: u64,
    /// Origin frames sent (one per publish and swarm neighbour), received, and delivered at
    /// once; received from an agent that is not the message's publisher (must be 0: origin
    /// frames are never relayed).
    pub origin_frames_out: u64,
    pub origin_frames_in: u64,
    pub origin_delivered: u64,
    pub origin_relayed: u64,
    /// Origin frames delivered whose signed envelope never came (within 30 s).
    pub origin_unconfirmed: u64,
    /// Simulated events handled, and the simulated time at the end (seconds).
    pub events: u64,
    pub sim_s: f64,
    /// Wall-clock seconds the run took.
    pub wall_s: f64,
    /// Peak resident memory of this process, MiB (Linux; 0 elsewhere).
    pub peak_rss_mib: f64,
}

impl Report {
    /// One JSON object (no nesting; `null` for what was not measured).
    pub fn to_json(&self) -> String {
        let or_null = |n: Option<usize>| n.map_or_else(|| "null".to_string(), |n| n.to_string());
        format!(
            "{{\"agents\": {}, \"seed\": {}, \"messages\": {}, \"delivered_ratio\": {:.6}, \
             \"delivered_ratio_after_faults\": {:.6}, \"lost_messages\": {}, \"p50_ms\": {:.1}, \"p99_ms\": {:.1}, \
             \"max_ms\": {:.1}, \"rmr\": {:.4}, \"max_hops\": {}, \"mean_hops\": {:.2}, \
             \"bytes_per_agent\": {:.0}, \"below_3_neighbours\": {}, \"min_neighbours\": {}, \
             \"components\": {}, \"below_3_after_faults\": {}, \"components_after_faults\": {}, \
             \"neighbours_lost_idle\": {}, \"failed_joins\": {}, \"min_others_known\": {}, \
             \"tasklist_replicas\": {}, \"tasklist_tasks\": {}, \"tasklist_converged_ms\": {}, \
             \"tasklist_diverged\": {}, \"tasklist_messages\": {}, \
             \"own_bytes_in_mean\": {:.0}, \"foreign_bytes_in_mean\": {:.0}, \
             \"in_over_own_p50\": {:.2}, \"in_over_own_max\": {:.2}, \
             \"hot_bytes_in_mean\": {:.0}, \"hot_non_subscriber_bytes_max\": {}, \
             \"double_deliveries\": {}, \"origin_frames_out\": {}, \"origin_frames_in\": {}, \
             \"origin_delivered\": {}, \"origin_relayed\": {}, \"origin_unconfirmed\": {}, \
             \"events\": {}, \"sim_s\": {:.1}, \"wall_s\": {:.2}, \"peak_rss_mib\": {:.0}}}",
            self.agents,
            self.seed,
            self.messages,
            self.delivered_ratio,
            self.delivered_ratio_after_faults,
            self.lost_messages,
            self.p50_ms,
            self.p99_ms,
            self.max_ms,
            self.rmr,
            self.max_hops,
            self.mean_hops,
            self.bytes_per_agent,
            self.below_3_neighbours,
            self.min_neighbours,
            self.components,
            or_null(self.below_3_after_faults),
            or_null(self.components_after_faults),
            self.neighbours_lost_idle,
            self.failed_joins,
            self.min_others_known,
            self.tasklist_replicas,
            self.tasklist_tasks,
            self.tasklist_converged_ms
                .map_or_else(|| "null".to_string(), |ms| format!("{ms:.0}")),
            self.tasklist_diverged,
            self.tasklist_messages,
            self.own_bytes_in_mean,
            self.foreign_bytes_in_mean,
            self.in_over_own_p50,
            self.in_over_own_max,
            self.hot_bytes_in_mean,
            self.hot_non_subscriber_bytes_max,
            self.double_deliveries,
            self.origin_frames_out,
            self.origin_frames_in,
            self.origin_delivered,
            self.origin_relayed,
            self.origin_unconfirmed,
            self.events,
            self.sim_s,
            self.wall_s,
            self.peak_rss_mib,
        )
    }
}

/// Runs one simulation; `progress` gets a line now and then.
pub fn run(config: &Config, progress: &mut dyn FnMut(&str)) -> Result<Report> {
    if config.agents == 0
        || config.publishers > config.agents
        || config.tasklist_holders > config.agents
    {
        return Err(Error::invalid_argument(
            "need at least one agent, and no more publishers or task list holders than agents",
        ));
    }
    if (config.topics > 0) != (config.subscribers > 0) || config.subscribers > config.agents {
        return Err(Error::invalid_argument(
            "topics and subscribers go together, with no more subscribers than agents",
        ));
    }
    if config.hot.is_some_and(|(subscribers, rate)| {
        config.topics == 0 || subscribers == 0 || subscribers > config.agents || rate <= 0.0
    }) {
        return Err(Error::invalid_argument(
            "a hot topic needs topics, 1 to agents subscribers and a positive rate",
        ));
    }
    if config.latency.0 > config.latency.1 || !(0.0..1.0).contains(&config.loss) {
        return Err(Error::invalid_argument(
            "latency range must be LO..HI with LO <= HI, and loss in [0, 1)",
        ));
    }
    let wall = std::time::Instant::now();
    let mut world = World::new(config)?;
    world.schedule_scenario();
    let mut next_report = 10 * SECOND;
    while let Some(Reverse(Scheduled { at, event, .. })) = world.queue.pop() {
        world.now = at;
        world.events += 1;
        world.dispatch(event);
        if world.now >= next_report {
            progress(&format!(
                "t={:.0}s events={} deliveries={} wall={:.1}s",
                world.now as f64 / SECOND as f64,
                world.events,
                world.deliveries,
                wall.elapsed().as_secs_f64()
            ));
            next_report += 10 * SECOND;
        }
        if world.now > world.end {
            break;
        }
    }
    let mut report = world.report();
    report.wall_s = wall.elapsed().as_secs_f64();
    report.peak_rss_mib = peak_rss_mib();
    Ok(report)
}

const SECOND: u64 = 1_000_000_000;

fn nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

/// A seed for stream `purpose` of agent (or object) `index`: independent streams, so one more
/// draw in one does not shift the others.
fn sub_seed(seed: u64, purpose: u64, index: u64) -> u64 {
    let mut hasher = blake3::Hasher::new();
    hasher.update(&seed.to_le_bytes());
    hasher.update(&purpose.to_le_bytes());
    hasher.update(&index.to_le_bytes());
    let hash = hasher.finalize();
    u64::from_le_bytes(hash.as_bytes()[..8].try_into().expect("8 bytes"))
}

#[derive(Debug)]
enum Event {
    /// Agent `agent` starts and joins through `bootstrap` (none: the first agent).
    Start {
        agent: usize,
        bootstrap: Vec<usize>,
    },
    /// A join that failed is tried again (as `join_network` does until its timeout).
    Rejoin {
        agent: usize,
    },
    /// One side of a link learns that the connection is up.
    Connected {
        link: usize,
        side: usize,
        bootstrap: bool,
    },
    DialFailed {
        agent: usize,
        addr: SocketAddr,
        peer: Option<AgentId>,
        bootstrap: bool,
        kind: ErrorKind,
    },
    /// A frame arrives at side `to` of `link`.
    Frame {
        link: usize,
        to: usize,
        frame: Outgoing,
    },
    /// Side `side` of `link` learns that the connection ended.
    Closed {
        link: usize,
        side: usize,
        by_peer: bool,
    },
    /// Side `side` of `link` closes it (after its grace).
    Close {
        link: usize,
        side: usize,
    },
    Timer {
        agent: usize,
        generation: u64,
    },
    Publish {
        publisher: usize,
        topic: usize,
    },
    Kill {
        agents: Vec<usize>,
    },
    Partition {
        side_a: usize,
    },
    Heal,
    /// Counts the agents short of neighbours (5 s after a fault).
    Census,
    /// The first holder creates the task list.
    ListCreate {
        agent: usize,
    },
    /// A holder joins the list by id.
    ListJoin {
        agent: usize,
    },
    /// Every live holder adds a task; one on each side of a partition claims the first task.
    ListEdits,
    /// A holder publishes a sync message (an answer, or its full state).
    ListSend {
        agent: usize,
        message: SyncMessage,
    },
    /// A holder's anti-entropy period or a new neighbour: it sends its full state.
    ListFullState {
        agent: usize,
        periodic: bool,
    },
    /// Are the replicas the same yet?
    ListCheck,
}

#[derive(Debug)]
struct Scheduled {
    at: u64,
    seq: u64,
    event: Event,
}

impl PartialEq for Scheduled {
    fn eq(&self, other: &Self) -> bool {
        (self.at, self.seq) == (other.at, other.seq)
    }
}
impl Eq for Scheduled {}
impl PartialOrd for Scheduled {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Scheduled {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        (self.at, self.seq).cmp(&(other.at, other.seq))
    }
}

/// The name of topic number `topic`.
fn topic_name(config: &Config, topic: usize) -> String {
    if config.topics == 0 {
        TOPIC.to_owned()
    } else if topic == config.topics {
        format!("{TOPIC}/hot")
    } else {
        format!("{TOPIC}/{topic}")
    }
}

struct SimAgent {
    id: AgentId,
    addr: SocketAddr,
    incarnation: u64,
    node: Option<Node>,
    context: Arc<AgentContext>,
    /// Its subscriptions (one per topic it subscribes to).
    subscriptions: Vec<Subscription>,
    events: EventStream,
    /// Connection id → (link, which side of it this agent is).
    conns: HashMap<u64, (usize, usize)>,
    next_conn: u64,
    timer_at: Option<u64>,
    timer_generation: u64,
    peer_sample: Vec<SocketAddr>,
    started: bool,
    /// Which half of a partition the agent is in.
    side_a: bool,
    /// When it died, if it did.
    died_at: Option<u64>,
    bootstrap: Vec<SocketAddr>,
    joined: bool,
    /// The key it signs with (publishers and task list holders).
    signer: Option<Keypair>,
    /// The sequence number of its last envelope, and of its last on each topic it published on.
    sequence: u64,
    last_on_topic: HashMap<String, u64>,
    /// Its task list replica and subscription, once it holds the list.
    list: Option<(Replica, Subscription)>,
}

struct SimLink {
    ends: [usize; 2],
    /// Each side's connection id, once that side knows of the connection (and until it ends).
    conn: [Option<u64>; 2],
    /// Each side adopted the connection (its driver would run a reader that reports the end).
    adopted: [bool; 2],
    /// Carries frames (false once closed, broken by a crash or cut by a partition).
    open: bool,
    /// A crash or a partition broke it (rather than an end closing it).
    broken: bool,
    /// What the dialer (side 0) expected there, and whether it dialed as a bootstrap.
    expected: Option<AgentId>,
    bootstrap: bool,
    one_way: u64,
    /// When the last frame sent from each side arrives (each direction is in order).
    last_arrival: [u64; 2],
}

struct Published {
    publisher: usize,
    topic: usize,
    at: u64,
    /// The publisher's side, if a partition was on when it published.
    cut_off: Option<bool>,
}

struct World {
    config: Config,
    now: u64,
    end: u64,
    base: Instant,
    queue: BinaryHeap<Reverse<Scheduled>>,
    seq: u64,
    events: u64,
    agents: Vec<SimAgent>,
    by_addr: HashMap<SocketAddr, usize>,
    links: Vec<SimLink>,
    latencies: HashMap<(usize, usize), u64>,
    net_rng: StdRng,
    keys: HashMap<AgentId, PublicKey>,
    publishers: Vec<usize>,
    /// Each topic's subscribers (empty without `topics`: every agent subscribes to the one).
    topic_subscribers: Vec<BTreeSet<usize>>,
    /// What the task list's id grants (its topic and key), its holders (the first creates it),
    /// and draws for task and seal nonces.
    list_channel: ListChannel,
    holders: Vec<usize>,
    /// The hot topic's publisher, if there is one.
    hot_publisher: Option<usize>,
    list_rng: StdRng,
    /// When the replicas must start to converge (the heal, or the edits), and when they did.
    list_since: Option<u64>,
    list_converged: Option<u64>,
    list_messages: u64,
    /// Envelopes already verified (by content hash), and whether they passed.
    verified: HashMap<[u8; 32], bool>,
    /// The content hashes of the publishers' envelopes with their topics, and the copies of them
    /// their topics' subscribers received (task list traffic, and copies relayed by agents not
    /// subscribed to the topic, are not part of the redundancy figure).
    measured: HashMap<[u8; 32], usize>,
    copies: u64,
    published: Vec<Published>,
    /// Per published message: when each agent got it (nanoseconds), indexed by agent.
    received: Vec<HashMap<usize, u64>>,
    hops: Vec<u32>,
    deliveries: u64,
    double_deliveries: u64,
    /// Origin frames received from an agent other than the message's publisher.
    origin_relayed: u64,
    bytes_sent: u64,
    partitioned: bool,
    last_fault: Option<u64>,
    below_after_faults: Option<usize>,
    components_after_faults: Option<usize>,
    /// From 5 s after the last join until publishing starts.
    idle: (u64, u64),
    neighbours_lost_idle: u64,
}

impl World {
    fn new(config: &Config) -> Result<Self> {
        let base = Instant::now();
        let mut agents = Vec::with_capacity(config.agents);
        let mut by_addr = HashMap::new();
        let mut keys = HashMap::new();
        let mut pick = StdRng::seed_from_u64(sub_seed(config.seed, 2, 0));
        let publishers: Vec<usize> =
            rand::seq::index::sample(&mut pick, config.agents, config.publishers).into_vec();
        let mut pick = StdRng::seed_from_u64(sub_seed(config.seed, 7, 0));
        let holders: Vec<usize> =
            rand::seq::index::sample(&mut pick, config.agents, config.tasklist_holders).into_vec();
        let mut list_id = [0u8; 32];
        pick.fill(&mut list_id);
        let mut pick = StdRng::seed_from_u64(sub_seed(config.seed, 9, 0));
        let mut topic_subscribers: Vec<BTreeSet<usize>> = (0..config.topics)
            .map(|_| {
                rand::seq::index::sample(&mut pick, config.agents, config.subscribers)
                    .into_iter()
                    .collect()
            })
            .collect();
        // The hot topic is topic number `topics`; its first subscriber publishes on it.
        let hot_publisher = config.hot.map(|(subscribers, _)| {
            let mut pick = StdRng::seed_from_u64(sub_seed(config.seed, 10, 0));
            let chosen = rand::seq::index::sample(&mut pick, config.agents, subscribers);
            let publisher = chosen.index(0);
            topic_subscribers.push(chosen.into_iter().collect());
            publisher
        });
        for i in 0..config.agents {
            let mut seed = [0u8; 32];
            let mut rng = StdRng::seed_from_u64(sub_seed(config.seed, 1, i as u64));
            rng.fill(&mut seed);
            let key = Keypair::from_seed(seed)?;
            let id = key.public_key().agent_id();
            keys.insert(id, key.public_key().clone());
            let signer =
                (publishers.contains(&i) || holders.contains(&i) || hot_publisher == Some(i))
                    .then_some(key);
            let addr = SocketAddr::new(
                IpAddr::V4(Ipv4Addr::from(0x0a00_0000u32 + 1 + i as u32)),
                PORT,
            );
            by_addr.insert(addr, i);
            let registry = Arc::new(Registry::default());
            let mut subscriptions = Vec::new();
            if config.topics == 0 {
                subscriptions.push(registry.subscribe(TOPIC, usize::MAX >> 1)?);
            }
            for (topic, subscribers) in topic_subscribers.iter().enumerate() {
                if subscribers.contains(&i) {
                    let name = topic_name(config, topic);
                    subscriptions.push(registry.subscribe(&name, usize::MAX >> 1)?);
                }
            }
            let context = Arc::new(AgentContext::new(Arc::new(Counters::default()), registry));
            let events = context.events.subscribe(usize::MAX >> 1);
            agents.push(SimAgent {
                id,
                addr,
                incarnation: rng.random(),
                node: None,
                context,
                subscriptions,
                events,
                conns: HashMap::new(),
                next_conn: 0,
                timer_at: None,
                timer_generation: 0,
                peer_sample: Vec::new(),
                started: false,
                side_a: false,
                died_at: None,
                bootstrap: Vec::new(),
                joined: false,
                signer,
                sequence: 0,
                last_on_topic: HashMap::new(),
                list: None,
            });
        }
        Ok(Self {
            config: config.clone(),
            now: 0,
            end: u64::MAX,
            base,
            queue: BinaryHeap::new(),
            seq: 0,
            events: 0,
            agents,
            by_addr,
            links: Vec::new(),
            latencies: HashMap::new(),
            net_rng: StdRng::seed_from_u64(sub_seed(config.seed, 3, 0)),
            keys,
            publishers,
            topic_subscribers,
            list_channel: ListChannel::new(&ListId(list_id)),
            holders,
            hot_publisher,
            list_rng: StdRng::seed_from_u64(sub_seed(config.seed, 8, 0)),
            list_since: None,
            list_converged: None,
            list_messages: 0,
            verified: HashMap::new(),
            measured: HashMap::new(),
            copies: 0,
            published: Vec::new(),
            received: Vec::new(),
            hops: Vec::new(),
            deliveries: 0,
            double_deliveries: 0,
            origin_relayed: 0,
            bytes_sent: 0,
            partitioned: false,
            last_fault: None,
            below_after_faults: None,
            components_after_faults: None,
            idle: (0, 0),
            neighbours_lost_idle: 0,
        })
    }

    fn instant(&self, at: u64) -> Instant {
        self.base + Duration::from_nanos(at)
    }

    fn schedule(&mut self, at: u64, event: Event) {
        self.seq += 1;
        self.queue.push(Reverse(Scheduled {
            at: at.max(self.now),
            seq: self.seq,
            event,
        }));
    }

    /// Joins, then publishing, then the faults, then the end.
    fn schedule_scenario(&mut self) {
        let config = self.config.clone();
        let gap = nanos(config.join_gap);
        let mut rng = StdRng::seed_from_u64(sub_seed(config.seed, 4, 0));
        for agent in 0..config.agents {
            // Through agent 0 (the network's first) and a random earlier one, as a deployment
            // with one well-known bootstrap node and word of mouth would.
            let mut bootstrap = Vec::new();
            if agent > 0 {
                bootstrap.push(0);
                let other = rng.random_range(0..agent);
                if other != 0 {
                    bootstrap.push(other);
                }
            }
            self.schedule(agent as u64 * gap, Event::Start { agent, bootstrap });
        }
        let publish_start = config.agents as u64 * gap + nanos(config.settle);
        self.idle = (config.agents as u64 * gap + 5 * SECOND, publish_start);
        let period = (SECOND as f64 / config.rate.max(1e-9)) as u64;
        for (k, &publisher) in self.publishers.clone().iter().enumerate() {
            // Publishers out of step with each other, as independent ones are.
            let offset = period * k as u64 / config.publishers.max(1) as u64;
            let topic = k % config.topics.max(1);
            for index in 0..config.messages {
                let at = publish_start + offset + index as u64 * period;
                self.schedule(at, Event::Publish { publisher, topic });
            }
        }
        let publish_end = publish_start + config.messages as u64 * period;
        if let (Some((_, rate)), Some(publisher)) = (config.hot, self.hot_publisher) {
            // As long as the others publish, at its own rate.
            let hot_period = (SECOND as f64 / rate) as u64;
            let mut at = publish_start;
            while at < publish_end {
                let topic = config.topics;
                self.schedule(at, Event::Publish { publisher, topic });
                at += hot_period;
            }
        }
        let mut last = publish_end;
        if let Some(&creator) = self.holders.first() {
            self.schedule(publish_start, Event::ListCreate { agent: creator });
            let holders = self.holders.len() as u64;
            for (k, &agent) in self.holders.clone().iter().enumerate().skip(1) {
                // Joins spread over a second, as agents given the id at once would.
                let at = publish_start + SECOND + SECOND * k as u64 / holders;
                self.schedule(at, Event::ListJoin { agent });
            }
            // Inside the partition if there is one (both sides edit), else once all joined.
            let edits = match config.partition {
                Some((_, after, duration)) => {
                    publish_start + nanos(after) + nanos(duration.min(Duration::from_secs(2)) / 2)
                }
                None => publish_start + 3 * SECOND,
            };
            self.schedule(edits, Event::ListEdits);
            last = last.max(edits);
        }
        if let Some((fraction, after)) = config.kill {
            let candidates: Vec<usize> = (0..config.agents)
                .filter(|a| !self.publishers.contains(a))
                .collect();
            let n = ((candidates.len() as f64) * fraction).round() as usize;
            let mut victims: Vec<usize> =
                rand::seq::index::sample(&mut rng, candidates.len(), n.min(candidates.len()))
                    .into_iter()
                    .map(|i| candidates[i])
                    .collect();
            victims.sort_unstable();
            let at = publish_start + nanos(after);
            self.schedule(at, Event::Kill { agents: victims });
            self.schedule(at + 5 * SECOND, Event::Census);
            last = last.max(at + 5 * SECOND);
        }
        if let Some((fraction, after, duration)) = config.partition {
            let side_a = ((config.agents as f64) * fraction).round() as usize;
            let at = publish_start + nanos(after);
            self.schedule(at, Event::Partition { side_a });
            let heal = at + nanos(duration);
            self.schedule(heal, Event::Heal);
            self.schedule(heal + 5 * SECOND, Event::Census);
            last = last.max(heal + 5 * SECOND);
        }
        self.end = last + nanos(config.drain);
    }

    fn dispatch(&mut self, event: Event) {
        match event {
            Event::Start { agent, bootstrap } => self.start(agent, bootstrap),
            Event::Rejoin { agent } => {
                if !self.agents[agent].joined {
                    let bootstrap = self.agents[agent].bootstrap.clone();
                    self.join(agent, bootstrap);
                }
            }
            Event::Connected {
                link,
                side,
                bootstrap,
            } => self.connected(link, side, bootstrap),
            Event::DialFailed {
                agent,
                addr,
                peer,
                bootstrap,
                kind,
            } => {
                let error = Error::new(kind, format!("cannot connect to {addr} (simulated)"));
                self.input(
                    agent,
                    Input::DialFailed {
                        addr,
                        peer,
                        bootstrap,
                        error,
                    },
                );
            }
            Event::Frame { link, to, frame } => match frame {
                Outgoing::Gossip(frame) => self.frame(link, to, &frame),
                Outgoing::Directory(body) => self.directory_frame(link, to, &body),
                // Cards are the driver's: the simulated node never sends one.
                Outgoing::Card(_) => {}
                Outgoing::Origin(body) => self.origin_frame(link, to, &body),
            },
            Event::Closed {
                link,
                side,
                by_peer,
            } => self.closed(link, side, by_peer),
            Event::Close { link, side } => self.close(link, side),
            Event::Timer { agent, generation } => {
                let a = &mut self.agents[agent];
                if a.timer_generation == generation {
                    a.timer_at = None;
                    let now = self.instant(self.now);
                    if let Some(node) = self.agents[agent].node.as_mut() {
                        node.handle_timeout(now);
                    }
                    self.after_step(agent);
                }
            }
            Event::Publish { publisher, topic } => self.publish(publisher, topic),
            Event::Kill { agents } => {
                self.last_fault = Some(self.now);
                for agent in agents {
                    self.kill(agent);
                }
            }
            Event::Partition { side_a } => {
                self.last_fault = Some(self.now);
                self.partitioned = true;
                for (i, agent) in self.agents.iter_mut().enumerate() {
                    agent.side_a = i < side_a;
                }
                for link in 0..self.links.len() {
                    let [a, b] = self.links[link].ends;
                    if self.links[link].open && !self.reachable(a, b) {
                        self.break_link(link);
                    }
                }
            }
            Event::Heal => {
                self.last_fault = Some(self.now);
                self.partitioned = false;
                if !self.holders.is_empty() {
                    self.list_since = Some(self.now);
                    self.list_converged = None;
                    self.schedule(self.now, Event::ListCheck);
                }
            }
            Event::Census => {
                let below = self
                    .agents
                    .iter()
                    .filter(|a| a.node.is_some() && a.context.neighbours() < 3)
                    .count();
                self.below_after_faults = Some(below);
                let live: Vec<usize> = (0..self.agents.len())
                    .filter(|&i| self.agents[i].node.is_some())
                    .collect();
                self.components_after_faults = Some(self.components(&live));
            }
            Event::ListCreate { agent } => {
                if self.hold_list(agent, "sim") {
                    self.send_full_state(agent);
                    for i in 0..LIST_TASKS {
                        self.add_task(agent, &format!("task {i}"));
                    }
                }
            }
            Event::ListJoin { agent } => {
                if self.hold_list(agent, "") {
                    self.list_broadcast(agent, &SyncMessage::Request);
                }
            }
            Event::ListEdits => self.list_edits(),
            Event::ListSend { agent, message } => self.list_broadcast(agent, &message),
            Event::ListFullState { agent, periodic } => {
                if self.agents[agent].node.is_none() {
                    return;
                }
                if periodic {
                    let at = self.now + nanos(replica::ANTI_ENTROPY_PERIOD);
                    self.schedule(at, Event::ListFullState { agent, periodic });
                }
                if self.agents[agent].context.is_joined() {
                    self.send_full_state(agent);
                }
            }
            Event::ListCheck => {
                if self.list_converged.is_none() {
                    if self.list_states_agree() {
                        self.list_converged = Some(self.now);
                    } else if self.now < self.end {
                        self.schedule(self.now + nanos(LIST_CHECK), Event::ListCheck);
                    }
                }
            }
        }
    }

    /// A live agent starts to hold the list (named `name`, "" when joining by id): its replica,
    /// its subscription and its anti-entropy period.
    fn hold_list(&mut self, agent: usize, name: &str) -> bool {
        let topic = self.list_channel.topic().to_owned();
        let a = &mut self.agents[agent];
        if a.node.is_none() {
            return false;
        }
        let Ok(subscription) = a.context.registry.subscribe(&topic, usize::MAX >> 1) else {
            return false;
        };
        a.list = Some((
            Replica::new(name.into(), TaskListState::default()),
            subscription,
        ));
        let at = self.now + nanos(replica::ANTI_ENTROPY_PERIOD);
        self.schedule(
            at,
            Event::ListFullState {
                agent,
                periodic: true,
            },
        );
        true
    }

    /// The list's timestamps: simulated milliseconds.
    fn list_now_ms(&self) -> u64 {
        self.now / 1_000_000 + 1
    }

    fn add_task(&mut self, agent: usize, title: &str) {
        let (now_ms, nonce) = (self.list_now_ms(), self.list_rng.random());
        let a = &mut self.agents[agent];
        let me = a.id;
        let Some((replica, _)) = a.list.as_mut() else {
            return;
        };
        let (_, delta) = replica.state.add_task(title, "", me, now_ms, nonce);
        let message = replica.delta(delta);
        self.list_broadcast(agent, &message);
    }

    fn send_full_state(&mut self, agent: usize) {
        let Some((replica, _)) = self.agents[agent].list.as_ref() else {
            return;
        };
        for message in replica.full_state() {
            self.list_broadcast(agent, &message);
        }
    }

    /// Every live holder adds a task; the first live holder on each side (or the first two,
    /// without a partition) claim the same task at the same instant: the CRDT must agree on
    /// one winner everywhere.
    fn list_edits(&mut self) {
        let live: Vec<usize> = self.live_holders().map(|(h, _)| h).collect();
        for &agent in &live {
            self.add_task(agent, &format!("added by agent {agent}"));
        }
        let claimants: Vec<usize> = if self.partitioned {
            [true, false]
                .iter()
                .filter_map(|&side| {
                    live.iter()
                        .copied()
                        .find(|&h| self.agents[h].side_a == side)
                })
                .collect()
        } else {
            live.iter().copied().take(2).collect()
        };
        let now_ms = self.list_now_ms();
        for agent in claimants {
            let a = &mut self.agents[agent];
            let me = a.id;
            let Some((replica, _)) = a.list.as_mut() else {
                continue;
            };
            let Some(first) = replica.state.tasks().first().map(|task| task.id) else {
                continue;
            };
            if let Ok(delta) = replica.state.claim(&first, me, now_ms) {
                let message = replica.delta(delta);
                self.list_broadcast(agent, &message);
            }
        }
        if self.config.partition.is_none() {
            self.list_since = Some(self.now);
            self.schedule(self.now, Event::ListCheck);
        }
    }

    /// The holders that are alive and hold the list, with their replicas.
    fn live_holders(&self) -> impl Iterator<Item = (usize, &Replica)> + '_ {
        self.holders.iter().filter_map(|&h| {
            let a = &self.agents[h];
            a.node.as_ref()?;
            a.list.as_ref().map(|(replica, _)| (h, replica))
        })
    }

    /// Every live holder has a named replica, all in the same state.
    fn list_states_agree(&self) -> bool {
        let mut replicas = self.live_holders().map(|(_, replica)| replica);
        let Some(first) = replicas.next() else {
            return true;
        };
        !first.name.is_empty()
            && replicas.all(|replica| replica.name == first.name && replica.state == first.state)
    }

    fn list_broadcast(&mut self, agent: usize, message: &SyncMessage) {
        let payload = self.list_channel.seal(message, self.list_rng.random());
        let topic = self.list_channel.topic().to_owned();
        if let Some(envelope) = self.seal(agent, &topic, Bytes::from(payload)) {
            self.list_messages += 1;
            self.input(agent, Input::Broadcast(envelope));
        }
    }

    /// Signs one message of `agent`'s with its next sequence number (as the signer thread
    /// does: the agent takes part in the topic from now on).
    fn seal(&mut self, agent: usize, topic: &str, payload: Bytes) -> Option<Bytes> {
        let a = &mut self.agents[agent];
        let signer = a.signer.as_ref()?;
        a.context.registry.traffic().take_part(topic, false);
        a.sequence += 1;
        let item = Item {
            timestamp_ms: 0,
            payload,
        };
        wire::seal(signer, a.sequence, topic, vec![item]).ok()
    }

    fn reachable(&self, a: usize, b: usize) -> bool {
        !self.partitioned || self.agents[a].side_a == self.agents[b].side_a
    }

    fn one_way(&mut self, a: usize, b: usize) -> u64 {
        let key = (a.min(b), a.max(b));
        if let Some(&d) = self.latencies.get(&key) {
            return d;
        }
        let (lo, hi) = (nanos(self.config.latency.0), nanos(self.config.latency.1));
        let mut rng = StdRng::seed_from_u64(sub_seed(
            self.config.seed,
            5,
            (key.0 as u64) << 32 | key.1 as u64,
        ));
        let d = if hi > lo {
            rng.random_range(lo..=hi)
        } else {
            lo
        };
        self.latencies.insert(key, d);
        d
    }

    fn start(&mut self, agent: usize, bootstrap: Vec<usize>) {
        let a = &self.agents[agent];
        let rng = StdRng::seed_from_u64(sub_seed(self.config.seed, 6, agent as u64));
        let node = Node::new(
            a.id,
            a.incarnation,
            a.addr,
            Arc::clone(&a.context),
            rng,
            self.instant(self.now),
        );
        let Ok(node) = node else {
            return;
        };
        let bootstrap: Vec<SocketAddr> = bootstrap.iter().map(|&b| self.agents[b].addr).collect();
        let a = &mut self.agents[agent];
        a.node = Some(node);
        a.started = true;
        a.bootstrap = bootstrap.clone();
        self.join(agent, bootstrap);
    }

    fn join(&mut self, agent: usize, bootstrap: Vec<SocketAddr>) {
        self.input(
            agent,
            Input::Join {
                waiter: 1,
                bootstrap,
                patience: Duration::from_secs(5),
            },
        );
    }

    /// Feeds an input to a live agent's node and carries out what it asks for.
    fn input(&mut self, agent: usize, input: Input) {
        let now = self.instant(self.now);
        let Some(node) = self.agents[agent].node.as_mut() else {
            return;
        };
        node.handle(input, now);
        self.after_step(agent);
    }

    fn after_step(&mut self, agent: usize) {
        loop {
            let Some(action) = self.agents[agent].node.as_mut().and_then(Node::poll_action) else {
                break;
            };
            self.act(agent, action);
        }
        self.collect_deliveries(agent);
        self.collect_list_messages(agent);
        if let Some(events) = self.agents[agent].events.try_next_batch(usize::MAX) {
            let idle = (self.idle.0..self.idle.1).contains(&self.now);
            for event in &events {
                if idle && matches!(event, AgentEvent::PeerLeft(_)) {
                    self.neighbours_lost_idle += 1;
                }
            }
            if self.agents[agent].list.is_some() && events.iter().any(prompts_full_state) {
                let periodic = false;
                self.schedule(self.now, Event::ListFullState { agent, periodic });
            }
        }
        let deadline = self.agents[agent]
            .node
            .as_ref()
            .and_then(Node::poll_timeout)
            .map(|at| nanos(at.saturating_duration_since(self.base)));
        let a = &mut self.agents[agent];
        if deadline != a.timer_at {
            a.timer_at = deadline;
            a.timer_generation += 1;
            if let Some(at) = deadline {
                let generation = a.timer_generation;
                self.schedule(at, Event::Timer { agent, generation });
            }
        }
    }

    fn act(&mut self, agent: usize, action: Action) {
        match action {
            Action::Send { conn_id, frame } => {
                if let Some(&(link, side)) = self.agents[agent].conns.get(&conn_id) {
                    self.send(link, side, frame);
                }
            }
            Action::Dial {
                addr,
                expected,
                bootstrap,
                timeout,
            } => self.dial(agent, addr, expected, bootstrap, timeout),
            Action::Adopt { conn_id } => {
                if let Some(&(link, side)) = self.agents[agent].conns.get(&conn_id) {
                    self.links[link].adopted[side] = true;
                }
            }
            Action::Close { conn_id, .. } => {
                if let Some(&(link, side)) = self.agents[agent].conns.get(&conn_id) {
                    self.close(link, side);
                }
            }
            Action::CloseAfterGrace { conn_id, .. } => {
                if let Some(&(link, side)) = self.agents[agent].conns.get(&conn_id) {
                    self.schedule(self.now + nanos(CLOSE_GRACE), Event::Close { link, side });
                }
            }
            Action::JoinDone { outcome, .. } => match outcome {
                Ok(()) => self.agents[agent].joined = true,
                Err(_) => self.schedule(self.now + SECOND, Event::Rejoin { agent }),
            },
            Action::PeerSample(sample) => self.agents[agent].peer_sample = sample,
            // Direct connections are not simulated: nobody asks where an agent listens.
            Action::Located { .. } | Action::Found { .. } => {}
        }
    }

    fn dial(
        &mut self,
        agent: usize,
        addr: SocketAddr,
        expected: Option<AgentId>,
        bootstrap: bool,
        timeout: Duration,
    ) {
        let fail = |kind| Event::DialFailed {
            agent,
            addr,
            peer: expected,
            bootstrap,
            kind,
        };
        let target = self.by_addr.get(&crate::net::dialable(addr)).copied();
        let Some(target) =
            target.filter(|&t| self.agents[t].node.is_some() && self.reachable(agent, t))
        else {
            self.schedule(self.now + nanos(timeout), fail(ErrorKind::Timeout));
            return;
        };
        let one_way = self.one_way(agent, target);
        let rtt = 2 * one_way;
        if 2 * rtt > nanos(timeout) {
            self.schedule(self.now + nanos(timeout), fail(ErrorKind::Timeout));
            return;
        }
        if expected.is_some_and(|id| id != self.agents[target].id) {
            self.schedule(self.now + rtt, fail(ErrorKind::Protocol));
            return;
        }
        let link = self.links.len();
        self.links.push(SimLink {
            ends: [agent, target],
            conn: [None, None],
            adopted: [false, false],
            open: true,
            broken: false,
            expected,
            bootstrap,
            one_way,
            last_arrival: [0, 0],
        });
        self.schedule(
            self.now + rtt + one_way,
            Event::Connected {
                link,
                side: 1,
                bootstrap: false,
            },
        );
        self.schedule(
            self.now + 2 * rtt,
            Event::Connected {
                link,
                side: 0,
                bootstrap,
            },
        );
    }

    fn connected(&mut self, link: usize, side: usize, bootstrap: bool) {
        let me = self.links[link].ends[side];
        let other = self.links[link].ends[1 - side];
        if self.agents[me].node.is_none() {
            return;
        }
        if self.links[link].broken || self.agents[other].node.is_none() {
            // The handshake could not finish: the dialer's times out.
            if side == 0 {
                let l = &self.links[link];
                let event = Event::DialFailed {
                    agent: me,
                    addr: self.agents[other].addr,
                    peer: l.expected,
                    bootstrap: l.bootstrap,
                    kind: ErrorKind::Timeout,
                };
                self.schedule(self.now, event);
            }
            return;
        }
        let a = &mut self.agents[me];
        a.next_conn += 1;
        let conn_id = a.next_conn;
        a.conns.insert(conn_id, (link, side));
        self.links[link].conn[side] = Some(conn_id);
        let o = &self.agents[other];
        let connected = Connected {
            conn_id,
            peer: o.id,
            incarnation: o.incarnation,
            listen: o.addr,
            peers: o.peer_sample.clone(),
            remote: o.addr,
            bootstrap,
        };
        if !self.links[link].open {
            // The other end gave up on it already: this end hears so next.
            self.schedule(
                self.now,
                Event::Closed {
                    link,
                    side,
                    by_peer: true,
                },
            );
        }
        self.input(me, Input::Connected(connected));
    }

    fn send(&mut self, link: usize, side: usize, frame: Outgoing) {
        let l = &self.links[link];
        if !l.open {
            return;
        }
        let one_way = l.one_way;
        let mut arrival = self.now + one_way;
        while self.config.loss > 0.0 && self.net_rng.random_bool(self.config.loss) {
            arrival += 3 * one_way; // one retransmission timeout: 1.5 round trips
        }
        let l = &mut self.links[link];
        arrival = arrival.max(l.last_arrival[side]);
        l.last_arrival[side] = arrival;
        self.bytes_sent += frame.len() as u64 + 5;
        self.schedule(
            arrival,
            Event::Frame {
                link,
                to: 1 - side,
                frame,
            },
        );
    }

    /// A directory message arrives, decoded as the reader decodes it.
    fn directory_frame(&mut self, link: usize, to: usize, body: &[u8]) {
        let Some((me, peer, _)) = self.arrive(link, to, body.len()) else {
            return;
        };
        let Ok(Incoming::Directory(message)) = decode_directory(body) else {
            panic!("simulated agent {me} got an invalid directory message");
        };
        self.input(me, Input::Directory { peer, message });
    }

    /// An origin frame arrives, decoded as the reader decodes it.
    fn origin_frame(&mut self, link: usize, to: usize, body: &[u8]) {
        let Some((me, peer, _)) = self.arrive(link, to, body.len()) else {
            return;
        };
        let Ok(origin) = crate::wire::parse_origin(body) else {
            panic!("simulated agent {me} got an invalid origin frame");
        };
        let publisher = origin
            .items
            .first()
            .and_then(|item| item.payload.get(..8))
            .and_then(|b| <[u8; 8]>::try_from(b).ok())
            .map(u64::from_le_bytes)
            .and_then(|number| self.published.get(number as usize))
            .map(|published| self.agents[published.publisher].id);
        self.origin_relayed += u64::from(publisher.is_some_and(|publisher| publisher != peer));
        self.input(me, Input::Origin { peer, origin });
    }

    /// A frame of `len` bytes reaches side `to` of `link`: that agent, the peer it came from and
    /// the connection, with the bytes counted as the reader counts them (frame header
    /// included); `None` if that side's connection or node is gone.
    fn arrive(&self, link: usize, to: usize, len: usize) -> Option<(usize, AgentId, u64)> {
        let me = self.links[link].ends[to];
        let conn_id = self.links[link].conn[to]?;
        self.agents[me].node.as_ref()?;
        let peer = self.agents[self.links[link].ends[1 - to]].id;
        let counters = &self.agents[me].context.counters;
        counters.add(&counters.bytes_in, len as u64 + 5);
        Some((me, peer, conn_id))
    }

    fn frame(&mut self, link: usize, to: usize, frame: &[u8]) {
        let Some((me, peer, conn_id)) = self.arrive(link, to, frame.len()) else {
            return;
        };
        let (keys, verified) = (&self.keys, &mut self.verified);
        let (measured, copies) = (&self.measured, &mut self.copies);
        let subscribers = &self.topic_subscribers;
        let received = decode_gossip(frame, |publisher, id, envelope| {
            let wanted = measured.get(id).is_some_and(|&topic| {
                subscribers
                    .get(topic)
                    .is_none_or(|subscribers| subscribers.contains(&me))
            });
            *copies += u64::from(wanted);
            let ok = match verified.get(id) {
                Some(&ok) => ok,
                None => {
                    let ok = keys
                        .get(&publisher)
                        .is_some_and(|key| envelope.check(key).is_ok());
                    verified.insert(*id, ok);
                    ok
                }
            };
            if ok {
                Ok(())
            } else {
                Err(Rejection::BadSignature)
            }
        });
        let Ok(received) = received else {
            // Honest simulated agents send nothing invalid: a bug in the node or the model.
            panic!("simulated agent {me} got an invalid frame on connection {conn_id}");
        };
        let rtt = Duration::from_nanos(2 * self.links[link].one_way);
        self.input(
            me,
            Input::Frame {
                peer,
                received,
                rtt,
            },
        );
    }

    /// Side `side` closes the link: the other side hears after the frames in flight.
    fn close(&mut self, link: usize, side: usize) {
        let l = &mut self.links[link];
        if l.open {
            l.open = false;
            let at = (self.now + l.one_way).max(l.last_arrival[side]);
            self.schedule(
                at,
                Event::Closed {
                    link,
                    side: 1 - side,
                    by_peer: true,
                },
            );
        }
        let l = &self.links[link];
        if l.adopted[side] {
            self.schedule(
                self.now,
                Event::Closed {
                    link,
                    side,
                    by_peer: false,
                },
            );
        } else if let Some(conn_id) = l.conn[side] {
            let me = l.ends[side];
            self.links[link].conn[side] = None;
            self.agents[me].conns.remove(&conn_id);
        }
    }

    /// A crash or a partition broke the link: each live end notices at the idle timeout.
    fn break_link(&mut self, link: usize) {
        self.links[link].open = false;
        self.links[link].broken = true;
        for side in 0..2 {
            self.schedule(
                self.now + nanos(IDLE_TIMEOUT),
                Event::Closed {
                    link,
                    side,
                    by_peer: false,
                },
            );
        }
    }

    fn closed(&mut self, link: usize, side: usize, by_peer: bool) {
        let me = self.links[link].ends[side];
        let Some(conn_id) = self.links[link].conn[side].take() else {
            return;
        };
        self.agents[me].conns.remove(&conn_id);
        let peer = self.agents[self.links[link].ends[1 - side]].id;
        self.input(
            me,
            Input::Closed {
                peer,
                conn_id,
                by_peer,
            },
        );
    }

    fn kill(&mut self, agent: usize) {
        let a = &mut self.agents[agent];
        if a.node.take().is_none() {
            return;
        }
        a.died_at = Some(self.now);
        a.conns.clear();
        for link in 0..self.links.len() {
            let l = &self.links[link];
            if l.ends.contains(&agent) && l.open {
                self.break_link(link);
            }
        }
    }

    fn publish(&mut self, publisher: usize, topic: usize) {
        if self.agents[publisher].node.is_none() {
            return;
        }
        let number = self.published.len() as u64;
        let mut payload = vec![0u8; self.config.payload.max(8)];
        payload[..8].copy_from_slice(&number.to_le_bytes());
        let name = topic_name(&self.config, topic);
        let payload = Bytes::from(payload);
        let Some(envelope) = self.seal(publisher, &name, payload.clone()) else {
            return;
        };
        let origin = self.config.origin_frames.then(|| {
            let a = &mut self.agents[publisher];
            let prev = a.last_on_topic.insert(name.clone(), a.sequence);
            let item = Item {
                timestamp_ms: 0,
                payload,
            };
            wire::encode_origin(&name, a.sequence, prev, &[item]).map(Bytes::from)
        });
        self.measured
            .insert(*blake3::hash(&envelope).as_bytes(), topic);
        let cut_off = self.partitioned.then_some(self.agents[publisher].side_a);
        self.published.push(Published {
            publisher,
            topic,
            at: self.now,
            cut_off,
        });
        self.received.push(HashMap::new());
        if let Some(Ok(body)) = origin {
            let swarm = wire::topic_swarm(&name);
            self.input(publisher, Input::SendOrigin { swarm, body });
        }
        self.input(publisher, Input::Broadcast(envelope));
    }

    /// Feeds what a holder's list subscription got to its replica; answers go out next.
    fn collect_list_messages(&mut self, agent: usize) {
        let now = self.instant(self.now);
        let channel = &self.list_channel;
        let a = &mut self.agents[agent];
        let me = a.id;
        let Some((replica, subscription)) = a.list.as_mut() else {
            return;
        };
        let Some(batch) = subscription.try_next_batch(usize::MAX) else {
            return;
        };
        let mut answers = Vec::new();
        for message in batch.iter().filter(|m| m.sender != me) {
            // Honest simulated agents send nothing invalid: a bug in the replica or the model.
            let opened = channel
                .open(&message.payload)
                .expect("a simulated replica sent an invalid sync message");
            let received = replica.receive(opened, now);
            answers.extend(received.answer);
        }
        for message in answers {
            self.schedule(self.now, Event::ListSend { agent, message });
        }
    }

    fn collect_deliveries(&mut self, agent: usize) {
        let batch: Vec<_> = self.agents[agent]
            .subscriptions
            .iter()
            .filter_map(|subscription| subscription.try_next_batch(usize::MAX))
            .flatten()
            .collect();
        for message in batch {
            let Some(number) = message
                .payload
                .get(..8)
                .and_then(|b| <[u8; 8]>::try_from(b).ok())
                .map(u64::from_le_bytes)
            else {
                continue;
            };
            let Some(got) = self.received.get_mut(number as usize) else {
                continue;
            };
            if got.insert(agent, self.now).is_none() {
                self.deliveries += 1;
                self.hops.push(message.hops);
            } else {
                self.double_deliveries += 1;
            }
        }
    }

    fn report(&self) -> Report {
        let total = |counter: &dyn Fn(&Counters) -> &std::sync::atomic::AtomicU64| {
            self.agents
                .iter()
                .map(|a| counter(&a.context.counters).load(std::sync::atomic::Ordering::Relaxed))
                .sum::<u64>()
        };
        let after_faults = self.last_fault.map(|t| t + 5 * SECOND);
        let (mut pairs, mut delivered) = (0u64, 0u64);
        let (mut pairs_after, mut delivered_after) = (0u64, 0u64);
        let mut latencies: Vec<u64> = Vec::new();
        let mut lost_messages = 0;
        for (number, message) in self.published.iter().enumerate() {
            let got = &self.received[number];
            lost_messages += usize::from(got.is_empty());
            for (agent, a) in self.agents.iter().enumerate() {
                let alive = a.died_at.is_none() && a.started;
                let across = message.cut_off.is_some_and(|side| side != a.side_a);
                let subscribed = self
                    .topic_subscribers
                    .get(message.topic)
                    .is_none_or(|subscribers| subscribers.contains(&agent));
                if agent == message.publisher || !alive || across || !subscribed {
                    continue;
                }
                let late = after_faults.is_none_or(|t| message.at >= t);
                pairs += 1;
                pairs_after += u64::from(late);
                if let Some(&at) = got.get(&agent) {
                    delivered += 1;
                    delivered_after += u64::from(late);
                    latencies.push(at - message.at);
                }
            }
        }
        latencies.sort_unstable();
        let percentile = |p: f64| -> f64 {
            if latencies.is_empty() {
                return 0.0;
            }
            let i = ((latencies.len() as f64 - 1.0) * p).round() as usize;
            latencies[i] as f64 / 1e6
        };
        let live: Vec<usize> = (0..self.agents.len())
            .filter(|&i| self.agents[i].node.is_some())
            .collect();
        let neighbour_counts: Vec<usize> = live
            .iter()
            .map(|&i| self.agents[i].context.neighbours())
            .collect();
        let ratio = |d: u64, p: u64| if p == 0 { 1.0 } else { d as f64 / p as f64 };
        let replicas: Vec<&Replica> = self.live_holders().map(|(_, replica)| replica).collect();
        let mean = |values: &[u64]| {
            let count = values.len().max(1) as f64;
            values.iter().sum::<u64>() as f64 / count
        };
        // Per live agent: bytes received on its own topics, on others, and in all.
        let traffic: Vec<(u64, u64, u64)> = live
            .iter()
            .map(|&i| {
                let context = &self.agents[i].context;
                let read = |counter: &std::sync::atomic::AtomicU64| {
                    counter.load(std::sync::atomic::Ordering::Relaxed)
                };
                let counters = &context.counters;
                (
                    context.registry.traffic().own_bytes_in(),
                    read(&counters.foreign_bytes_in),
                    read(&counters.bytes_in),
                )
            })
            .collect();
        let own: Vec<u64> = traffic.iter().map(|t| t.0).filter(|&own| own > 0).collect();
        let foreign: Vec<u64> = traffic.iter().map(|t| t.1).collect();
        let mut in_over_own: Vec<f64> = traffic
            .iter()
            .filter(|t| t.0 > 0)
            .map(|&(own, _, all)| all as f64 / own as f64)
            .collect();
        in_over_own.sort_unstable_by(f64::total_cmp);
        let (hot_bytes_in_mean, hot_non_subscriber_bytes_max) = match (
            self.config.hot,
            self.topic_subscribers.get(self.config.topics),
        ) {
            (Some(_), Some(hot)) => {
                let name = topic_name(&self.config, self.config.topics);
                let (subscribers, others): (Vec<usize>, Vec<usize>) =
                    live.iter().partition(|i| hot.contains(i));
                let hot_in: Vec<u64> = subscribers
                    .iter()
                    .filter(|&&i| Some(i) != self.hot_publisher)
                    .filter_map(|&i| self.agents[i].context.registry.traffic().get(&name))
                    .map(|stats| stats.bytes_in)
                    .collect();
                let others_foreign = others
                    .iter()
                    .map(|&i| {
                        let counters = &self.agents[i].context.counters;
                        counters
                            .foreign_bytes_in
                            .load(std::sync::atomic::Ordering::Relaxed)
                    })
                    .max()
                    .unwrap_or(0);
                (mean(&hot_in), others_foreign)
            }
            _ => (0.0, 0),
        };
        Report {
            agents: self.agents.len(),
            seed: self.config.seed,
            messages: self.published.len(),
            delivered_ratio: ratio(delivered, pairs),
            delivered_ratio_after_faults: ratio(delivered_after, pairs_after),
            lost_messages,
            p50_ms: percentile(0.5),
            p99_ms: percentile(0.99),
            max_ms: percentile(1.0),
            rmr: if self.deliveries == 0 {
                0.0
            } else {
                self.copies as f64 / self.deliveries as f64 - 1.0
            },
            max_hops: self.hops.iter().copied().max().unwrap_or(0),
            mean_hops: if self.hops.is_empty() {
                0.0
            } else {
                self.hops.iter().map(|&h| f64::from(h)).sum::<f64>() / self.hops.len() as f64
            },
            bytes_per_agent: self.bytes_sent as f64 / self.agents.len() as f64,
            below_3_neighbours: neighbour_counts.iter().filter(|&&n| n < 3).count(),
            min_neighbours: neighbour_counts.iter().copied().min().unwrap_or(0),
            components: self.components(&live),
            below_3_after_faults: self.below_after_faults,
            components_after_faults: self.components_after_faults,
            neighbours_lost_idle: self.neighbours_lost_idle,
            failed_joins: self
                .agents
                .iter()
                .filter(|a| a.node.is_some() && !a.joined)
                .count(),
            min_others_known: live
                .iter()
                .filter_map(|&i| self.agents[i].node.as_ref().map(Node::others_known))
                .min()
                .unwrap_or(0),
            tasklist_replicas: replicas.len(),
            tasklist_tasks: replicas.first().map_or(0, |r| r.state.tasks().len()),
            tasklist_converged_ms: self
                .list_since
                .zip(self.list_converged)
                .map(|(since, at)| (at - since) as f64 / 1e6),
            tasklist_diverged: replicas
                .iter()
                .filter(|r| r.state != replicas[0].state)
                .count(),
            tasklist_messages: self.list_messages,
            own_bytes_in_mean: mean(&own),
            foreign_bytes_in_mean: mean(&foreign),
            in_over_own_p50: in_over_own
                .get(in_over_own.len() / 2)
                .copied()
                .unwrap_or(0.0),
            in_over_own_max: in_over_own.last().copied().unwrap_or(0.0),
            hot_bytes_in_mean,
            hot_non_subscriber_bytes_max,
            double_deliveries: self.double_deliveries,
            origin_frames_out: total(&|c| &c.origin_frames_out),
            origin_frames_in: total(&|c| &c.origin_frames_in),
            origin_delivered: total(&|c| &c.origin_delivered),
            origin_relayed: self.origin_relayed,
            origin_unconfirmed: total(&|c| &c.origin_unconfirmed),
            events: self.events,
            sim_s: self.now as f64 / SECOND as f64,
            wall_s: 0.0,
            peak_rss_mib: 0.0,
        }
    }

    /// Connected components of the live agents' neighbour graph (union-find).
    fn components(&self, live: &[usize]) -> usize {
        let index: HashMap<AgentId, usize> = live
            .iter()
            .enumerate()
            .map(|(k, &i)| (self.agents[i].id, k))
            .collect();
        let mut parent: Vec<usize> = (0..live.len()).collect();
        fn find(parent: &mut [usize], mut x: usize) -> usize {
            while parent[x] != x {
                parent[x] = parent[parent[x]];
                x = parent[x];
            }
            x
        }
        for (k, &i) in live.iter().enumerate() {
            let Some(node) = self.agents[i].node.as_ref() else {
                continue;
            };
            for peer in node.neighbours() {
                if let Some(&j) = index.get(&peer) {
                    let (a, b) = (find(&mut parent, k), find(&mut parent, j));
                    parent[a] = b;
                }
            }
        }
        (0..live.len())
            .filter(|&k| find(&mut parent, k) == k)
            .count()
    }
}

/// Peak resident set size of this process (Linux `VmHWM`), MiB.
fn peak_rss_mib() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|status| {
            status
                .lines()
                .find(|line| line.starts_with("VmHWM:"))
                .and_then(|line| line.split_whitespace().nth(1))
                .and_then(|kb| kb.parse::<f64>().ok())
        })
        .map_or(0.0, |kb| kb / 1024.0)
}
