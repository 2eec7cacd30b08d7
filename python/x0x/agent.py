"""``Agent`` and ``AgentBuilder``."""

import os
from types import TracebackType
from typing import Any, Iterable, List, Mapping, Optional, Type, TypedDict, Union, cast

from . import _logs, _loops
from ._ffi import c_str, call_async, check, ffi, lib, take_bytes
from ._handle import NativeHandle
from .direct import Handler, Inbox, Server
from .events import EVENT_NAMES, EventHandler, EventName, EventPump, logger
from .ids import AgentId, MachineId, PublicKey, TaskListId
from .presence import AgentInfo, info_arrays, read_infos, string_array
from .pubsub import Subscription
from .tasklist import TaskList

__all__ = ["Agent", "AgentBuilder", "Stats", "generate_agent_key"]


class Stats(TypedDict):
    """An agent's traffic counters (``Agent.stats()``)."""

    published: int
    """Messages this agent published."""
    envelopes_signed: int
    """Signed envelopes (batches of messages) this agent produced."""
    delivered: int
    """Messages handed to subscriber queues (one per subscriber)."""
    dropped_bad_signature: int
    """Received envelopes dropped for a bad signature."""
    dropped_wrong_sender: int
    """Received envelopes dropped for naming a sender whose key the peer did not announce."""
    dropped_malformed: int
    """Received frames or envelopes dropped because they did not decode."""
    dropped_oversized: int
    """Received frames over the size limit (the connection was closed)."""
    dropped_replay: int
    """Received envelopes dropped as replays of ones seen before."""
    queue_overflow: int
    """Messages dropped from full subscriber queues (see ``Subscription.dropped``)."""
    neighbours: int
    """Current gossip neighbours."""
    bytes_in: int
    """Frame bytes received."""
    bytes_out: int
    """Frame bytes sent."""
    envelopes_received: int
    """Verified envelopes (signed batches) received from the overlay, duplicates included."""
    duplicates: int
    """Received envelopes seen before (suppressed). ``duplicates / (envelopes_received -
    duplicates)`` is the overlay's relative message redundancy as this agent sees it."""
    connections_refused: int
    """Incoming connections refused before the handshake: their address kept sending invalid
    messages (connections closed for invalid messages more than 4 times; 1 s, doubling)."""
    connections: int
    """Open peer connections (neighbours, peers being answered, spares from simultaneous dials)."""
    identity_conflicts: int
    """Times an agent id was seen live in two processes at once (the same agent key running
    twice); the later connection is refused."""
    foreign_envelopes_in: int
    """Envelope copies received on topics this agent neither subscribes to nor publishes on,
    duplicates included: each topic travels in a swarm of its own, so only copies already on
    their way when the agent left a topic's swarm."""
    foreign_bytes_in: int
    """The bytes of those envelope copies."""
    direct_out: int
    """Direct messages and requests this agent sent."""
    direct_in: int
    """Direct messages and requests other agents sent to this one."""
    direct_refused: int
    """Of those, the ones refused (no inbox open, a duplicate request, a request dropped
    unanswered) or answered with a failure."""
    cards_rejected: int
    """Agent cards dropped: a bad signature, or a card naming another agent than the one that
    presented it."""
    origin_frames_out: int
    """Origin frames sent: small batches this agent published, sent unsigned to its neighbours in
    the topic's swarm ahead of their signed envelopes (one per neighbour)."""
    origin_frames_in: int
    """Origin frames received from neighbours (well-formed ones)."""
    origin_delivered: int
    """Of those, the ones delivered at once (before their signed envelopes); each batch's signed
    envelope is compared with it when it arrives and is not delivered again."""
    origin_ignored: int
    """Of those, the ones not delivered: the sender is not a neighbour in that topic's swarm here,
    its previous envelope there was not delivered yet, or this one was (its signed envelope then
    delivers it, as usual)."""
    origin_mismatches: int
    """Signed envelopes that carried another batch than the origin frame delivered under the same
    sequence number: the publisher equivocated; its connection was closed."""
    origin_unconfirmed: int
    """Of the origin frames delivered, those whose signed envelope had not come 30 s later (a
    publisher that never signed what it sent, or that stopped in between): nobody else can
    check those messages."""


class TopicStats(TypedDict):
    """One topic's traffic at one agent (``Agent.topic_stats(topic)``): envelope copies (signed
    batches of messages on the topic) received and sent, duplicates and relayed copies
    included."""

    envelopes_in: int
    """Envelope copies received."""
    bytes_in: int
    """Their bytes."""
    envelopes_out: int
    """Envelope copies sent (this agent's own, and relayed)."""
    bytes_out: int
    """Their bytes."""


StrPath = Union[str, "os.PathLike[str]"]
"""A file system path: a ``str`` or an ``os.PathLike`` such as ``pathlib.Path``."""


def generate_agent_key() -> bytes:
    """A new serialized agent key pair (72 bytes, secret) for ``AgentBuilder.with_agent_key``.

    Format: ``b"x0xk"``, version 1, algorithm 1 (ML-DSA-65), two zero bytes, the 32-byte FIPS 204
    seed, then SHA-256 of the first 40 bytes.
    """
    return take_bytes(lib.x0x_agent_key_generate)


def _path(path: StrPath, what: str) -> bytes:
    return c_str(os.fspath(path), what)


class AgentBuilder(NativeHandle):
    """Configures an agent; every ``with_*`` returns the builder so calls chain.

    Defaults: the machine key at ``~/.x0x/machine.key`` (created on first use, shared by every
    agent on the machine), bind ``0.0.0.0:0``, and an ephemeral agent key: without
    ``with_data_dir`` or ``with_agent_key_file`` the agent gets a new ``agent_id`` on every
    ``build()``. Any number of agents built this way, in one process or many, can run on one
    machine and talk to each other.
    """

    __slots__ = ()
    _free = lib.x0x_agent_builder_free

    def __init__(self) -> None:
        super().__init__(lib.x0x_agent_builder_new())

    def with_machine_key(self, path: StrPath) -> "AgentBuilder":
        """Use (or create, mode 0600) the machine key file at ``path``.

        The file is read at ``build()``: an unusable path raises an ``OSError`` subclass there, a
        damaged file ``CorruptDataError`` (the file is never overwritten).
        """
        check(lib.x0x_agent_builder_with_machine_key(self._handle(), _path(path, "path")))
        return self

    def with_ephemeral_machine_key(self) -> "AgentBuilder":
        """Use a fresh machine key that is never written to disk, for an agent that must leave
        no file behind (several agents on one machine share the machine key without it)."""
        check(lib.x0x_agent_builder_with_ephemeral_machine_key(self._handle()))
        return self

    def with_agent_key(self, key: bytes) -> "AgentBuilder":
        """Use a serialized agent key pair (from ``generate_agent_key`` or
        ``Agent.agent_keypair_bytes``); damaged or wrong-length bytes raise ``ValueError``.
        It wins over ``with_agent_key_file`` and the data dir's key."""
        data = bytes(key)
        check(lib.x0x_agent_builder_with_agent_key(self._handle(), data, len(data)))
        return self

    def with_agent_key_file(self, path: StrPath) -> "AgentBuilder":
        """Keep the agent key in the file at ``path``: created (mode 0600) on the first
        ``build()``, loaded after, so the agent keeps its ``agent_id`` across restarts. It wins
        over the data dir's key.

        While the agent runs, ``<path>.lock`` is locked: another ``build()`` with the same file
        raises ``InUseError``. An unusable path raises an ``OSError`` subclass at ``build()``, a
        damaged file ``CorruptDataError`` (never overwritten).
        """
        check(lib.x0x_agent_builder_with_agent_key_file(self._handle(), _path(path, "path")))
        return self

    def with_bind(self, addr: str) -> "AgentBuilder":
        """Bind the agent's UDP socket to ``ip:port`` (default ``"0.0.0.0:0"``: every
        interface, any free port)."""
        check(lib.x0x_agent_builder_with_bind(self._handle(), c_str(addr, "addr")))
        return self

    def with_data_dir(self, path: StrPath) -> "AgentBuilder":
        """Make ``path`` (created if missing) the agent's home: its agent key (``agent.key``,
        unless ``with_agent_key``/``with_agent_key_file`` gives one) and its task lists live
        there, so a restart with the same directory is the same agent with its lists.

        While the agent runs, ``agent.lock`` there is locked: another ``build()`` with the same
        directory, in this process or another, raises ``InUseError`` naming the directory and
        the process. A damaged task list file is renamed to ``*.corrupt``, not loaded, and logged
        as a warning (logger ``"x0x"``).
        """
        check(lib.x0x_agent_builder_with_data_dir(self._handle(), _path(path, "path")))
        return self

    def with_capabilities(self, capabilities: Iterable[str]) -> "AgentBuilder":
        """Advertise these capabilities (``["summarize", "translate:fr"]``): other agents find
        this one by them with ``Agent.find``. At most 64, each 1 to 128 bytes without spaces;
        raises ``InvalidArgumentError`` (a ``ValueError``) naming the problem."""
        array, keep = string_array(capabilities, "capability")
        check(lib.x0x_agent_builder_with_capabilities(self._handle(), array, len(keep)))
        return self

    def with_info(self, info: Mapping[str, str]) -> "AgentBuilder":
        """A small ``str`` to ``str`` map this agent's card shows (``AgentInfo.info``): at most
        4 KiB of keys and values together."""
        keys, values, count, _keep = info_arrays(info)
        check(lib.x0x_agent_builder_with_info(self._handle(), keys, values, count))
        return self

    def with_bootstrap(self, addrs: Union[str, Iterable[str]]) -> "AgentBuilder":
        """Add bootstrap peers, each ``host:port``; one address or an iterable of them."""
        for addr in [addrs] if isinstance(addrs, str) else addrs:
            check(lib.x0x_agent_builder_with_bootstrap(self._handle(), c_str(addr, "addr")))
        return self

    async def build(self) -> "Agent":
        """Load or create the keys and return the agent. The builder stays usable.

        Raises ``InUseError`` while another running agent holds the data dir or agent key file.
        The library's log records go to logger ``x0x`` at its level now (see ``logging``).
        """
        _logs.sync_level()
        builder = self._handle()
        result = await call_async(
            lambda cb, ud, op: lib.x0x_agent_builder_build(builder, cb, ud, op),
            release=lib.x0x_agent_free,
        )
        return Agent(ffi.cast("X0xAgent *", result))


def _needs_a_loop(what: str) -> None:
    try:
        _loops.library()
    except RuntimeError:
        raise RuntimeError(
            f"{what} needs a running event loop (asyncio or trio): call it from async code "
            "(the handlers run on that loop)"
        ) from None


class Agent(NativeHandle):
    """An agent with a machine identity and an agent identity.

    Obtain one with ``await Agent.builder()...build()``; close it with ``await agent.close()`` or
    ``async with``.
    """

    __slots__ = ("_agent_id", "_events", "_machine_id", "_public_key")
    _free = lib.x0x_agent_free

    def __init__(self, ptr: object) -> None:
        """Wraps an ``X0xAgent *`` from the library; use ``Agent.builder()`` instead."""
        super().__init__(ptr)
        # Identities never change for the life of an agent: read them once.
        out = ffi.new("X0xId *")
        check(lib.x0x_agent_agent_id(self._ptr, out))
        self._agent_id = AgentId(ffi.buffer(out.bytes))
        check(lib.x0x_agent_machine_id(self._ptr, out))
        self._machine_id = MachineId(ffi.buffer(out.bytes))
        ptr_ = self._ptr
        self._public_key = PublicKey(take_bytes(lambda o: lib.x0x_agent_public_key(ptr_, o)))
        self._events: Optional[EventPump] = None
        warnings = take_bytes(lambda o: lib.x0x_agent_take_warnings(ptr_, o)).decode("utf-8")
        for warning in filter(None, warnings.split("\n")):
            logger.warning("x0x: %s", warning)

    @staticmethod
    def builder() -> AgentBuilder:
        """A new ``AgentBuilder``."""
        return AgentBuilder()

    @property
    def agent_id(self) -> AgentId:
        """This agent's id."""
        return self._agent_id

    @property
    def machine_id(self) -> MachineId:
        """The id of this agent's machine key."""
        return self._machine_id

    @property
    def public_key(self) -> PublicKey:
        """This agent's ML-DSA-65 public key."""
        return self._public_key

    def agent_keypair_bytes(self) -> bytes:
        """The agent key pair, serialized (secret); pass it to ``with_agent_key`` to reuse it."""
        agent = self._handle()
        return take_bytes(lambda out: lib.x0x_agent_keypair_bytes(agent, out))

    def peer_id(self) -> str:
        """This agent's identity in the network, hex: its agent id, which its connections
        prove (``"peer_joined"`` events name peers by it)."""
        return self._agent_id.to_hex()

    @property
    def local_addr(self) -> str:
        """The bound UDP address: ``"0.0.0.0:5483"`` with the default bind. Agents on this
        machine can bootstrap to it as it is; for other machines use ``local_addrs``."""
        buf = ffi.new("char[]", lib.X0X_ADDR_STR_LEN)
        check(lib.x0x_agent_local_addr(self._handle(), buf, len(buf)))
        return str(ffi.string(buf).decode("ascii"))

    @property
    def local_addrs(self) -> List[str]:
        """Addresses others can dial to reach this agent: the bound address, or when bound to a
        wildcard each address of that family on this host's interfaces, loopback first."""
        agent = self._handle()
        text = take_bytes(lambda out: lib.x0x_agent_local_addrs(agent, out)).decode("ascii")
        return text.split("\n") if text else []

    async def join_network(self, timeout: float = 10.0) -> None:
        """Join the network through the bootstrap peers.

        Returns once one neighbour is up, at once without bootstrap peers (this agent starts a
        network). Bootstrap peers that cannot be reached yet are dialed again (backing off from
        0.1 to 2 s), so agents started together find each other; after ``timeout`` seconds it
        raises ``X0xTimeoutError`` naming each address and its last error. It raises
        ``InvalidArgumentError`` at once when every bootstrap address is this agent's own, and
        ``InUseError`` when a bootstrap peer has this agent's id (the same agent key runs in
        another process).
        """
        if timeout <= 0:
            raise ValueError(f"timeout must be positive, got {timeout}")
        agent = self._handle()
        ms = max(1, min(int(timeout * 1000), 0xFFFF_FFFE))
        await call_async(lambda cb, ud, op: lib.x0x_agent_join_network(agent, ms, cb, ud, op))

    async def leave_network(self) -> None:
        """Leave the network gracefully; publishing then raises ``NotConnectedError``."""
        agent = self._handle()
        await call_async(lambda cb, ud, op: lib.x0x_agent_leave_network(agent, cb, ud, op))

    def is_connected(self) -> bool:
        """Whether the agent has at least one gossip neighbour."""
        out = ffi.new("bool *")
        check(lib.x0x_agent_is_connected(self._handle(), out))
        return bool(out[0])

    async def publish(self, topic: str, payload: Union[bytes, bytearray, memoryview]) -> None:
        """Sign ``payload`` and publish it on ``topic`` to every subscriber in the network.

        This agent's own subscribers get it too; one sender's messages on a topic arrive in
        order. Returns once the message is queued for signing (at once unless the agent is far
        behind). Raises ``NotConnectedError`` before ``join_network()`` or after
        ``leave_network()``, and ``ValueError`` for an empty or over-long topic or a payload over
        256 KiB.
        """
        if not isinstance(payload, (bytes, bytearray, memoryview)):
            raise TypeError(f"payload must be bytes-like, not {type(payload).__name__}")
        agent = self._handle()
        topic_c = c_str(topic, "topic")
        data = ffi.from_buffer(payload)
        await call_async(
            lambda cb, ud, op: lib.x0x_agent_publish(agent, topic_c, data, len(data), cb, ud, op)
        )

    def subscribe(self, topic: str, capacity: int = 1024) -> Subscription:
        """Subscribe to ``topic``; at most ``capacity`` unread messages are kept (oldest
        dropped first). Use it with ``async for`` or ``async with``."""
        if capacity < 1:
            raise ValueError(f"capacity must be at least 1, got {capacity}")
        out = ffi.new("X0xSubscription **")
        check(lib.x0x_agent_subscribe(self._handle(), c_str(topic, "topic"), capacity, out))
        return Subscription(out[0], topic)

    async def send(
        self,
        agent_id: Union[AgentId, str],
        payload: Union[bytes, bytearray, memoryview],
        timeout: float = 10.0,
    ) -> None:
        """Send ``payload`` (at most 256 KiB) to the agent ``agent_id`` (an ``AgentId`` or
        its hex) over a direct connection of their own: opened on demand, end-to-end
        encrypted, never relayed.

        Returns once the message is in the recipient's inbox. Raises ``NotFoundError`` when
        no such agent can be found or reached, ``RemoteError`` when it refused the message (it
        has no inbox open), ``X0xTimeoutError`` when no acknowledgement came within
        ``timeout`` seconds (the message may still arrive), ``NotConnectedError`` before
        ``join_network()`` or after ``leave_network()``, and ``ValueError`` for this agent's
        own id or a payload over the limit. Cancelling the awaiting task cancels the send.
        """
        await self._post(lib.x0x_agent_send, agent_id, payload, timeout)

    async def request(
        self,
        agent_id: Union[AgentId, str],
        payload: Union[bytes, bytearray, memoryview],
        timeout: float = 10.0,
    ) -> bytes:
        """Send ``payload`` to the agent ``agent_id`` as a request, as ``send`` does, and
        return its reply.

        Raises as ``send`` does, and ``RemoteError`` carrying the other agent's reason when its
        handler failed or it dropped the request unanswered. After ``X0xTimeoutError`` the
        request may still have been processed. Cancelling the awaiting task cancels the
        request (the recipient's reply is discarded).
        """
        result = await self._post(lib.x0x_agent_request, agent_id, payload, timeout)
        reply = ffi.cast("X0xBytes *", result)
        try:
            return ffi.buffer(reply.data, reply.len)[:] if reply.len else b""
        finally:
            lib.x0x_bytes_destroy(reply)

    async def _post(
        self,
        start: Any,
        agent_id: Union[AgentId, str],
        payload: Union[bytes, bytearray, memoryview],
        timeout: float,
    ) -> Any:
        """Runs ``x0x_agent_send`` or ``x0x_agent_request`` (``start``) and returns its result."""
        if isinstance(agent_id, str):
            agent_id = AgentId.from_hex(agent_id)
        elif not isinstance(agent_id, AgentId):
            kind = type(agent_id).__name__
            raise TypeError(f"agent_id must be an AgentId or its hex, not {kind}")
        if not isinstance(payload, (bytes, bytearray, memoryview)):
            raise TypeError(f"payload must be bytes-like, not {type(payload).__name__}")
        if not timeout > 0:
            raise ValueError(f"timeout must be positive, got {timeout}")
        agent = self._handle()
        to = agent_id._cdata()
        data = ffi.from_buffer(payload)
        ms = max(1, int(min(timeout * 1000, 0xFFFF_FFFF)))
        return await call_async(
            lambda cb, ud, op: start(agent, to, data, len(data), ms, cb, ud, op),
            release=lib.x0x_bytes_destroy if start is lib.x0x_agent_request else None,
        )

    def inbox(self, capacity: int = 1024) -> Inbox:
        """Open this agent's inbox: the direct messages and requests other agents send arrive
        there from now on (without one, they get ``RemoteError``). At most ``capacity`` unread
        messages are kept (oldest dropped first; a dropped request is refused). One inbox at a
        time: ``InUseError`` while one is open (``serve`` opens one too). Use it with
        ``async for`` or ``async with``."""
        if capacity < 1:
            raise ValueError(f"capacity must be at least 1, got {capacity}")
        out = ffi.new("X0xInbox **")
        check(lib.x0x_agent_inbox(self._handle(), capacity, out))
        return Inbox(out[0])

    def serve(self, handler: Handler, capacity: int = 1024) -> Server:
        """Answer every direct request with ``handler``: ``async def handler(message) ->
        bytes`` gets each ``DirectMessage`` in a task of its own and returns the reply. It
        opens the agent's inbox (``capacity`` as for ``inbox``), so plain messages reach the
        handler too (its result is then ignored).

        A handler that raises makes the requester get ``RemoteError`` with
        ``"ExceptionType: message"``. Returns the running ``Server``: ``close()`` it, or use
        ``async with agent.serve(handler):``. Call it from a running event loop (the handlers
        run on that loop; ``RuntimeError`` otherwise); ``InUseError`` while an inbox is open.
        """
        _needs_a_loop("Agent.serve()")
        return Server(self.inbox(capacity), handler)

    async def create_task_list(self, name: str) -> TaskList:
        """Create a task list; other agents join it with its ``id``."""
        out = ffi.new("X0xTaskList **")
        check(lib.x0x_agent_create_task_list(self._handle(), c_str(name, "name"), out))
        return TaskList(out[0])

    async def join_task_list(self, list_id: Union[TaskListId, str]) -> TaskList:
        """Join a task list by id (hex or ``TaskListId``): a replica that fills up from the
        others and converges with them. Joining twice gives the same list."""
        if isinstance(list_id, str):
            list_id = TaskListId.from_hex(list_id)
        out = ffi.new("X0xTaskList **")
        check(lib.x0x_agent_join_task_list(self._handle(), list_id._cdata(), out))
        return TaskList(out[0])

    def task_lists(self) -> List[TaskList]:
        """This agent's task lists (those created, joined, or loaded from the data dir)."""
        agent = self._handle()
        count = ffi.new("size_t *")
        check(lib.x0x_agent_task_lists(agent, ffi.NULL, 0, count))
        handles = ffi.new("X0xTaskList *[]", count[0])
        check(lib.x0x_agent_task_lists(agent, handles, count[0], count))
        return [TaskList(handles[i]) for i in range(min(count[0], len(handles)))]

    def peers(self) -> List[AgentInfo]:
        """The agents this agent holds a verified card of, by agent id: those it has been
        connected to (overlay neighbours, directory peers, direct peers) and those ``find``
        found; at most 4,096. A snapshot; ``"agent_joined"`` / ``"agent_left"`` events follow
        its changes."""
        out = ffi.new("X0xAgentInfoList **")
        check(lib.x0x_agent_peers(self._handle(), out))
        return read_infos(out[0])

    async def advertise(
        self, capabilities: Iterable[str], info: Optional[Mapping[str, str]] = None
    ) -> None:
        """Advertise ``capabilities`` instead of the current ones, and ``info`` if given (else
        the info map stays). The directory records follow and peers are shown the new card.
        Limits as ``AgentBuilder.with_capabilities`` / ``with_info``."""
        array, keep = string_array(capabilities, "capability")
        agent = self._handle()
        if info is None:
            check(lib.x0x_agent_advertise(agent, array, len(keep), ffi.NULL, ffi.NULL, 0))
            return
        keys, values, count, _keep = info_arrays(info)
        check(lib.x0x_agent_advertise(agent, array, len(keep), keys, values, count))

    async def find(
        self, capability: str, timeout: float = 2.0, limit: Optional[int] = None
    ) -> List[AgentInfo]:
        """Agents that advertise ``capability``, with verified cards, never this agent.

        Known agents come first; when they are fewer than ``limit`` (or no ``limit`` is given)
        a directory lookup across the network finds more, and each one's card is fetched over
        a direct connection. Returns what it has when ``timeout`` seconds pass (possibly an
        empty list: not an error). Raises ``NotConnectedError`` before ``join_network()``.
        """
        if timeout <= 0:
            raise ValueError(f"timeout must be positive, got {timeout}")
        if limit is not None and limit < 1:
            raise ValueError(f"limit must be at least 1, got {limit}")
        agent = self._handle()
        cap = c_str(capability, "capability")
        ms = max(1, min(int(timeout * 1000), 0xFFFF_FFFE))
        result = await call_async(
            lambda cb, ud, op: lib.x0x_agent_find(agent, cap, ms, limit or 0, cb, ud, op),
            release=lib.x0x_agent_info_list_free,
        )
        return read_infos(ffi.cast("X0xAgentInfoList *", result))

    def stats(self) -> Stats:
        """A snapshot of this agent's traffic counters."""
        out = ffi.new("X0xStats *")
        check(lib.x0x_agent_stats(self._handle(), out))
        counters = {name: int(getattr(out, name)) for name in Stats.__annotations__}
        return cast(Stats, counters)

    def topic_stats(self, topic: str) -> TopicStats:
        """The traffic of ``topic`` at this agent. Raises ``NotFoundError`` if the agent has
        neither subscribed to nor published on it in this run (what arrives on such topics is
        counted in ``stats()["foreign_bytes_in"]``)."""
        out = ffi.new("X0xTopicStats *")
        check(lib.x0x_agent_topic_stats(self._handle(), c_str(topic, "topic"), out))
        counters = {name: int(getattr(out, name)) for name in TopicStats.__annotations__}
        return cast(TopicStats, counters)

    def on(self, event: EventName, handler: EventHandler) -> None:
        """Call ``handler(payload)`` on each ``event``: ``"connected"``, ``"disconnected"``,
        ``"peer_joined"``, ``"peer_left"`` or ``"task_updated"`` (payloads: ``ConnectedEvent``,
        ``DisconnectedEvent``, ``PeerEvent``, ``TaskUpdatedEvent``).

        Handlers may be plain functions or coroutine functions; several per event are called in
        the order added. An exception in a handler is logged (logger ``"x0x"``), never raised.
        Call it from a running event loop: the handlers run on that loop (``RuntimeError``
        otherwise).
        """
        if event not in EVENT_NAMES:
            raise ValueError(f"unknown event {event!r}; expected one of {', '.join(EVENT_NAMES)}")
        _needs_a_loop("Agent.on()")
        if self._events is None:
            self._events = EventPump(self._handle())
        self._events.handlers[event].append(handler)

    def off(self, event: EventName, handler: EventHandler) -> None:
        """Stop calling ``handler`` for ``event``; a handler that is not registered is ignored."""
        if event not in EVENT_NAMES:
            raise ValueError(f"unknown event {event!r}; expected one of {', '.join(EVENT_NAMES)}")
        if self._events is not None and handler in self._events.handlers[event]:
            self._events.handlers[event].remove(handler)

    async def close(self) -> None:
        """Leave the network, end subscriptions and event handling, release the handle.
        Idempotent."""
        if self._ptr is None:
            return
        agent = self._ptr
        await call_async(lambda cb, ud, op: lib.x0x_agent_close(agent, cb, ud, op))
        if self._events is not None:
            self._events.close()
            self._events = None
        self._release()

    async def __aenter__(self) -> "Agent":
        return self

    async def __aexit__(
        self,
        exc_type: Optional[Type[BaseException]],
        exc: Optional[BaseException],
        tb: Optional[TracebackType],
    ) -> None:
        await self.close()

    def __repr__(self) -> str:
        state = " closed" if self._ptr is None else ""
        return f"<Agent {self._agent_id.to_hex()[:16]}…{state}>"
