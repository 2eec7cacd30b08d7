//! `X0xAgent`: a built agent.

use std::ffi::{c_char, c_void};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;

use super::boundary::{arg_bytes, arg_out, arg_ref, arg_str, ffi_status, ffi_value};
use super::bytes::{BytesResult, X0xBytes};
use super::events::X0xEventStream;
use super::identity::{write_id, X0xId};
use super::inbox::X0xInbox;
use super::op::{spawn_op, OpOutput, X0xCallback, X0xOp};
use super::status::X0xStatus;
use super::subscription::X0xSubscription;
use crate::agent::{Agent, DEFAULT_DIRECT_TIMEOUT, DEFAULT_INBOX_CAPACITY, DEFAULT_JOIN_TIMEOUT};
use crate::error::{Error, Result};
use crate::identity::AgentId;
use crate::pubsub::DEFAULT_SUBSCRIPTION_CAPACITY;
use crate::stats::{Stats, TopicStats};

/// Room for any socket address as text, with its NUL (`x0x_agent_local_addr`).
pub const X0X_ADDR_STR_LEN: usize = 64;
/// The largest payload `x0x_agent_publish` accepts.
pub const X0X_MAX_PAYLOAD_LEN: usize = 262_144;
const _: () = assert!(X0X_MAX_PAYLOAD_LEN == crate::wire::MAX_PAYLOAD_LEN);

/// An agent's traffic counters (`x0x_agent_stats`).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct X0xStats {
    /// Messages this agent published.
    pub published: u64,
    /// Signed envelopes (batches of messages) this agent produced.
    pub envelopes_signed: u64,
    /// Messages handed to subscriber queues (one per subscriber).
    pub delivered: u64,
    /// Received envelopes dropped for a bad signature.
    pub dropped_bad_signature: u64,
    /// Received envelopes dropped for naming a sender whose key the peer did not announce.
    pub dropped_wrong_sender: u64,
    /// Received frames or envelopes dropped because they did not decode.
    pub dropped_malformed: u64,
    /// Received frames over the size limit (the connection was closed).
    pub dropped_oversized: u64,
    /// Received envelopes dropped as replays of ones seen before.
    pub dropped_replay: u64,
    /// Messages dropped from full subscriber queues.
    pub queue_overflow: u64,
    /// Current gossip neighbours.
    pub neighbours: u64,
    /// Frame bytes received.
    pub bytes_in: u64,
    /// Frame bytes sent.
    pub bytes_out: u64,
    /// Verified envelopes received from the gossip overlay, duplicates included.
    pub envelopes_received: u64,
    /// Received envelopes that were duplicates (suppressed: not delivered or forwarded again).
    pub duplicates: u64,
    /// Incoming connections refused before the handshake: their address kept sending invalid
    /// messages.
    pub connections_refused: u64,
    /// Open peer connections (neighbours, peers being answered, spares from simultaneous dials).
    pub connections: u64,
    /// Times an agent id was seen live in two processes at once (an agent key running twice).
    pub identity_conflicts: u64,
    /// Envelope copies received on topics this agent neither subscribes to nor publishes on,
    /// duplicates included: each topic travels in a swarm of its own, so only copies already on
    /// their way when the agent left a topic's swarm.
    pub foreign_envelopes_in: u64,
    /// The bytes of those envelope copies.
    pub foreign_bytes_in: u64,
    /// Direct messages and requests this agent sent.
    pub direct_out: u64,
    /// Direct messages and requests other agents sent to this one.
    pub direct_in: u64,
    /// Of those, the ones refused (no inbox open, a duplicate request, a request dropped
    /// unanswered) or answered with a failure.
    pub direct_refused: u64,
    /// Agent cards dropped: a bad signature, or a card naming another agent than the one that
    /// presented it.
    pub cards_rejected: u64,
    /// Origin frames sent: small batches this agent published, sent unsigned to its neighbours in
    /// the topic's swarm ahead of their signed envelopes (one per neighbour).
    pub origin_frames_out: u64,
    /// Origin frames received from neighbours (well-formed ones).
    pub origin_frames_in: u64,
    /// Of those, the ones delivered at once (before their signed envelopes); each batch's signed
    /// envelope is compared with it when it arrives and is not delivered again.
    pub origin_delivered: u64,
    /// Of those, the ones not delivered: the sender is not a neighbour in that topic's swarm here,
    /// its previous envelope there was not delivered yet, or this one was (its signed envelope then
    /// delivers it, as usual).
    pub origin_ignored: u64,
    /// Signed envelopes that carried another batch than the origin frame delivered under the same
    /// sequence number: the publisher equivocated; its connection was closed.
    pub origin_mismatches: u64,
    /// Of the origin frames delivered, those whose signed envelope had not come 30 s later (a
    /// publisher that never signed what it sent, or that stopped in between): nobody else can
    /// check those messages.
    pub origin_unconfirmed: u64,
}

/// One topic's traffic at one agent (`x0x_agent_topic_stats`): envelope copies (signed batches
/// of messages on the topic) received and sent, duplicates and relayed copies included.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct X0xTopicStats {
    /// Envelope copies received.
    pub envelopes_in: u64,
    /// Their bytes.
    pub bytes_in: u64,
    /// Envelope copies sent (this agent's own, and relayed).
    pub envelopes_out: u64,
    /// Their bytes.
    pub bytes_out: u64,
}

impl From<TopicStats> for X0xTopicStats {
    fn from(stats: TopicStats) -> Self {
        let TopicStats {
            envelopes_in,
            bytes_in,
            envelopes_out,
            bytes_out,
        } = stats;
        Self {
            envelopes_in,
            bytes_in,
            envelopes_out,
            bytes_out,
        }
    }
}

impl From<Stats> for X0xStats {
    fn from(stats: Stats) -> Self {
        // Exhaustive both ways: a counter added to `Stats` and not here fails to compile.
        let Stats {
            published,
            envelopes_signed,
            delivered,
            envelopes_received,
            duplicates,
            connections_refused,
            dropped_bad_signature,
            dropped_wrong_sender,
            dropped_malformed,
            dropped_oversized,
            dropped_replay,
            queue_overflow,
            bytes_in,
            bytes_out,
            identity_conflicts,
            foreign_envelopes_in,
            foreign_bytes_in,
            direct_out,
            direct_in,
            direct_refused,
            cards_rejected,
            origin_frames_out,
            origin_frames_in,
            origin_delivered,
            origin_ignored,
            origin_mismatches,
            origin_unconfirmed,
            neighbours,
            connections,
        } = stats;
        Self {
            published,
            envelopes_signed,
            delivered,
            dropped_bad_signature,
            dropped_wrong_sender,
            dropped_malformed,
            dropped_oversized,
            dropped_replay,
            queue_overflow,
            neighbours,
            bytes_in,
            bytes_out,
            envelopes_received,
            duplicates,
            connections_refused,
            connections,
            identity_conflicts,
            foreign_envelopes_in,
            foreign_bytes_in,
            direct_out,
            direct_in,
            direct_refused,
            cards_rejected,
            origin_frames_out,
            origin_frames_in,
            origin_delivered,
            origin_ignored,
            origin_mismatches,
            origin_unconfirmed,
        }
    }
}

/// An agent. Opaque; obtained from `x0x_agent_builder_build`, released with `x0x_agent_free`.
/// Thread-safe: any function may be called from any thread.
pub struct X0xAgent {
    inner: Arc<Agent>,
}

impl X0xAgent {
    pub(crate) fn new(agent: Agent) -> Self {
        Self {
            inner: Arc::new(agent),
        }
    }

    pub(crate) fn agent(&self) -> &Agent {
        &self.inner
    }

    /// The agent, for operations that outlive the call.
    pub(crate) fn shared(&self) -> &Arc<Agent> {
        &self.inner
    }
}

impl OpOutput for X0xAgent {
    fn into_raw(self: Box<Self>) -> *mut c_void {
        Box::into_raw(self).cast()
    }
}

/// Writes the agent's id to `*out`. Returns `X0X_OK` or `X0X_INVALID_ARGUMENT` (NULL).
#[no_mangle]
pub unsafe extern "C" fn x0x_agent_agent_id(agent: *const X0xAgent, out: *mut X0xId) -> X0xStatus {
    ffi_status(|| write_id(out, arg_ref(agent, "agent")?.inner.agent_id().0))
}

/// Writes the agent's machine id to `*out`. Returns `X0X_OK` or `X0X_INVALID_ARGUMENT` (NULL).
#[no_mangle]
pub unsafe extern "C" fn x0x_agent_machine_id(
    agent: *const X0xAgent,
    out: *mut X0xId,
) -> X0xStatus {
    ffi_status(|| write_id(out, arg_ref(agent, "agent")?.inner.machine_id().0))
}

/// Writes the agent's ML-DSA-65 public key (`X0X_PUBLIC_KEY_LEN` bytes) to `*out`; free it with
/// `x0x_bytes_free`. Returns `X0X_OK` or `X0X_INVALID_ARGUMENT` (NULL).
#[no_mangle]
pub unsafe extern "C" fn x0x_agent_public_key(
    agent: *const X0xAgent,
    out: *mut X0xBytes,
) -> X0xStatus {
    ffi_status(|| {
        // Check every pointer before allocating: an early return must not strand a buffer.
        let agent = arg_ref(agent, "agent")?;
        let out = arg_out(out, "out")?;
        *out = X0xBytes::from_vec(agent.inner.public_key().as_bytes().to_vec());
        Ok(())
    })
}

/// Writes the agent's key pair, serialized (format at `x0x_agent_key_generate`; secret), to
/// `*out`; free it with `x0x_bytes_free`. Returns `X0X_OK` or `X0X_INVALID_ARGUMENT` (NULL).
#[no_mangle]
pub unsafe extern "C" fn x0x_agent_keypair_bytes(
    agent: *const X0xAgent,
    out: *mut X0xBytes,
) -> X0xStatus {
    ffi_status(|| {
        let agent = arg_ref(agent, "agent")?;
        let out = arg_out(out, "out")?;
        *out = X0xBytes::from_vec(agent.inner.agent_keypair_bytes());
        Ok(())
    })
}

/// Closes the agent (idempotent). Async; the callback's `result` is NULL. The handle stays valid
/// until `x0x_agent_free`. Returns `X0X_OK` once started, or `X0X_INVALID_ARGUMENT` (NULL agent;
/// then no callback runs). `op_out` may be NULL.
#[no_mangle]
pub unsafe extern "C" fn x0x_agent_close(
    agent: *const X0xAgent,
    callback: X0xCallback,
    user_data: *mut c_void,
    op_out: *mut *mut X0xOp,
) -> X0xStatus {
    ffi_status(|| {
        let agent = Arc::clone(&arg_ref(agent, "agent")?.inner);
        spawn_op(
            callback,
            user_data,
            op_out,
            async move { agent.close().await },
        );
        Ok(())
    })
}

/// Joins the network through the builder's bootstrap peers; done when one neighbour is up, or
/// at once without bootstrap peers (this agent starts a network). `timeout_ms` 0 means the
/// default (10 s).
///
/// Bootstrap peers that cannot be reached yet are dialed again (backing off from 100 ms to 2 s)
/// until the timeout, so agents started together find each other.
///
/// Async; the callback's `result` is NULL. Failures: `X0X_TIMEOUT` (no neighbour in time; the
/// message names each bootstrap address and its last error), `X0X_INVALID_ARGUMENT` (every
/// bootstrap address is this agent's own), `X0X_IN_USE` (a bootstrap peer has this agent's id:
/// another process runs with the same agent key), `X0X_CLOSED`, `X0X_CANCELLED` (left meanwhile). Returns `X0X_OK` once started, or
/// `X0X_INVALID_ARGUMENT` (NULL agent; then no callback runs). `op_out` may be NULL.
#[no_mangle]
pub unsafe extern "C" fn x0x_agent_join_network(
    agent: *const X0xAgent,
    timeout_ms: u32,
    callback: X0xCallback,
    user_data: *mut c_void,
    op_out: *mut *mut X0xOp,
) -> X0xStatus {
    ffi_status(|| {
        let agent = Arc::clone(&arg_ref(agent, "agent")?.inner);
        let timeout = match timeout_ms {
            0 => DEFAULT_JOIN_TIMEOUT,
            ms => Duration::from_millis(ms.into()),
        };
        spawn_op(callback, user_data, op_out, async move {
            agent.join_network(timeout).await
        });
        Ok(())
    })
}

/// Leaves the network gracefully (neighbours are told). Async; `result` is NULL. Returns
/// `X0X_OK` once started or `X0X_INVALID_ARGUMENT`.
#[no_mangle]
pub unsafe extern "C" fn x0x_agent_leave_network(
    agent: *const X0xAgent,
    callback: X0xCallback,
    user_data: *mut c_void,
    op_out: *mut *mut X0xOp,
) -> X0xStatus {
    ffi_status(|| {
        let agent = Arc::clone(&arg_ref(agent, "agent")?.inner);
        spawn_op(callback, user_data, op_out, async move {
            agent.leave_network().await
        });
        Ok(())
    })
}

/// Writes whether the agent has at least one gossip neighbour to `*out`. Returns `X0X_OK` or
/// `X0X_INVALID_ARGUMENT`.
#[no_mangle]
pub unsafe extern "C" fn x0x_agent_is_connected(
    agent: *const X0xAgent,
    out: *mut bool,
) -> X0xStatus {
    ffi_status(|| {
        let agent = arg_ref(agent, "agent")?;
        *arg_out(out, "out")? = agent.inner.is_connected();
        Ok(())
    })
}

/// Writes the agent's bound UDP address (`"0.0.0.0:5483"` with the default bind,
/// `"127.0.0.1:5483"`, `"[::1]:5483"`) and a NUL into `out`, which holds `out_len` bytes
/// (`X0X_ADDR_STR_LEN` is always enough). Agents on the same machine can use it as their
/// bootstrap address as it is (an unspecified address is dialed as loopback); for other
/// machines see `x0x_agent_local_addrs`. Returns `X0X_OK` or `X0X_INVALID_ARGUMENT` (NULL, too
/// small).
#[no_mangle]
pub unsafe extern "C" fn x0x_agent_local_addr(
    agent: *const X0xAgent,
    out: *mut c_char,
    out_len: usize,
) -> X0xStatus {
    ffi_status(|| {
        let text = arg_ref(agent, "agent")?.inner.local_addr().to_string();
        if out.is_null() {
            return Err(Error::invalid_argument("out must not be NULL"));
        }
        if out_len <= text.len() {
            return Err(Error::invalid_argument(format!(
                "out_len is {out_len}; the address needs {} bytes with its NUL",
                text.len() + 1
            )));
        }
        std::ptr::copy_nonoverlapping(text.as_ptr(), out.cast(), text.len());
        *out.add(text.len()) = 0;
        Ok(())
    })
}

/// Writes the addresses others can dial to reach the agent to `*out`, as UTF-8 text, one
/// `ip:port` per line (no trailing newline, no NUL): the bound address, or when bound to a
/// wildcard each address of that family on this host's interfaces, loopback first. Free it with
/// `x0x_bytes_free`. Returns `X0X_OK` or `X0X_INVALID_ARGUMENT` (NULL).
#[no_mangle]
pub unsafe extern "C" fn x0x_agent_local_addrs(
    agent: *const X0xAgent,
    out: *mut X0xBytes,
) -> X0xStatus {
    ffi_status(|| {
        let agent = arg_ref(agent, "agent")?;
        let out = arg_out(out, "out")?;
        let addrs: Vec<String> = agent
            .inner
            .local_addrs()
            .iter()
            .map(ToString::to_string)
            .collect();
        *out = X0xBytes::from_vec(addrs.join("\n").into_bytes());
        Ok(())
    })
}

/// Publishes `payload[0..len]` (copied; at most `X0X_MAX_PAYLOAD_LEN` bytes) on `topic`
/// (NUL-terminated UTF-8, 1 to 256 bytes), signed by this agent. Every subscriber in the network
/// gets it, this agent's own subscribers included; one sender's messages on a topic arrive in order.
///
/// Async: completes (`result` NULL) once the message is queued for signing, which is at once
/// unless the agent is far behind. Failures: `X0X_NOT_CONNECTED` (not joined, or left),
/// `X0X_CLOSED`. Returns `X0X_OK` once started, or `X0X_INVALID_ARGUMENT` (NULL, bad UTF-8, topic
/// or payload size; then no callback runs).
#[no_mangle]
pub unsafe extern "C" fn x0x_agent_publish(
    agent: *const X0xAgent,
    topic: *const c_char,
    payload: *const u8,
    len: usize,
    callback: X0xCallback,
    user_data: *mut c_void,
    op_out: *mut *mut X0xOp,
) -> X0xStatus {
    ffi_status(|| {
        let agent = Arc::clone(&arg_ref(agent, "agent")?.inner);
        let topic = arg_str(topic, "topic")?.to_owned();
        let payload = arg_bytes(payload, len, "payload")?;
        crate::wire::check_publish(&topic, payload.len())?;
        let payload = Bytes::copy_from_slice(payload);
        spawn_op(callback, user_data, op_out, async move {
            agent.publish(&topic, payload).await
        });
        Ok(())
    })
}

/// Subscribes to `topic` (NUL-terminated UTF-8, 1 to 256 bytes). The subscription keeps up to
/// `capacity` unread messages (0: the default, 1024) and drops the oldest beyond that.
///
/// `*out` receives the subscription; free it with `x0x_subscription_free`. Returns `X0X_OK`,
/// `X0X_CLOSED` or `X0X_INVALID_ARGUMENT`.
#[no_mangle]
pub unsafe extern "C" fn x0x_agent_subscribe(
    agent: *const X0xAgent,
    topic: *const c_char,
    capacity: usize,
    out: *mut *mut X0xSubscription,
) -> X0xStatus {
    ffi_status(|| {
        let agent = arg_ref(agent, "agent")?;
        let topic = arg_str(topic, "topic")?;
        let out = arg_out(out, "out")?;
        let capacity = match capacity {
            0 => DEFAULT_SUBSCRIPTION_CAPACITY,
            n => n,
        };
        let subscription = agent.inner.subscribe_with_capacity(topic, capacity)?;
        *out = Box::into_raw(Box::new(X0xSubscription::new(subscription)));
        Ok(())
    })
}

/// The checked arguments of a direct message or request: the agent, whom to, the payload
/// (copied) and the timeout (`timeout_ms` 0: the default).
///
/// # Safety
/// As the extern fns that call it: `agent` NULL or live, `to` NULL or a valid `X0xId`,
/// `payload` NULL or `len` bytes.
unsafe fn letter(
    agent: *const X0xAgent,
    to: *const X0xId,
    payload: *const u8,
    len: usize,
    timeout_ms: u32,
) -> Result<(Arc<Agent>, AgentId, Bytes, Duration)> {
    let agent = Arc::clone(&arg_ref(agent, "agent")?.inner);
    let to = AgentId(arg_ref(to, "to")?.bytes);
    let payload = arg_bytes(payload, len, "payload")?;
    if payload.len() > X0X_MAX_PAYLOAD_LEN {
        return Err(Error::invalid_argument(format!(
            "a direct message is at most {X0X_MAX_PAYLOAD_LEN} bytes, not {}",
            payload.len()
        )));
    }
    let timeout = match timeout_ms {
        0 => DEFAULT_DIRECT_TIMEOUT,
        ms => Duration::from_millis(ms.into()),
    };
    Ok((agent, to, Bytes::copy_from_slice(payload), timeout))
}

/// Sends `payload[0..len]` (copied; at most `X0X_MAX_PAYLOAD_LEN` bytes) to the agent `to`
/// over a direct connection of their own (opened on demand, end-to-end encrypted, never
/// relayed). `timeout_ms` 0 means the default (10 s).
///
/// Async: completes (`result` NULL) once the message is in the recipient's inbox. Failures:
/// `X0X_NOT_FOUND` (no agent `to` can be found or reached), `X0X_REMOTE` (it refused: no inbox
/// open, or it closed its inbox; the message is its reason), `X0X_TIMEOUT` (no
/// acknowledgement in time: the message may still arrive), `X0X_NOT_CONNECTED` (not joined, or
/// left), `X0X_INVALID_ARGUMENT` (`to` is this agent's own id), `X0X_CLOSED`, `X0X_CANCELLED`.
/// Returns `X0X_OK` once started, or `X0X_INVALID_ARGUMENT` (NULL agent, NULL `to`, NULL
/// payload with `len` > 0, a payload over the limit; then no callback runs). `op_out` may be
/// NULL.
#[no_mangle]
pub unsafe extern "C" fn x0x_agent_send(
    agent: *const X0xAgent,
    to: *const X0xId,
    payload: *const u8,
    len: usize,
    timeout_ms: u32,
    callback: X0xCallback,
    user_data: *mut c_void,
    op_out: *mut *mut X0xOp,
) -> X0xStatus {
    ffi_status(|| {
        let (agent, to, payload, timeout) = letter(agent, to, payload, len, timeout_ms)?;
        spawn_op(callback, user_data, op_out, async move {
            agent.send(to, payload, timeout).await
        });
        Ok(())
    })
}

/// Sends `payload[0..len]` (copied; at most `X0X_MAX_PAYLOAD_LEN` bytes) to the agent `to` as
/// a request and waits for its reply, over a direct connection as `x0x_agent_send` does.
/// `timeout_ms` 0 means the default (10 s).
///
/// Async: on success the callback's `result` is an `X0xBytes *` holding the reply, which the
/// callee owns and frees with `x0x_bytes_destroy` (an empty reply is `{NULL, 0}`, still to be
/// destroyed). Failures as `x0x_agent_send`, and `X0X_REMOTE` when the other agent answered with
/// a failure (`x0x_direct_message_reply_error`: the message is its reason) or dropped the
/// request unanswered; on `X0X_TIMEOUT` the request may still have been processed.
/// Cancelling the operation (`x0x_op_cancel`) cancels the request: the recipient's reply is
/// discarded. Returns `X0X_OK` once started, or `X0X_INVALID_ARGUMENT` as `x0x_agent_send`.
/// `op_out` may be NULL.
#[no_mangle]
pub unsafe extern "C" fn x0x_agent_request(
    agent: *const X0xAgent,
    to: *const X0xId,
    payload: *const u8,
    len: usize,
    timeout_ms: u32,
    callback: X0xCallback,
    user_data: *mut c_void,
    op_out: *mut *mut X0xOp,
) -> X0xStatus {
    ffi_status(|| {
        let (agent, to, payload, timeout) = letter(agent, to, payload, len, timeout_ms)?;
        spawn_op(callback, user_data, op_out, async move {
            let reply = agent.request(to, payload, timeout).await?;
            Ok(BytesResult(Vec::from(reply)))
        });
        Ok(())
    })
}

/// Opens the agent's inbox: the direct messages and requests other agents send it arrive
/// there from now on (without one, senders get `X0X_REMOTE`). It keeps up to `capacity` unread
/// messages (0: the default, 1024) and drops the oldest beyond that (a dropped request is
/// refused). One inbox at a time.
///
/// `*out` receives the inbox; free it with `x0x_inbox_free`. Returns `X0X_OK`, `X0X_IN_USE`
/// (an inbox is open: close it first), `X0X_CLOSED` or `X0X_INVALID_ARGUMENT` (NULL).
#[no_mangle]
pub unsafe extern "C" fn x0x_agent_inbox(
    agent: *const X0xAgent,
    capacity: usize,
    out: *mut *mut X0xInbox,
) -> X0xStatus {
    ffi_status(|| {
        let agent = arg_ref(agent, "agent")?;
        let out = arg_out(out, "out")?;
        let capacity = match capacity {
            0 => DEFAULT_INBOX_CAPACITY,
            n => n,
        };
        *out = Box::into_raw(Box::new(X0xInbox::new(agent.inner.inbox(capacity)?)));
        Ok(())
    })
}

/// A new stream of the agent's events (each stream gets every event from now on). `*out`
/// receives it; free it with `x0x_event_stream_free`. Returns `X0X_OK`, `X0X_CLOSED` or
/// `X0X_INVALID_ARGUMENT`.
#[no_mangle]
pub unsafe extern "C" fn x0x_agent_events(
    agent: *const X0xAgent,
    out: *mut *mut X0xEventStream,
) -> X0xStatus {
    ffi_status(|| {
        let agent = arg_ref(agent, "agent")?;
        let out = arg_out(out, "out")?;
        *out = Box::into_raw(Box::new(X0xEventStream::new(agent.inner.events()?)));
        Ok(())
    })
}

/// Writes a snapshot of the agent's counters to `*out`. Returns `X0X_OK` or
/// `X0X_INVALID_ARGUMENT`.
#[no_mangle]
pub unsafe extern "C" fn x0x_agent_stats(agent: *const X0xAgent, out: *mut X0xStats) -> X0xStatus {
    ffi_status(|| {
        let agent = arg_ref(agent, "agent")?;
        *arg_out(out, "out")? = agent.inner.stats().into();
        Ok(())
    })
}

/// Writes the traffic of `topic` (NUL-terminated UTF-8) at this agent to `*out`. Returns
/// `X0X_OK`, `X0X_NOT_FOUND` (the agent has neither subscribed to nor published on the topic in
/// this run; what arrives on such topics is counted in `X0xStats.foreign_*`) or
/// `X0X_INVALID_ARGUMENT`.
#[no_mangle]
pub unsafe extern "C" fn x0x_agent_topic_stats(
    agent: *const X0xAgent,
    topic: *const c_char,
    out: *mut X0xTopicStats,
) -> X0xStatus {
    ffi_status(|| {
        let agent = arg_ref(agent, "agent")?;
        let topic = arg_str(topic, "topic")?;
        let out = arg_out(out, "out")?;
        *out = agent.inner.topic_stats(topic)?.into();
        Ok(())
    })
}

/// Releases the caller's reference. NULL is a no-op. Operations in flight keep the agent alive
/// until they complete.
#[no_mangle]
pub unsafe extern "C" fn x0x_agent_free(agent: *mut X0xAgent) {
    ffi_value((), || {
        if !agent.is_null() {
            drop(Box::from_raw(agent));
        }
    })
}
