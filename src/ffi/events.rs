//! `X0xEventStream`: a pulled stream of agent events.

use std::ffi::c_void;
use std::sync::Arc;

use super::boundary::{batch_free, batch_get, batch_len, Batch};
use super::identity::X0xId;
use super::op::{OpOutput, X0xCallback, X0xOp};
use super::status::X0xStatus;
use super::stream::{
    impl_pulled, stream_close, stream_free, stream_next, stream_try_next, PulledHandle,
};
use crate::events::{Event, EventStream};
use crate::tasklists::TaskStatus;

pub(crate) fn task_status(status: TaskStatus) -> i32 {
    match status {
        TaskStatus::Empty => X0X_TASK_EMPTY,
        TaskStatus::Claimed => X0X_TASK_CLAIMED,
        TaskStatus::Done => X0X_TASK_DONE,
    }
}

/// The agent gained its first gossip neighbour (`neighbours` says how many it has).
pub const X0X_EVENT_CONNECTED: i32 = 1;
/// The agent lost its last gossip neighbour, or left the network.
pub const X0X_EVENT_DISCONNECTED: i32 = 2;
/// `peer` became a gossip neighbour.
pub const X0X_EVENT_PEER_JOINED: i32 = 3;
/// `peer` stopped being a gossip neighbour.
pub const X0X_EVENT_PEER_LEFT: i32 = 4;
/// A task changed (`list_id`, `task_id`, `task_status`, `assignee`, `removed`, `remote`).
pub const X0X_EVENT_TASK_UPDATED: i32 = 5;

/// `peer` is an agent this agent now holds the card of (`x0x_agent_peers` lists it).
pub const X0X_EVENT_AGENT_JOINED: i32 = 6;
/// `peer`'s card expired, or that agent said it is leaving.
pub const X0X_EVENT_AGENT_LEFT: i32 = 7;

/// A task nobody has claimed.
pub const X0X_TASK_EMPTY: i32 = 0;
/// A claimed task.
pub const X0X_TASK_CLAIMED: i32 = 1;
/// A completed task.
pub const X0X_TASK_DONE: i32 = 2;

/// One event. A plain value inside its `X0xEventBatch`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct X0xEvent {
    /// One of the `X0X_EVENT_*` constants.
    pub kind: i32,
    /// The peer's agent id (its identity in the network), for `X0X_EVENT_PEER_JOINED`,
    /// `X0X_EVENT_PEER_LEFT`, `X0X_EVENT_AGENT_JOINED` and `X0X_EVENT_AGENT_LEFT` (else zero).
    pub peer: X0xId,
    /// Neighbours at the time, for `X0X_EVENT_CONNECTED` (else zero).
    pub neighbours: u32,
    /// For `X0X_EVENT_TASK_UPDATED`: the list.
    pub list_id: X0xId,
    /// For `X0X_EVENT_TASK_UPDATED`: the task.
    pub task_id: X0xId,
    /// For `X0X_EVENT_TASK_UPDATED`: `X0X_TASK_EMPTY`, `X0X_TASK_CLAIMED` or `X0X_TASK_DONE`.
    pub task_status: i32,
    /// For `X0X_EVENT_TASK_UPDATED`: whether `assignee` is set.
    pub has_assignee: bool,
    /// For `X0X_EVENT_TASK_UPDATED`: who claimed or completed the task.
    pub assignee: X0xId,
    /// For `X0X_EVENT_TASK_UPDATED`: the task was removed from the list.
    pub removed: bool,
    /// For `X0X_EVENT_TASK_UPDATED`: the change came from another agent.
    pub remote: bool,
}

impl From<&Event> for X0xEvent {
    fn from(event: &Event) -> Self {
        match *event {
            Event::Connected { neighbours } => Self {
                kind: X0X_EVENT_CONNECTED,
                neighbours: u32::try_from(neighbours).unwrap_or(u32::MAX),
                ..Self::default()
            },
            Event::Disconnected => Self {
                kind: X0X_EVENT_DISCONNECTED,
                ..Self::default()
            },
            Event::PeerJoined(peer) => Self {
                kind: X0X_EVENT_PEER_JOINED,
                peer: X0xId::from(peer.0),
                ..Self::default()
            },
            Event::PeerLeft(peer) => Self {
                kind: X0X_EVENT_PEER_LEFT,
                peer: X0xId::from(peer.0),
                ..Self::default()
            },
            Event::AgentJoined(agent) => Self {
                kind: X0X_EVENT_AGENT_JOINED,
                peer: X0xId::from(agent.0),
                ..Self::default()
            },
            Event::AgentLeft(agent) => Self {
                kind: X0X_EVENT_AGENT_LEFT,
                peer: X0xId::from(agent.0),
                ..Self::default()
            },
            Event::TaskUpdated(ref update) => Self {
                kind: X0X_EVENT_TASK_UPDATED,
                list_id: X0xId::from(update.list.0),
                task_id: X0xId::from(update.task.0),
                task_status: task_status(update.status),
                has_assignee: update.assignee.is_some(),
                assignee: X0xId::from(update.assignee.map_or([0; 32], |a| a.0)),
                removed: update.removed,
                remote: update.remote,
                ..Self::default()
            },
        }
    }
}

/// A batch of events, oldest first. Opaque; read with `x0x_event_batch_len` /
/// `x0x_event_batch_get`, free with `x0x_event_batch_free`.
pub struct X0xEventBatch {
    events: Vec<X0xEvent>,
}

impl Batch for X0xEventBatch {
    type Item = X0xEvent;
    fn items(&self) -> &[X0xEvent] {
        &self.events
    }
}

impl OpOutput for X0xEventBatch {
    fn into_raw(self: Box<Self>) -> *mut c_void {
        Box::into_raw(self).cast()
    }
}

fn batch(events: &[Event]) -> X0xEventBatch {
    X0xEventBatch {
        events: events.iter().map(X0xEvent::from).collect(),
    }
}

/// An agent's event stream. Opaque; from `x0x_agent_events`, released with
/// `x0x_event_stream_free`. Keep at most one `x0x_event_stream_next` outstanding.
pub struct X0xEventStream {
    inner: Arc<EventStream>,
}

impl X0xEventStream {
    pub(crate) fn new(stream: EventStream) -> Self {
        Self {
            inner: Arc::new(stream),
        }
    }
}

impl PulledHandle for X0xEventStream {
    type Queue = EventStream;
    const ARG: &'static str = "stream";
    const CLOSED: &'static str = "the event stream is closed";
    fn queue(&self) -> &Arc<EventStream> {
        &self.inner
    }
}

impl_pulled!(EventStream, Event, X0xEventBatch, |events: Vec<Event>| {
    batch(&events)
});

/// Waits for events and hands out up to `max` of them as one batch.
///
/// Async: on success the callback's `result` is a non-empty `X0xEventBatch *` that the callee
/// frees with `x0x_event_batch_free`; `X0X_CLOSED` once the stream (or its agent) is closed.
/// Returns `X0X_OK` once started, or `X0X_INVALID_ARGUMENT` (NULL stream; no callback runs).
#[no_mangle]
pub unsafe extern "C" fn x0x_event_stream_next(
    stream: *const X0xEventStream,
    max: usize,
    callback: X0xCallback,
    user_data: *mut c_void,
    op_out: *mut *mut X0xOp,
) -> X0xStatus {
    stream_next(stream, max, callback, user_data, op_out)
}

/// Takes up to `max` waiting events without blocking: `*out` is a batch or NULL when none.
/// Returns `X0X_OK`, `X0X_CLOSED` or `X0X_INVALID_ARGUMENT`.
#[no_mangle]
pub unsafe extern "C" fn x0x_event_stream_try_next(
    stream: *const X0xEventStream,
    max: usize,
    out: *mut *mut X0xEventBatch,
) -> X0xStatus {
    stream_try_next(stream, max, out)
}

/// Ends the stream (idempotent). Returns `X0X_OK` or `X0X_INVALID_ARGUMENT`.
#[no_mangle]
pub unsafe extern "C" fn x0x_event_stream_close(stream: *const X0xEventStream) -> X0xStatus {
    stream_close(stream)
}

/// Releases the caller's handle (and ends the stream). NULL is a no-op.
#[no_mangle]
pub unsafe extern "C" fn x0x_event_stream_free(stream: *mut X0xEventStream) {
    stream_free(stream)
}

/// The number of events in `batch` (0 for NULL).
#[no_mangle]
pub unsafe extern "C" fn x0x_event_batch_len(batch: *const X0xEventBatch) -> usize {
    batch_len(batch)
}

/// The event at `index`, borrowed from `batch`; NULL if out of range or `batch` is NULL.
#[no_mangle]
pub unsafe extern "C" fn x0x_event_batch_get(
    batch: *const X0xEventBatch,
    index: usize,
) -> *const X0xEvent {
    batch_get(batch, index)
}

/// Frees an event batch. NULL is a no-op.
#[no_mangle]
pub unsafe extern "C" fn x0x_event_batch_free(batch: *mut X0xEventBatch) {
    batch_free(batch)
}
