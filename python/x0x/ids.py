"""Identities: ``MachineId``, ``AgentId`` (32 bytes each) and ``PublicKey`` (ML-DSA-65)."""

from typing import Type, TypeVar, Union

from ._ffi import c_str, check, ffi, lib

__all__ = ["AgentId", "MachineId", "PublicKey", "TaskId", "TaskListId"]

_IdT = TypeVar("_IdT", bound="_Id")
BytesLike = Union[bytes, bytearray, memoryview]
"""Bytes, or an object that exposes them (``bytearray``, ``memoryview``)."""


class _Id:
    """A 32-byte id. Ids of different kinds never compare equal, even with the same bytes."""

    __slots__ = ("_bytes",)
    LENGTH: int = lib.X0X_ID_LEN
    """Bytes in an id."""

    def __init__(self, data: BytesLike) -> None:
        raw = bytes(data)
        if len(raw) != self.LENGTH:
            raise ValueError(f"{type(self).__name__} needs {self.LENGTH} bytes, got {len(raw)}")
        self._bytes = raw

    @classmethod
    def from_hex(cls: Type[_IdT], text: str) -> _IdT:
        """Parses 64 hex digits (either case); raises ``InvalidArgumentError`` (a ValueError)."""
        if not isinstance(text, str):
            raise TypeError(f"from_hex() takes a str, not {type(text).__name__}")
        out = ffi.new("X0xId *")
        check(lib.x0x_id_from_hex(c_str(text, "text"), out))
        return cls(ffi.buffer(out.bytes))

    def to_hex(self) -> str:
        """Lower-case hex, 64 characters."""
        buf = ffi.new("char[]", lib.X0X_ID_HEX_LEN + 1)
        check(lib.x0x_id_to_hex(self._cdata(), buf, len(buf)))
        return str(ffi.string(buf).decode("ascii"))

    def _cdata(self) -> object:
        out = ffi.new("X0xId *")
        ffi.memmove(out.bytes, self._bytes, self.LENGTH)
        return out

    def __bytes__(self) -> bytes:
        return self._bytes

    def __eq__(self, other: object) -> bool:
        if type(other) is not type(self):
            return NotImplemented
        return self._bytes == other._bytes

    def __hash__(self) -> int:
        return hash((type(self).__name__, self._bytes))

    def __str__(self) -> str:
        return self.to_hex()

    def __repr__(self) -> str:
        return f"{type(self).__name__}('{self.to_hex()}')"


class MachineId(_Id):
    """Identifies a machine: SHA-256 of ``"AUTONOMI_PEER_ID_V2:"`` and its machine public key."""

    __slots__ = ()


class AgentId(_Id):
    """Identifies an agent: SHA-256 of ``"AUTONOMI_PEER_ID_V2:"`` and its agent public key."""

    __slots__ = ()


class PublicKey:
    """An ML-DSA-65 public key (1952 bytes)."""

    __slots__ = ("_bytes",)
    LENGTH: int = lib.X0X_PUBLIC_KEY_LEN
    """Bytes in a public key."""

    def __init__(self, data: BytesLike) -> None:
        raw = bytes(data)
        if len(raw) != self.LENGTH:
            raise ValueError(f"PublicKey needs {self.LENGTH} bytes, got {len(raw)}")
        self._bytes = raw

    @classmethod
    def from_hex(cls, text: str) -> "PublicKey":
        """Parses 3904 hex digits; raises ``ValueError`` on bad hex or a wrong length."""
        if not isinstance(text, str):
            raise TypeError(f"from_hex() takes a str, not {type(text).__name__}")
        if len(text) != 2 * cls.LENGTH:
            raise ValueError(
                f"invalid public key: expected {2 * cls.LENGTH} hex digits, got {len(text)}"
            )
        try:
            return cls(bytes.fromhex(text))
        except ValueError as e:
            raise ValueError(f"invalid public key: {e}") from None

    def to_hex(self) -> str:
        """Lower-case hex, 3904 characters."""
        return self._bytes.hex()

    def __bytes__(self) -> bytes:
        return self._bytes

    def __len__(self) -> int:
        return self.LENGTH

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, PublicKey):
            return NotImplemented
        return self._bytes == other._bytes

    def __hash__(self) -> int:
        return hash(("PublicKey", self._bytes))

    def __str__(self) -> str:
        return self.to_hex()

    def __repr__(self) -> str:
        return f"PublicKey('{self._bytes[:8].hex()}…', {self.LENGTH} bytes)"


class TaskId(_Id):
    """Identifies a task: BLAKE3 of its title, its creator's AgentId and its creation time."""

    __slots__ = ()


class TaskListId(_Id):
    """Identifies a task list, and is the key to it: whoever holds it can join the list, read
    its tasks and change them, so give it only to the agents that may (``join_task_list``).

    The id itself never travels: a list's sync uses a topic and a key derived from it, and
    its messages are encrypted and authenticated, so an agent that only sees the traffic can
    neither read the list nor change it.
    """

    __slots__ = ()
