"""Presence: ``AgentInfo``, what an agent's verified card says about it (``Agent.peers()``,
``Agent.find()``)."""

import time
from dataclasses import dataclass
from typing import Any, Dict, Iterable, List, Mapping, Sequence, Tuple

from ._ffi import c_str, ffi, lib
from .ids import AgentId, MachineId

__all__ = ["AgentInfo"]


@dataclass(frozen=True)
class AgentInfo:
    """An agent as its card shows it. Its signature was checked, and the card came from that
    agent itself over a connection whose handshake proved its id (and ``machine_id``)."""

    agent_id: AgentId
    """The agent."""
    machine_id: MachineId
    """Its machine."""
    addresses: List[str]
    """Where it accepts connections, ``"ip:port"``, as it says."""
    capabilities: List[str]
    """What it advertises (``Agent.advertise``, ``AgentBuilder.with_capabilities``)."""
    info: Dict[str, str]
    """Its info map."""
    last_seen: float
    """When this agent last received its card, in seconds since the epoch (``time.time()``)."""

    @property
    def age(self) -> float:
        """Seconds since ``last_seen``."""
        return max(0.0, time.time() - self.last_seen)


def _strings(array: Any, count: int) -> List[str]:
    return [ffi.string(array[i]).decode("utf-8") for i in range(count)]


def read_infos(infos: Any) -> List[AgentInfo]:
    """Reads an ``X0xAgentInfoList *`` and frees it."""
    try:
        result = []
        for i in range(lib.x0x_agent_info_list_len(infos)):
            view = lib.x0x_agent_info_list_get(infos, i)
            keys = _strings(view.info_keys, view.info_count)
            values = _strings(view.info_values, view.info_count)
            result.append(
                AgentInfo(
                    agent_id=AgentId(ffi.buffer(view.agent_id.bytes)),
                    machine_id=MachineId(ffi.buffer(view.machine_id.bytes)),
                    addresses=_strings(view.addresses, view.address_count),
                    capabilities=_strings(view.capabilities, view.capability_count),
                    info=dict(zip(keys, values)),
                    last_seen=view.last_seen_ms / 1000.0,
                )
            )
        return result
    finally:
        lib.x0x_agent_info_list_free(infos)


def string_array(texts: Iterable[str], what: str) -> Tuple[Any, List[Any]]:
    """A ``const char *const *`` of ``texts`` for one call, with what keeps it alive."""
    if isinstance(texts, str):
        raise TypeError(f"{what} must be a list of strings, not a str")
    keep = [ffi.new("char[]", c_str(text, what)) for text in texts]
    return ffi.new("const char *[]", keep), keep


def info_arrays(info: Mapping[str, str]) -> Tuple[Any, Any, int, Sequence[Any]]:
    """``info_keys``, ``info_values`` and their count for one call, with what keeps them alive."""
    if not isinstance(info, Mapping):
        raise TypeError(f"info must be a mapping of str to str, not {type(info).__name__}")
    keys, keep_keys = string_array(list(info.keys()), "info key")
    values, keep_values = string_array(list(info.values()), "info value")
    return keys, values, len(info), (keep_keys, keep_values)
