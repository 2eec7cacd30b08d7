"""Agent events: names, payloads (TypedDicts), and the pump that calls handlers."""

import functools
import inspect
import logging
from typing import (
    Any,
    Awaitable,
    Callable,
    Dict,
    List,
    Literal,
    Optional,
    Set,
    Tuple,
    TypedDict,
    Union,
    get_args,
)

from . import _loops
from ._ffi import call_async, check, ffi, lib
from .errors import ClosedError

__all__ = [
    "EVENT_NAMES",
    "AgentEvent",
    "ConnectedEvent",
    "DisconnectedEvent",
    "EventHandler",
    "EventName",
    "PeerEvent",
    "TaskUpdatedEvent",
]

logger = logging.getLogger("x0x")

EventName = Literal[
    "connected",
    "disconnected",
    "peer_joined",
    "peer_left",
    "task_updated",
    "agent_joined",
    "agent_left",
]
"""The events ``Agent.on`` accepts; each names its payload type (``ConnectedEvent`` ...)."""
EVENT_NAMES: Tuple[str, ...] = get_args(EventName)
"""Every event name, from ``EventName`` (the one list of them)."""


class ConnectedEvent(TypedDict):
    """``"connected"``: the agent gained its first gossip neighbour."""

    neighbours: int
    """How many gossip neighbours the agent has now."""


class DisconnectedEvent(TypedDict):
    """``"disconnected"``: the agent lost its last gossip neighbour (or left the network)."""

    neighbours: int
    """Always 0."""


class PeerEvent(TypedDict):
    """``"peer_joined"`` / ``"peer_left"``: a peer became, or stopped being, a neighbour."""

    peer_id: str
    """The peer's agent id, hex (what its ``Agent.peer_id()`` returns)."""


class AgentEvent(TypedDict):
    """``"agent_joined"`` / ``"agent_left"``: this agent got the card of an agent it knew
    nothing of (``Agent.peers()`` lists it now), or that agent's card expired or it left."""

    agent_id: str
    """The agent's id, hex."""


class TaskUpdatedEvent(TypedDict):
    """``"task_updated"``: a task changed, on this agent or on another replica."""

    list_id: str
    """The list's id, hex."""
    task_id: str
    """The task's id, hex."""
    status: str
    """``"Empty"``, ``"Claimed"`` or ``"Done"`` (``TaskStatus`` names)."""
    assignee: Optional[str]
    """Who claimed or completed it (AgentId hex), or ``None``."""
    origin: str
    """``"local"`` (a change made here) or ``"remote"`` (merged from another agent)."""
    removed: bool
    """Whether the task was removed from the list."""


EventPayload = Union[ConnectedEvent, DisconnectedEvent, PeerEvent, AgentEvent, TaskUpdatedEvent]
EventHandler = Callable[[Any], Union[Awaitable[None], None]]
"""An event handler: a function or coroutine function taking the event's payload."""

_NAMES = {
    lib.X0X_EVENT_CONNECTED: "connected",
    lib.X0X_EVENT_DISCONNECTED: "disconnected",
    lib.X0X_EVENT_PEER_JOINED: "peer_joined",
    lib.X0X_EVENT_PEER_LEFT: "peer_left",
    lib.X0X_EVENT_TASK_UPDATED: "task_updated",
    lib.X0X_EVENT_AGENT_JOINED: "agent_joined",
    lib.X0X_EVENT_AGENT_LEFT: "agent_left",
}
_STATUS = {
    lib.X0X_TASK_EMPTY: "Empty",
    lib.X0X_TASK_CLAIMED: "Claimed",
    lib.X0X_TASK_DONE: "Done",
}


def _hex(x0x_id: Any) -> str:
    return bytes(ffi.buffer(x0x_id.bytes)).hex()


def _decode(event: Any) -> Tuple[str, EventPayload]:
    name = _NAMES[event.kind]
    if name == "task_updated":
        return name, TaskUpdatedEvent(
            list_id=_hex(event.list_id),
            task_id=_hex(event.task_id),
            status=_STATUS[event.task_status],
            assignee=_hex(event.assignee) if event.has_assignee else None,
            origin="remote" if event.remote else "local",
            removed=bool(event.removed),
        )
    if name in ("peer_joined", "peer_left"):
        return name, PeerEvent(peer_id=_hex(event.peer))
    if name in ("agent_joined", "agent_left"):
        return name, AgentEvent(agent_id=_hex(event.peer))
    if name == "connected":
        return name, ConnectedEvent(neighbours=int(event.neighbours))
    return name, DisconnectedEvent(neighbours=0)


async def _awaited(awaitable: Awaitable[object]) -> None:
    await awaitable


class EventPump:
    """Reads one agent's event stream and calls the registered handlers, on the caller's loop."""

    def __init__(self, agent_ptr: Any) -> None:
        out = ffi.new("X0xEventStream **")
        check(lib.x0x_agent_events(agent_ptr, out))
        self._stream = ffi.gc(out[0], lib.x0x_event_stream_free)
        self.handlers: Dict[str, List[EventHandler]] = {name: [] for name in EVENT_NAMES}
        self._tasks: Set[_loops.Task] = set()
        self._task = _loops.spawn(self._run, what="the event pump")

    async def _run(self) -> None:
        # Re-read the handle each round: close() may have freed it while a batch was delivered.
        while self._stream is not None:
            stream = self._stream
            try:
                result = await call_async(
                    functools.partial(lib.x0x_event_stream_next, stream, 64),
                    release=lib.x0x_event_batch_free,
                )
            except ClosedError:
                return
            batch = ffi.cast("X0xEventBatch *", result)
            try:
                events = [
                    _decode(lib.x0x_event_batch_get(batch, i))
                    for i in range(lib.x0x_event_batch_len(batch))
                ]
            finally:
                lib.x0x_event_batch_free(batch)
            for name, payload in events:
                for handler in list(self.handlers[name]):
                    self._call(name, handler, payload)

    def _call(self, name: str, handler: EventHandler, payload: EventPayload) -> None:
        try:
            result = handler(payload)
            if inspect.isawaitable(result):
                task = _loops.spawn(
                    _awaited,
                    result,
                    what=f"an async {name!r} event handler",
                    on_done=self._tasks.discard,
                )
                if not task.done():
                    self._tasks.add(task)  # keep a reference until it finishes
        except Exception:
            logger.exception("x0x: the %r event handler %r raised", name, handler)

    def close(self) -> None:
        """Stops the pump and frees the stream."""
        stream, self._stream = self._stream, None
        if stream is not None:
            lib.x0x_event_stream_close(stream)
            ffi.release(stream)
        self._task.cancel()
