"""``Agent`` and ``AgentBuilder``."""

import os
from types import TracebackType
from typing import Iterable, Optional, Type, Union

from ._ffi import call_async, check, ffi, lib, take_bytes
from ._handle import NativeHandle
from .ids import AgentId, MachineId, PublicKey

__all__ = ["Agent", "AgentBuilder", "generate_agent_key"]

StrPath = Union[str, "os.PathLike[str]"]


def generate_agent_key() -> bytes:
    """A new serialized agent key pair (72 bytes, secret) for ``AgentBuilder.with_agent_key``.

    Format: ``b"x0xk"``, version 1, algorithm 1 (ML-DSA-65), two zero bytes, the 32-byte FIPS 204
    seed, then SHA-256 of the first 40 bytes.
    """
    return take_bytes(lib.x0x_agent_key_generate)


def _c_str(text: str) -> bytes:
    # Lone surrogates reach the library as invalid UTF-8 and come back as InvalidArgumentError.
    return text.encode("utf-8", "surrogatepass")


class AgentBuilder(NativeHandle):
    """Configures an agent; every ``with_*`` returns the builder so calls chain.

    Defaults: machine key at ``~/.x0x/machine.key`` (created on first use), a fresh agent key.
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
        check(lib.x0x_agent_builder_with_machine_key(self._handle(), _c_str(os.fspath(path))))
        return self

    def with_ephemeral_machine_key(self) -> "AgentBuilder":
        """Use a fresh machine key that is never written to disk."""
        check(lib.x0x_agent_builder_with_ephemeral_machine_key(self._handle()))
        return self

    def with_agent_key(self, key: bytes) -> "AgentBuilder":
        """Use a serialized agent key pair (from ``generate_agent_key`` or
        ``Agent.agent_keypair_bytes``); damaged or wrong-length bytes raise ``ValueError``."""
        data = bytes(key)
        check(lib.x0x_agent_builder_with_agent_key(self._handle(), data, len(data)))
        return self

    def with_bind(self, addr: str) -> "AgentBuilder":
        """Bind the agent's UDP socket to ``ip:port`` (``"127.0.0.1:0"``: any free port)."""
        check(lib.x0x_agent_builder_with_bind(self._handle(), _c_str(addr)))
        return self

    def with_bootstrap(self, addrs: Union[str, Iterable[str]]) -> "AgentBuilder":
        """Add bootstrap peers, each ``host:port``; one address or an iterable of them."""
        for addr in [addrs] if isinstance(addrs, str) else addrs:
            check(lib.x0x_agent_builder_with_bootstrap(self._handle(), _c_str(addr)))
        return self

    async def build(self) -> "Agent":
        """Load or create the keys and return the agent. The builder stays usable."""
        builder = self._handle()
        result = await call_async(
            lambda cb, ud, op: lib.x0x_agent_builder_build(builder, cb, ud, op),
            release=lib.x0x_agent_free,
        )
        return Agent(ffi.cast("X0xAgent *", result))


class Agent(NativeHandle):
    """An agent with a machine identity and an agent identity.

    Obtain one with ``await Agent.builder()...build()``; close it with ``await agent.close()`` or
    ``async with``.
    """

    __slots__ = ("_agent_id", "_machine_id", "_public_key")
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

    async def close(self) -> None:
        """Close the agent and release its handle. Idempotent."""
        if self._ptr is None:
            return
        agent = self._ptr
        await call_async(lambda cb, ud, op: lib.x0x_agent_close(agent, cb, ud, op))
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
