//! Agent events (connection changes), fanned out to any number of pulled event streams.

use std::sync::{Arc, Mutex, Weak};

use crate::identity::AgentId;
use crate::queue::BoundedQueue;
use crate::tasklist::TaskUpdate;

/// Default capacity of an event stream's queue.
pub const DEFAULT_EVENT_CAPACITY: usize = 256;

/// Something that happened to an agent's place in the network.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Event {
    /// The agent gained its first gossip neighbour.
    Connected {
        /// Neighbours now.
        neighbours: usize,
    },
    /// The agent lost its last gossip neighbour (or left the network).
    Disconnected,
    /// A peer (named by its agent id) became a gossip neighbour.
    PeerJoined(AgentId),
    /// A peer stopped being a gossip neighbour (it left, crashed, or the overlay moved on).
    PeerLeft(AgentId),
    /// A task changed, here or on another replica.
    TaskUpdated(TaskUpdate),
    /// This agent got the card of an agent it held none of (see [`crate::Agent::peers`]).
    AgentJoined(AgentId),
    /// An agent's card expired, or the agent said it is leaving.
    AgentLeft(AgentId),
}

/// Fans events out to every open [`EventStream`].
#[derive(Default)]
pub struct EventHub {
    streams: Mutex<Vec<Weak<BoundedQueue<Event>>>>,
}

impl EventHub {
    /// Sends `event` to every open stream; never blocks.
    pub fn emit(&self, event: Event) {
        let mut streams = self.streams.lock().unwrap_or_else(|e| e.into_inner());
        streams.retain(|stream| match stream.upgrade() {
            Some(queue) => queue.push_all([event.clone()]),
            None => false,
        });
    }

    /// A new stream that receives every event from now on.
    pub fn subscribe(&self, capacity: usize) -> EventStream {
        let queue = Arc::new(BoundedQueue::new(capacity));
        self.streams
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(Arc::downgrade(&queue));
        EventStream { queue }
    }

    /// Ends every stream (the agent is closing).
    pub fn close_all(&self) {
        let streams = std::mem::take(&mut *self.streams.lock().unwrap_or_else(|e| e.into_inner()));
        for queue in streams.iter().filter_map(Weak::upgrade) {
            queue.close();
        }
    }
}

/// A pulled stream of [`Event`]s. Dropping it (or [`EventStream::close`]) ends it.
pub struct EventStream {
    queue: Arc<BoundedQueue<Event>>,
}

impl EventStream {
    /// Up to `max` events, waiting for at least one; `None` once closed.
    pub async fn next_batch(&self, max: usize) -> Option<Vec<Event>> {
        self.queue.pop(max).await
    }

    /// Up to `max` events without waiting (possibly none); `None` once closed.
    pub fn try_next_batch(&self, max: usize) -> Option<Vec<Event>> {
        self.queue.try_pop(max)
    }

    /// Events dropped because this stream fell behind.
    pub fn dropped(&self) -> u64 {
        self.queue.dropped()
    }

    /// Ends the stream.
    pub fn close(&self) {
        self.queue.close();
    }
}
