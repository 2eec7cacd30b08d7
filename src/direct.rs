//! Direct messages and requests: one agent to another, over a QUIC connection of their own.
//!
//! A direct connection negotiates its own ALPN (`net::Purpose::Direct`), so the overlay never
//! sees it; its hello proves both agent ids, as on overlay connections, and TLS
//! (X25519MLKEM768) encrypts it end to end: relays never carry direct traffic, and a letter
//! needs no signature of its own. Each message or request is one bidirectional stream
//! (`wire::Letter` one way, `wire::Answer` back), so a slow reply holds nothing else up and a
//! cancelled request resets only its stream. Connections are dialed on demand, used both
//! ways, and closed after `CONNECTION_IDLE` without a stream.
//!
//! What the recipient does with a letter: nothing unless an [`Inbox`] is open (the sender gets
//! [`ErrorKind::Remote`] naming the cause); a message is acknowledged once queued in the
//! inbox; a request is answered when the program replies to it ([`DirectMessage::reply`]), or
//! refused when its [`DirectMessage`] is dropped unanswered (also when a full inbox drops it).

use std::collections::{HashMap, HashSet, VecDeque};
use std::future::Future;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use bytes::Bytes;
use quinn::{Connection, RecvStream, SendStream};
use tokio::sync::oneshot;
use tokio::time::Instant;

use crate::context::AgentContext;
use crate::error::{Error, ErrorKind, Result};
use crate::identity::{AgentId, MachineId};
use crate::net::{self, Authenticated, ReadError};
use crate::presence::Presence;
use crate::queue::BoundedQueue;
use crate::wire::{Answer, Credentials, Letter, MAX_ANSWER_LEN, MAX_LETTER_LEN, MAX_PAYLOAD_LEN};

/// A direct connection with no stream for this long is closed (either end may close it).
pub(crate) const CONNECTION_IDLE: Duration = Duration::from_secs(30);
/// Request ids remembered per agent run, to answer a duplicate delivery once.
const REQUESTS_REMEMBERED: usize = 4096;
/// How often idle connections are looked for.
const REAP_PERIOD: Duration = Duration::from_secs(5);

/// A message or request another agent sent to this one, as its inbox yields it.
#[derive(Debug)]
pub struct DirectMessage {
    payload: Bytes,
    sender: AgentId,
    timestamp_ms: u64,
    request_id: u64,
    reply: Mutex<Option<oneshot::Sender<Answer>>>,
}

impl DirectMessage {
    /// The payload.
    pub fn payload(&self) -> &Bytes {
        &self.payload
    }

    /// The agent that sent it (its direct connection's hello proved the id).
    pub fn sender(&self) -> AgentId {
        self.sender
    }

    /// When the sender sent it: milliseconds since the Unix epoch, by the sender's clock.
    pub fn timestamp_ms(&self) -> u64 {
        self.timestamp_ms
    }

    /// The request's id (unique per sender), or 0 for a message that expects no reply.
    pub fn request_id(&self) -> u64 {
        self.request_id
    }

    /// Whether the sender waits for a reply.
    pub fn is_request(&self) -> bool {
        self.request_id != 0
    }

    /// Answers the request with `payload`. Fails when this is not a request, was answered
    /// already, the payload is over the limit, or the requester stopped waiting.
    pub fn reply(&self, payload: Bytes) -> Result<()> {
        if payload.len() > MAX_PAYLOAD_LEN {
            return Err(Error::invalid_argument(format!(
                "a reply is at most {MAX_PAYLOAD_LEN} bytes, not {}",
                payload.len()
            )));
        }
        self.answer(Answer::Reply(payload))
    }

    /// Answers the request with a failure: the requester gets [`ErrorKind::Remote`] with
    /// `reason` (cut to `wire::MAX_REFUSAL_LEN` bytes).
    pub fn reply_error(&self, reason: &str) -> Result<()> {
        self.answer(Answer::Refused(reason.to_owned()))
    }

    fn answer(&self, answer: Answer) -> Result<()> {
        if !self.is_request() {
            return Err(Error::invalid_argument(
                "this message is not a request: there is nothing to reply to",
            ));
        }
        let reply = self
            .reply
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .take()
            .ok_or_else(|| Error::invalid_argument("this request was answered already"))?;
        reply.send(answer).map_err(|_| {
            Error::new(
                ErrorKind::Cancelled,
                "the requester stopped waiting (it cancelled the request, timed out or left)",
            )
        })
    }
}

/// Where this agent's direct messages and requests arrive (see [`crate::Agent::inbox`]).
/// Closing it (or dropping it) refuses further letters; those already queued can still be
/// read.
pub struct Inbox {
    queue: Arc<BoundedQueue<DirectMessage>>,
    direct: Weak<Direct>,
}

impl std::fmt::Debug for Inbox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Inbox")
            .field("closed", &self.is_closed())
            .field("dropped", &self.dropped())
            .finish()
    }
}

impl Inbox {
    /// Up to `max` messages, waiting for at least one; `None` once closed and drained.
    pub async fn next_batch(&self, max: usize) -> Option<Vec<DirectMessage>> {
        self.queue.pop(max).await
    }

    /// Up to `max` messages without waiting (possibly none); `None` once closed and drained.
    pub fn try_next_batch(&self, max: usize) -> Option<Vec<DirectMessage>> {
        self.queue.try_pop(max)
    }

    /// Messages dropped because the inbox was full (a dropped request is refused).
    pub fn dropped(&self) -> u64 {
        self.queue.dropped()
    }

    /// Stops taking letters. Messages already queued can still be read; then it ends.
    pub fn close(&self) {
        self.queue.close();
        if let Some(direct) = self.direct.upgrade() {
            let mut state = direct.lock();
            if state
                .inbox
                .as_ref()
                .is_some_and(|open| Arc::ptr_eq(open, &self.queue))
            {
                state.inbox = None;
            }
        }
    }

    /// Whether [`Inbox::close`] was called (or the agent closed).
    pub fn is_closed(&self) -> bool {
        self.queue.is_closed()
    }
}

impl Drop for Inbox {
    fn drop(&mut self) {
        self.close();
    }
}

/// A direct connection, and how busy it is.
struct Link {
    connection: Connection,
    /// This agent's cards for the peer (written on the hello stream, see `show_cards`).
    cards: tokio::sync::mpsc::UnboundedSender<Bytes>,
    /// Streams under way (either direction).
    streams: usize,
    last_used: Instant,
}

#[derive(Default)]
struct State {
    links: HashMap<AgentId, Link>,
    /// One dial at a time per agent: the second caller waits and takes its connection.
    dials: HashMap<AgentId, Arc<tokio::sync::Mutex<()>>>,
    inbox: Option<Arc<BoundedQueue<DirectMessage>>>,
    requests_seen: HashSet<(AgentId, u64)>,
    requests_order: VecDeque<(AgentId, u64)>,
    closed: bool,
}

/// One agent's direct connections and inbox.
pub(crate) struct Direct {
    /// The next request's id: counts up from a random start, so that a restarted agent's
    /// ids do not look like duplicates to a recipient that remembers the last run's.
    next_request: std::sync::atomic::AtomicU64,
    credentials: Arc<Credentials>,
    endpoint: net::Endpoint,
    listen: SocketAddr,
    context: Arc<AgentContext>,
    presence: Arc<Presence>,
    state: Mutex<State>,
}

impl Direct {
    /// The direct layer of the agent with `credentials`, dialing from `endpoint`; its hellos
    /// advertise `listen`.
    pub(crate) fn start(
        credentials: Arc<Credentials>,
        endpoint: net::Endpoint,
        listen: SocketAddr,
        context: Arc<AgentContext>,
        presence: Arc<Presence>,
    ) -> Arc<Self> {
        let mut start = [0u8; 8];
        aws_lc_rs::rand::fill(&mut start).expect("the system random source works");
        let direct = Arc::new(Self {
            next_request: std::sync::atomic::AtomicU64::new(u64::from_le_bytes(start) >> 1),
            credentials,
            endpoint,
            listen,
            context,
            presence,
            state: Mutex::default(),
        });
        tokio::spawn(reap(Arc::downgrade(&direct)));
        direct
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn me(&self) -> AgentId {
        self.credentials.agent_id()
    }

    /// A fresh request id (never 0, which marks a message).
    pub(crate) fn request_id(&self) -> u64 {
        let id = self
            .next_request
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        id.max(1)
    }

    /// Opens the inbox; fails while another is open (one place for letters to go).
    pub(crate) fn open_inbox(self: &Arc<Self>, capacity: usize) -> Result<Inbox> {
        let mut state = self.lock();
        if state.closed {
            return Err(Error::new(ErrorKind::Closed, "the agent is closed"));
        }
        if state.inbox.as_ref().is_some_and(|open| !open.is_closed()) {
            return Err(Error::new(
                ErrorKind::InUse,
                "an inbox is open already (serve() opens one too): close it first",
            ));
        }
        let queue = Arc::new(BoundedQueue::new(capacity));
        state.inbox = Some(Arc::clone(&queue));
        Ok(Inbox {
            queue,
            direct: Arc::downgrade(self),
        })
    }

    /// Takes over a direct connection (dialed, or accepted and authenticated): both ends
    /// show their cards on its hello stream, then letters go both ways.
    pub(crate) fn adopt(self: &Arc<Self>, auth: Authenticated) {
        let Authenticated {
            peer,
            machine,
            connection,
            send,
            recv,
            ..
        } = auth;
        if peer == self.me() {
            connection.close(net::CLOSE_SELF.into(), b"this agent itself");
            return;
        }
        let (cards, card_rx) = tokio::sync::mpsc::unbounded_channel();
        if let Ok((card, _)) = self.presence.card() {
            let _ = cards.send(card);
        }
        tokio::spawn(write_cards(send, card_rx));
        tokio::spawn(read_cards(Arc::clone(&self.presence), peer, machine, recv));
        {
            let mut state = self.lock();
            if state.closed {
                connection.close(net::CLOSE_NORMAL.into(), b"closed");
                return;
            }
            // The newest connection carries what we send; an older one ends when idle.
            state.links.insert(
                peer,
                Link {
                    connection: connection.clone(),
                    cards,
                    streams: 0,
                    last_used: Instant::now(),
                },
            );
        }
        tokio::spawn(Arc::clone(self).serve(peer, connection));
    }

    /// Sends `letter` to `to` and waits for its answer. `locate` names where `to` may be
    /// reached; it is awaited only when there is no connection to `to` yet.
    pub(crate) async fn post(
        self: &Arc<Self>,
        to: AgentId,
        letter: Letter,
        locate: impl Future<Output = Vec<SocketAddr>>,
    ) -> Result<Answer> {
        let connection = self.connection(to, locate).await?;
        let _busy = Busy::start(self, to);
        let lost = |e: &dyn std::fmt::Display| {
            Error::new(
                ErrorKind::NotFound,
                format!(
                    "the connection to agent {to:?} was lost before it answered ({e}); a \
                     request may have been processed"
                ),
            )
        };
        let (mut send, mut recv) = connection.open_bi().await.map_err(|e| lost(&e))?;
        let mut frame = bytes::BytesMut::new();
        net::put_frame(&mut frame, &letter.encode());
        send.write_all(&frame).await.map_err(|e| lost(&e))?;
        let _ = send.finish();
        self.context
            .counters
            .add(&self.context.counters.direct_out, 1);
        let frame = match net::read_frame_checked(&mut recv).await {
            Ok(Some(frame)) if frame.len() <= MAX_ANSWER_LEN => frame,
            Ok(Some(frame)) => {
                return Err(Error::new(
                    ErrorKind::Protocol,
                    format!("agent {to:?} answered with a {}-byte frame", frame.len()),
                ))
            }
            Ok(None) => return Err(lost(&"it closed the stream")),
            Err(ReadError::Io(e)) => return Err(lost(&e)),
            Err(ReadError::Oversized(len)) => {
                return Err(Error::new(
                    ErrorKind::Protocol,
                    format!("agent {to:?} answered with a {len}-byte frame"),
                ))
            }
        };
        Answer::decode(&frame).ok_or_else(|| {
            Error::new(
                ErrorKind::Protocol,
                format!("agent {to:?} answered with a frame that does not decode"),
            )
        })
    }

    /// Opens a direct connection to `to` at one of `addrs` unless there is one; its card
    /// arrives in `presence` shortly after.
    pub(crate) async fn connect(
        self: &Arc<Self>,
        to: AgentId,
        addrs: Vec<SocketAddr>,
    ) -> Result<()> {
        self.connection(to, async { addrs }).await.map(|_| ())
    }

    /// A live connection to `to`: the one there is, or a new one to one of the addresses
    /// `locate` names.
    async fn connection(
        self: &Arc<Self>,
        to: AgentId,
        locate: impl Future<Output = Vec<SocketAddr>>,
    ) -> Result<Connection> {
        if let Some(connection) = self.live(&to)? {
            return Ok(connection);
        }
        let gate = Arc::clone(self.lock().dials.entry(to).or_default());
        let _dialing = gate.lock().await;
        if let Some(connection) = self.live(&to)? {
            return Ok(connection);
        }
        let addrs = locate.await;
        if addrs.is_empty() {
            return Err(Error::new(
                ErrorKind::NotFound,
                format!("no agent {to:?} is known in the network"),
            ));
        }
        let mut errors = Vec::new();
        for addr in &addrs {
            match net::dial_direct(&self.endpoint, &self.credentials, self.listen, *addr, to).await
            {
                Ok(auth) => {
                    let connection = auth.connection.clone();
                    self.adopt(auth);
                    return Ok(connection);
                }
                Err(e) => errors.push(format!("{addr}: {e}")),
            }
        }
        Err(Error::new(
            ErrorKind::NotFound,
            format!("agent {to:?} cannot be reached ({})", errors.join("; ")),
        ))
    }

    /// The open connection to `to`, if any.
    fn live(&self, to: &AgentId) -> Result<Option<Connection>> {
        let mut state = self.lock();
        if state.closed {
            return Err(Error::new(ErrorKind::Closed, "the agent is closed"));
        }
        match state.links.get(to) {
            Some(link) if link.connection.close_reason().is_none() => {
                Ok(Some(link.connection.clone()))
            }
            Some(_) => {
                state.links.remove(to);
                Ok(None)
            }
            None => Ok(None),
        }
    }

    /// Answers the letters `peer` sends on `connection` until it ends.
    async fn serve(self: Arc<Self>, peer: AgentId, connection: Connection) {
        while let Ok((send, recv)) = connection.accept_bi().await {
            tokio::spawn(Arc::clone(&self).answer(peer, send, recv));
        }
        let mut state = self.lock();
        if state
            .links
            .get(&peer)
            .is_some_and(|link| link.connection.stable_id() == connection.stable_id())
        {
            state.links.remove(&peer);
        }
    }

    /// Reads one letter from `peer` and answers it.
    async fn answer(self: Arc<Self>, peer: AgentId, mut send: SendStream, mut recv: RecvStream) {
        let _busy = Busy::start(&self, peer);
        let counters = &self.context.counters;
        let frame = match net::read_frame_checked(&mut recv).await {
            Ok(Some(frame)) if frame.len() <= MAX_LETTER_LEN => frame,
            Ok(Some(_)) | Err(ReadError::Oversized(_)) => {
                counters.add(&counters.dropped_oversized, 1);
                return;
            }
            Ok(None) | Err(ReadError::Io(_)) => return,
        };
        let Some(letter) = Letter::decode(&frame) else {
            counters.add(&counters.dropped_malformed, 1);
            return;
        };
        counters.add(&counters.direct_in, 1);
        let answer = self.take(peer, letter, &mut send).await;
        if let Answer::Refused(_) = answer {
            counters.add(&counters.direct_refused, 1);
        }
        let mut frame = bytes::BytesMut::new();
        net::put_frame(&mut frame, &answer.encode());
        if send.write_all(&frame).await.is_ok() {
            let _ = send.finish();
        }
    }

    /// Puts `letter` in the inbox; the answer the sender gets.
    async fn take(&self, peer: AgentId, letter: Letter, send: &mut SendStream) -> Answer {
        let me = self.me();
        if !self.context.is_joined() {
            return Answer::Refused(format!("agent {me:?} has left the network"));
        }
        let (inbox, fresh) = {
            let mut state = self.lock();
            let fresh = letter.request_id == 0 || state.remember_request(peer, letter.request_id);
            (state.inbox.clone(), fresh)
        };
        if !fresh {
            return Answer::Refused(format!(
                "request {} from this agent reached agent {me:?} twice: it is answered once",
                letter.request_id
            ));
        }
        let Some(inbox) = inbox else {
            return Answer::Refused(format!(
                "agent {me:?} has no inbox open (it neither reads direct messages nor serves \
                 requests)"
            ));
        };
        let (reply, replied) = if letter.request_id == 0 {
            (None, None)
        } else {
            let (reply, replied) = oneshot::channel();
            (Some(reply), Some(replied))
        };
        let message = DirectMessage {
            payload: letter.payload,
            sender: peer,
            timestamp_ms: letter.timestamp_ms,
            request_id: letter.request_id,
            reply: Mutex::new(reply),
        };
        if !inbox.push_all([message]) {
            return Answer::Refused(format!("agent {me:?} closed its inbox"));
        }
        // The queued request holds its reply channel: held here too, an inbox dropped unread
        // would live on until the requester gave up, instead of refusing it.
        drop(inbox);
        let Some(replied) = replied else {
            return Answer::Delivered;
        };
        tokio::select! {
            answer = replied => answer.unwrap_or_else(|_| Answer::Refused(format!(
                "agent {me:?} dropped the request without replying (its inbox was full, or \
                 the program discarded the message)"
            ))),
            // The requester cancelled or timed out: nobody reads the answer.
            _ = send.stopped() => Answer::Refused(String::new()),
        }
    }

    /// Stops taking letters and closes the inbox (the agent is closing). The connections stay
    /// up, so that answers already handed over still leave, until [`Direct::close_links`].
    pub(crate) fn close(&self) {
        let inbox = {
            let mut state = self.lock();
            state.closed = true;
            state.inbox.take()
        };
        if let Some(inbox) = inbox {
            inbox.close();
        }
    }

    /// Closes every direct connection (after [`Direct::close`]).
    pub(crate) fn close_links(&self) {
        let links = std::mem::take(&mut self.lock().links);
        for link in links.into_values() {
            link.connection.close(net::CLOSE_NORMAL.into(), b"closed");
        }
    }

    /// Shows `card` (this agent's new card, or its farewell) to every direct peer.
    pub(crate) fn show_cards(&self, card: &Bytes) {
        for link in self.lock().links.values() {
            let _ = link.cards.send(card.clone());
        }
    }

    /// Direct connections open now.
    pub(crate) fn connections(&self) -> usize {
        self.lock().links.len()
    }

    /// Closes connections without a stream for [`CONNECTION_IDLE`].
    fn close_idle(&self, now: Instant) {
        let mut state = self.lock();
        let idle: Vec<AgentId> = state
            .links
            .iter()
            .filter(|(_, link)| {
                link.streams == 0 && now.duration_since(link.last_used) >= CONNECTION_IDLE
            })
            .map(|(peer, _)| *peer)
            .collect();
        for peer in idle {
            if let Some(link) = state.links.remove(&peer) {
                link.connection.close(net::CLOSE_NORMAL.into(), b"idle");
            }
        }
        let links = &state.links;
        let dials: Vec<AgentId> = state
            .dials
            .iter()
            .filter(|(peer, gate)| !links.contains_key(peer) && Arc::strong_count(gate) == 1)
            .map(|(peer, _)| *peer)
            .collect();
        for peer in dials {
            state.dials.remove(&peer);
        }
    }
}

impl State {
    /// Records request `id` from `peer`; false if it was seen already.
    fn remember_request(&mut self, peer: AgentId, id: u64) -> bool {
        if !self.requests_seen.insert((peer, id)) {
            return false;
        }
        self.requests_order.push_back((peer, id));
        if self.requests_order.len() > REQUESTS_REMEMBERED {
            if let Some(oldest) = self.requests_order.pop_front() {
                self.requests_seen.remove(&oldest);
            }
        }
        true
    }
}

/// Marks a connection busy while a stream on it is under way.
struct Busy<'a> {
    direct: &'a Direct,
    peer: AgentId,
}

impl<'a> Busy<'a> {
    fn start(direct: &'a Direct, peer: AgentId) -> Self {
        if let Some(link) = direct.lock().links.get_mut(&peer) {
            link.streams += 1;
            link.last_used = Instant::now();
        }
        Self { direct, peer }
    }
}

impl Drop for Busy<'_> {
    fn drop(&mut self) {
        if let Some(link) = self.direct.lock().links.get_mut(&self.peer) {
            link.streams = link.streams.saturating_sub(1);
            link.last_used = Instant::now();
        }
    }
}

/// Writes this agent's cards on a direct connection's hello stream.
async fn write_cards(mut send: SendStream, mut cards: tokio::sync::mpsc::UnboundedReceiver<Bytes>) {
    while let Some(card) = cards.recv().await {
        let mut frame = bytes::BytesMut::new();
        net::put_frame(&mut frame, &card);
        if send.write_all(&frame).await.is_err() {
            return;
        }
    }
    let _ = send.finish();
}

/// Reads the cards `peer` shows on a direct connection's hello stream.
async fn read_cards(
    presence: Arc<Presence>,
    peer: AgentId,
    machine: MachineId,
    mut recv: RecvStream,
) {
    while let Ok(Some(card)) = net::read_frame_checked(&mut recv).await {
        presence.accept(peer, machine, &card);
    }
}

async fn reap(direct: Weak<Direct>) {
    let mut ticks = tokio::time::interval(REAP_PERIOD);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticks.tick().await;
        let Some(direct) = direct.upgrade() else {
            return;
        };
        if direct.lock().closed {
            return;
        }
        direct.close_idle(Instant::now());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_request_id_is_taken_once_per_sender_until_it_is_forgotten() {
        let mut state = State::default();
        let (alice, bob) = (AgentId([1; 32]), AgentId([2; 32]));
        assert!(state.remember_request(alice, 7));
        assert!(!state.remember_request(alice, 7), "a duplicate delivery");
        assert!(state.remember_request(bob, 7), "ids are per sender");
        for id in 100..100 + REQUESTS_REMEMBERED as u64 {
            assert!(state.remember_request(alice, id));
        }
        assert_eq!(state.requests_seen.len(), REQUESTS_REMEMBERED);
        assert!(
            state.remember_request(alice, 7),
            "forgotten after 4,096 newer ones"
        );
    }
}
