//! Publish/subscribe: local fan-out to subscriptions, and the group-commit signer.
//!
//! Publishing enqueues; one signer thread takes whatever has accumulated (up to
//! `wire::MAX_BATCH_ITEMS` messages or `wire::MAX_BATCH_BYTES`), signs it as one envelope per
//! topic, delivers each to this agent's own subscribers and hands it to the gossip layer. When
//! nothing is queued a message is signed alone at once; under load one signature covers hundreds
//! of messages. One thread and FIFO order keep each sender's messages on a topic in publish
//! order.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::{SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use tokio::sync::mpsc;

use crate::error::{Error, ErrorKind, Result};
use crate::identity::{AgentId, Keypair};
use crate::queue::BoundedQueue;
use crate::stats::{Counters, TopicTraffic};
use crate::wire::{self, Item, MAX_BATCH_BYTES, MAX_BATCH_ITEMS};

/// Default capacity of a subscription's queue.
pub const DEFAULT_SUBSCRIPTION_CAPACITY: usize = 1024;
/// How many published messages may wait for the signer before `publish` waits.
const PUBLISH_QUEUE: usize = 8192;
/// A batch this small also goes to the topic swarm's neighbours unsigned, ahead of its
/// envelope (an origin frame): idle publishers are the ones whose latency the signature is,
/// while under load a big batch amortises it and an extra copy would only cost bandwidth.
const ORIGIN_MAX_ITEMS: usize = 4;
const ORIGIN_MAX_BYTES: usize = 16 * 1024;
/// Topics whose last sequence number the signer remembers (for origin frames' `prev`); past
/// this, the least recently published one is forgotten.
const ORIGIN_TOPICS: usize = 4096;
/// How much nicer (lower CPU priority) than the thread that starts it the signer thread runs,
/// on Linux. With origin frames a small batch's signature is off the one-hop path, yet signing
/// takes ~200 µs of CPU per idle message: at the same priority it took the CPU from the
/// threads carrying the message and waking the subscriber (ARCHITECTURE → Messages).
const SIGNER_NICENESS: i32 = 10;
/// The highest (least favoured) nice value Linux has.
const NICEST: i32 = 19;

/// A received (or locally published) message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Message {
    /// The topic it was published on.
    pub topic: Arc<str>,
    /// The payload.
    pub payload: Bytes,
    /// The agent that published and signed it.
    pub sender: AgentId,
    /// Milliseconds since the Unix epoch, stamped by the sender.
    pub timestamp_ms: u64,
    /// Links it crossed from the publisher to this agent: 0 for the agent's own messages,
    /// 1 from a direct neighbour, more when relayed.
    pub hops: u32,
}

type Queue = Arc<BoundedQueue<Message>>;
/// Subscribers by topic, each with its subscription id.
type Topics = HashMap<Arc<str>, Vec<(u64, Queue)>>;

/// Who is subscribed to what, on one agent, and the traffic of the topics it takes part in.
#[derive(Default)]
pub struct Registry {
    topics: Mutex<Topics>,
    next_id: AtomicU64,
    traffic: TopicTraffic,
    /// Bumped when a topic gains its first subscription or loses its last: the network layer
    /// joins and leaves topic swarms by it.
    interest_version: AtomicU64,
    interest_changed: tokio::sync::Notify,
}

impl Registry {
    fn lock(&self) -> std::sync::MutexGuard<'_, Topics> {
        self.topics.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A new subscription to `topic` with a queue of `capacity` messages.
    pub fn subscribe(self: &Arc<Self>, topic: &str, capacity: usize) -> Result<Subscription> {
        wire::check_topic(topic)?;
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let queue = Arc::new(BoundedQueue::new(capacity));
        self.traffic.take_part(topic, true);
        let topic: Arc<str> = Arc::from(topic);
        let first = {
            let mut topics = self.lock();
            let subs = topics.entry(Arc::clone(&topic)).or_default();
            subs.push((id, Arc::clone(&queue)));
            subs.len() == 1
        };
        if first {
            self.interest_moved();
        }
        Ok(Subscription {
            topic,
            id,
            queue,
            registry: Arc::downgrade(self),
        })
    }

    fn unsubscribe(&self, topic: &str, id: u64) {
        let last = {
            let mut topics = self.lock();
            let Some(subs) = topics.get_mut(topic) else {
                return;
            };
            subs.retain(|(sub_id, _)| *sub_id != id);
            let last = subs.is_empty();
            if last {
                topics.remove(topic);
                self.traffic.unsubscribed(topic);
            }
            last
        };
        if last {
            self.interest_moved();
        }
    }

    fn interest_moved(&self) {
        self.interest_version.fetch_add(1, Ordering::AcqRel);
        self.interest_changed.notify_one();
    }

    /// Changes with every topic gaining its first or losing its last subscription.
    pub(crate) fn interest_version(&self) -> u64 {
        self.interest_version.load(Ordering::Acquire)
    }

    /// Completes after the next such change (or at once if one came since the last wait).
    pub(crate) async fn interest_changed(&self) {
        self.interest_changed.notified().await;
    }

    /// The topics with at least one subscription.
    pub(crate) fn subscribed_topics(&self) -> Vec<Arc<str>> {
        self.lock().keys().cloned().collect()
    }

    /// Delivers a verified batch on `topic` to each of its subscribers; returns how many
    /// deliveries were made. Never blocks: a full queue drops its oldest message.
    pub fn deliver(
        &self,
        sender: AgentId,
        topic: &str,
        items: &[Item],
        hops: u32,
        counters: &Counters,
    ) -> usize {
        let topics = self.lock();
        let Some((topic, subs)) = topics.get_key_value(topic) else {
            return 0;
        };
        let message = |item: &Item| Message {
            topic: Arc::clone(topic),
            payload: item.payload.clone(),
            sender,
            timestamp_ms: item.timestamp_ms,
            hops,
        };
        for (_, queue) in subs {
            // Count first, so stats never lag a message a reader already has.
            counters.add(&counters.delivered, items.len() as u64);
            // The whole batch in one push: one lock and one wake-up, not one per message.
            let before = queue.dropped();
            queue.push_all(items.iter().map(message));
            counters.add(&counters.queue_overflow, queue.dropped() - before);
        }
        items.len() * subs.len()
    }

    /// The traffic of the topics this agent takes part in.
    pub fn traffic(&self) -> &TopicTraffic {
        &self.traffic
    }

    /// Closes every subscription (the agent is closing).
    pub fn close_all(&self) {
        for (_, subs) in self.lock().drain() {
            for (_, queue) in subs {
                queue.close();
            }
        }
    }
}

/// A subscription to one topic: an async stream of [`Message`] batches.
///
/// Dropping it (or [`Subscription::close`]) unsubscribes.
pub struct Subscription {
    topic: Arc<str>,
    id: u64,
    queue: Queue,
    registry: Weak<Registry>,
}

impl Subscription {
    /// The topic.
    pub fn topic(&self) -> &str {
        &self.topic
    }

    /// Up to `max` messages, waiting for at least one; `None` once closed.
    pub async fn next_batch(&self, max: usize) -> Option<Vec<Message>> {
        self.queue.pop(max).await
    }

    /// Up to `max` messages without waiting (possibly none); `None` once closed.
    pub fn try_next_batch(&self, max: usize) -> Option<Vec<Message>> {
        self.queue.try_pop(max)
    }

    /// Messages dropped because this subscriber fell behind (its queue was full).
    pub fn dropped(&self) -> u64 {
        self.queue.dropped()
    }

    /// Unsubscribes. Messages already queued can still be read; then the stream ends.
    pub fn close(&self) {
        self.queue.close();
        if let Some(registry) = self.registry.upgrade() {
            registry.unsubscribe(&self.topic, self.id);
        }
    }

    /// Whether [`Subscription::close`] was called (or the agent closed).
    pub fn is_closed(&self) -> bool {
        self.queue.is_closed()
    }
}

impl Drop for Subscription {
    fn drop(&mut self) {
        self.close();
    }
}

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// The sending half of the signer: `publish` enqueues here.
#[derive(Clone)]
pub struct Publisher {
    tx: mpsc::Sender<(String, Item)>,
}

impl Publisher {
    /// Starts the signer thread. Each batch is delivered to `registry` (our own subscribers);
    /// a small one is passed to `origin` (topic, sequence number, the previous one on the
    /// topic, messages) before it is signed; each signed envelope is passed to `broadcast`.
    pub fn start(
        agent_key: Keypair,
        registry: Arc<Registry>,
        counters: Arc<Counters>,
        broadcast: impl Fn(Bytes) + Send + 'static,
        origin: impl Fn(&str, u64, Option<u64>, &[Item]) + Send + 'static,
    ) -> Result<Self> {
        let (tx, rx) = mpsc::channel(PUBLISH_QUEUE);
        std::thread::Builder::new()
            .name("x0x-signer".into())
            .spawn(move || {
                lower_this_threads_priority(SIGNER_NICENESS);
                let hooks = Hooks { broadcast, origin };
                sign_loop(rx, &agent_key, &registry, &counters, &hooks);
            })
            .map_err(|e| Error::io("cannot start the signer thread", &e))?;
        Ok(Self { tx })
    }

    /// Queues one message for signing; waits only while the signer is `PUBLISH_QUEUE` behind.
    pub async fn publish(&self, topic: &str, payload: Bytes) -> Result<()> {
        wire::check_publish(topic, payload.len())?;
        let item = Item {
            timestamp_ms: now_ms(),
            payload,
        };
        self.tx
            .send((topic.to_owned(), item))
            .await
            .map_err(|_| Error::new(ErrorKind::Closed, "the agent is closed"))
    }
}

/// Where the signer hands what it made.
struct Hooks<B, O> {
    broadcast: B,
    origin: O,
}

/// The sequence number of the last envelope on each topic, for origin frames' `prev`.
#[derive(Default)]
struct LastSeq {
    topics: HashMap<String, (u64, u64)>,
    clock: u64,
    /// Some topic was forgotten: a topic not held may have had envelopes before.
    forgot: bool,
}

impl LastSeq {
    /// Records `seq` as the last on `topic`; returns what to tell receivers came before it:
    /// `Some(None)` for the first on the topic in this run, `Some(Some(prev))`, or `None` when
    /// that is not known any more (no origin frame then).
    fn advance(&mut self, topic: &str, seq: u64) -> Option<Option<u64>> {
        self.clock += 1;
        let clock = self.clock;
        if let Some((last, used)) = self.topics.get_mut(topic) {
            let prev = std::mem::replace(last, seq);
            *used = clock;
            return Some(Some(prev));
        }
        if self.topics.len() >= ORIGIN_TOPICS {
            let oldest = self.topics.iter().min_by_key(|(_, (_, used))| *used);
            if let Some(oldest) = oldest.map(|(topic, _)| topic.clone()) {
                self.topics.remove(&oldest);
                self.forgot = true;
            }
        }
        self.topics.insert(topic.to_owned(), (seq, clock));
        (!self.forgot).then_some(None)
    }
}

fn sign_loop<B: Fn(Bytes), O: Fn(&str, u64, Option<u64>, &[Item])>(
    mut rx: mpsc::Receiver<(String, Item)>,
    agent_key: &Keypair,
    registry: &Registry,
    counters: &Counters,
    hooks: &Hooks<B, O>,
) {
    // Microseconds at start: later runs of the same agent continue above earlier ones.
    let mut seq = now_ms().saturating_mul(1000);
    let me = agent_key.public_key().agent_id();
    let mut last = LastSeq::default();
    let mut carry = None;
    while let Some(first) = carry.take().or_else(|| rx.blocking_recv()) {
        let size = |(topic, item): &(String, Item)| item.payload.len() + topic.len();
        let mut bytes = size(&first);
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH_ITEMS {
            let Ok(next) = rx.try_recv() else { break };
            if bytes + size(&next) > MAX_BATCH_BYTES {
                carry = Some(next);
                break;
            }
            bytes += size(&next);
            batch.push(next);
        }
        for (topic, items) in by_topic(batch) {
            seq += 1;
            registry.traffic.take_part(&topic, false);
            // Counted before anyone can have them (stats never lag a delivery): local
            // subscribers first (they need no signature), origin frames, then the envelope.
            counters.add(&counters.published, items.len() as u64);
            registry.deliver(me, &topic, &items, 0, counters);
            let prev = last.advance(&topic, seq);
            let bytes: usize = items.iter().map(|item| item.payload.len()).sum();
            if let Some(prev) = prev {
                if items.len() <= ORIGIN_MAX_ITEMS && bytes <= ORIGIN_MAX_BYTES {
                    // Neighbours get it now; the signature follows in the envelope.
                    (hooks.origin)(&topic, seq, prev, &items);
                }
            }
            let count = items.len();
            match wire::seal(agent_key, seq, &topic, items) {
                Ok(envelope) => {
                    counters.add(&counters.envelopes_signed, 1);
                    (hooks.broadcast)(envelope);
                }
                // Signing cannot fail with a valid key; if it ever does, say so rather than hang.
                Err(e) => log::error!("x0x: {count} messages were not sent: {e}"),
            }
        }
    }
}

/// Makes the calling thread `by` nicer; a failure only costs latency, so it is logged.
#[cfg(target_os = "linux")]
fn lower_this_threads_priority(by: i32) {
    use rustix::process::{getpriority_process, setpriority_process};
    // Linux keeps a nice value per thread; `None` (who = 0) is the calling thread.
    let lowered = getpriority_process(None)
        .and_then(|nice| setpriority_process(None, (nice + by).min(NICEST)));
    if let Err(e) = lowered {
        log::debug!("x0x: the signer thread runs at its starter's priority: {e}");
    }
}

/// Elsewhere the process-wide call would lower every thread's priority, so nothing changes.
#[cfg(not(target_os = "linux"))]
fn lower_this_threads_priority(_by: i32) {}

/// Splits a batch into one per topic, topics in order of first appearance, each in publish
/// order.
fn by_topic(batch: Vec<(String, Item)>) -> Vec<(String, Vec<Item>)> {
    let mut groups: Vec<(String, Vec<Item>)> = Vec::new();
    for (topic, item) in batch {
        match groups.iter_mut().find(|(t, _)| *t == topic) {
            Some((_, items)) => items.push(item),
            None => groups.push((topic, vec![item])),
        }
    }
    groups
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_previous_number_is_per_topic_and_none_only_when_surely_first() {
        let mut last = LastSeq::default();
        assert_eq!(last.advance("a", 10), Some(None));
        assert_eq!(last.advance("b", 11), Some(None));
        assert_eq!(last.advance("a", 12), Some(Some(10)));
        for n in 0..ORIGIN_TOPICS as u64 {
            last.advance(&format!("t{n}"), 100 + n);
        }
        assert!(last.topics.len() <= ORIGIN_TOPICS);
        // "b" was forgotten: its next envelope cannot say what came before, so no origin.
        assert_eq!(last.advance("b", 20_000), None);
        assert_eq!(last.advance("b", 20_001), Some(Some(20_000)));
        assert_eq!(last.advance("new", 20_002), None, "maybe not the first");
    }

    /// The nice value of the thread `tid` of this process, from /proc.
    #[cfg(target_os = "linux")]
    fn nice_of(tid: &str) -> i32 {
        let stat = std::fs::read_to_string(format!("/proc/self/task/{tid}/stat")).unwrap();
        // Fields after the parenthesised name: state is field 3, nice field 19.
        let after_name = &stat[stat.rfind(')').unwrap() + 2..];
        after_name.split(' ').nth(16).unwrap().parse().unwrap()
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn the_signer_thread_runs_nicer_than_the_thread_that_started_it() {
        let registry = Arc::new(Registry::default());
        let counters = Arc::new(Counters::default());
        let mine = rustix::process::getpriority_process(None).unwrap();
        let _publisher = Publisher::start(
            Keypair::generate().unwrap(),
            registry,
            counters,
            |_| {},
            |_, _, _, _| {},
        )
        .unwrap();
        let signer_nice = || {
            std::fs::read_dir("/proc/self/task")
                .unwrap()
                .filter_map(|task| task.ok()?.file_name().into_string().ok())
                .filter(|tid| {
                    std::fs::read_to_string(format!("/proc/self/task/{tid}/comm"))
                        .is_ok_and(|comm| comm.trim() == "x0x-signer")
                })
                .map(|tid| nice_of(&tid))
                .next()
        };
        let expected = (mine + SIGNER_NICENESS).min(NICEST);
        // The thread sets its own priority as it starts: wait for it (other tests' signers,
        // started from test threads alike, have the same nice value).
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while signer_nice() != Some(expected) {
            assert!(
                std::time::Instant::now() < deadline,
                "signer nice {:?}",
                signer_nice()
            );
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
    }

    #[tokio::test]
    async fn a_message_is_counted_as_published_before_a_neighbour_can_have_it() {
        let counters = Arc::new(Counters::default());
        let (seen, mut published_then) = mpsc::unbounded_channel();
        let watched = Arc::clone(&counters);
        let publisher = Publisher::start(
            Keypair::generate().unwrap(),
            Arc::new(Registry::default()),
            Arc::clone(&counters),
            |_| {},
            move |_, _, _, _| {
                // The origin frame leaves for the neighbours now.
                let _ = seen.send(watched.published.load(Ordering::Relaxed));
            },
        )
        .unwrap();
        publisher
            .publish("t", Bytes::from_static(b"x"))
            .await
            .unwrap();
        assert_eq!(published_then.recv().await, Some(1));
    }

    #[test]
    fn a_batch_splits_by_topic_keeping_publish_order() {
        let item = |n: u64| Item {
            timestamp_ms: n,
            payload: Bytes::new(),
        };
        let batch = vec![
            ("b".to_owned(), item(1)),
            ("a".to_owned(), item(2)),
            ("b".to_owned(), item(3)),
        ];
        assert_eq!(
            by_topic(batch),
            vec![
                ("b".to_owned(), vec![item(1), item(3)]),
                ("a".to_owned(), vec![item(2)]),
            ]
        );
    }
}
