"""x0x: networking for software agents.

Post-quantum (ML-DSA-65) identities, signed gossip pub/sub, direct messages and requests, and
CRDT task lists, from a Rust core through a stable C ABI.

    import asyncio, x0x

    async def main() -> None:
        async with await x0x.Agent.builder().build() as agent:
            print(agent.agent_id, agent.machine_id)

    asyncio.run(main())
"""

from . import _logs
from ._ffi import ffi as _ffi_module_ffi
from ._ffi import lib as _lib
from .agent import Agent, AgentBuilder, Stats, TopicStats, generate_agent_key
from .direct import DirectMessage, Handler, Inbox, Reply, Server
from .errors import (
    ClosedError,
    CorruptDataError,
    CryptoError,
    InternalError,
    InUseError,
    InvalidArgumentError,
    NotConnectedError,
    NotFoundError,
    OperationCancelledError,
    ProtocolError,
    RemoteError,
    X0xError,
    X0xOSError,
    X0xTimeoutError,
)
from .events import (
    AgentEvent,
    ConnectedEvent,
    DisconnectedEvent,
    EventName,
    PeerEvent,
    TaskUpdatedEvent,
)
from .ids import AgentId, MachineId, PublicKey, TaskId, TaskListId
from .presence import AgentInfo
from .pubsub import Message, Subscription
from .tasklist import TaskItem, TaskList, TaskStatus

__version__: str = _ffi_module_ffi.string(_lib.x0x_version()).decode("ascii")
"""The version of x0x, e.g. ``"0.3.0"``: the native library's (``x0x_version()``), which is
Cargo.toml's, as is the installed distribution's (``importlib.metadata``)."""

_logs.sync_level()  # the library's log records reach logger "x0x" from the start

__all__ = [
    "Agent",
    "AgentBuilder",
    "AgentEvent",
    "AgentId",
    "AgentInfo",
    "ClosedError",
    "ConnectedEvent",
    "CorruptDataError",
    "CryptoError",
    "DirectMessage",
    "DisconnectedEvent",
    "EventName",
    "Handler",
    "InUseError",
    "Inbox",
    "InternalError",
    "InvalidArgumentError",
    "MachineId",
    "Message",
    "NotConnectedError",
    "NotFoundError",
    "OperationCancelledError",
    "PeerEvent",
    "ProtocolError",
    "PublicKey",
    "RemoteError",
    "Reply",
    "Server",
    "Stats",
    "Subscription",
    "TaskId",
    "TaskItem",
    "TaskList",
    "TaskListId",
    "TaskStatus",
    "TaskUpdatedEvent",
    "TopicStats",
    "X0xError",
    "X0xOSError",
    "X0xTimeoutError",
    "__version__",
    "generate_agent_key",
]
