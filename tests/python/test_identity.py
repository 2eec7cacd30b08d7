"""Ids, keys and the agent builder, through the real native library."""

import os
import stat
from pathlib import Path
from typing import List

import anyio
import pytest

import x0x
from x0x import Agent, AgentId, MachineId, PublicKey


def test_id_hex_round_trip_and_case() -> None:
    raw = bytes(range(32))
    agent_id = AgentId(raw)
    text = agent_id.to_hex()
    assert text == raw.hex()
    assert AgentId.from_hex(text) == agent_id
    assert AgentId.from_hex(text.upper()) == agent_id
    assert bytes(agent_id) == raw
    assert str(agent_id) == text
    assert repr(agent_id) == f"AgentId('{text}')"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("abc", "expected 64 hex digits, got 3"),
        ("0" * 62 + "zz", "non-hex character at position 62"),
        ("", "expected 64 hex digits, got 0"),
        ("é" * 32, "non-hex character at position 0"),
        ("é" * 31 + "a", "expected 64 hex digits, got 32 characters"),
    ],
)
def test_invalid_hex_is_a_value_error_with_the_reason(text: str, message: str) -> None:
    with pytest.raises(ValueError, match=message) as info:
        MachineId.from_hex(text)
    assert isinstance(info.value, x0x.InvalidArgumentError)
    assert isinstance(info.value, x0x.X0xError)


def test_from_hex_rejects_non_strings() -> None:
    with pytest.raises(TypeError):
        AgentId.from_hex(b"00" * 32)  # type: ignore[arg-type]


def test_ids_work_as_dict_keys_and_set_members() -> None:
    a1, a2, b = AgentId(b"\x01" * 32), AgentId(b"\x01" * 32), AgentId(b"\x02" * 32)
    assert a1 == a2 and hash(a1) == hash(a2)
    assert a1 != b
    assert len({a1, a2, b}) == 2
    assert {a1: "x"}[a2] == "x"
    # Same bytes, different kind of id: not equal.
    assert MachineId(b"\x01" * 32) != a1
    assert len({MachineId(b"\x01" * 32), a1}) == 2


def test_id_needs_32_bytes() -> None:
    with pytest.raises(ValueError, match="needs 32 bytes, got 3"):
        AgentId(b"abc")


def test_public_key_hex_round_trip_and_errors() -> None:
    key = PublicKey(bytes(range(256)) * 7 + bytes(160))
    assert len(bytes(key)) == 1952
    assert PublicKey.from_hex(key.to_hex()) == key
    assert hash(PublicKey.from_hex(key.to_hex())) == hash(key)
    with pytest.raises(ValueError, match="expected 3904 hex digits"):
        PublicKey.from_hex("00")
    with pytest.raises(ValueError, match="invalid public key"):
        PublicKey.from_hex("zz" * 1952)


async def test_same_key_file_gives_the_same_machine_id(tmp_path: Path) -> None:
    path = tmp_path / "keys" / "machine.key"
    async with await Agent.builder().with_machine_key(path).build() as first:
        pass
    async with await Agent.builder().with_machine_key(str(path)).build() as second:
        pass
    assert first.machine_id == second.machine_id
    assert first.agent_id != second.agent_id  # agent keys are fresh unless given
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert os.path.getsize(path) == 72


async def test_default_machine_key_lives_under_home(isolated_home: Path) -> None:
    async with await Agent.builder().build() as agent:
        pass
    key = isolated_home / ".x0x" / "machine.key"
    assert key.exists()
    async with await Agent.builder().build() as again:
        assert again.machine_id == agent.machine_id


async def test_agents_built_at_once_in_a_new_home_share_one_machine_key() -> None:
    agents: List[Agent] = []
    errors: List[Exception] = []

    async def build() -> None:
        try:
            agents.append(await Agent.builder().build())
        except Exception as error:
            errors.append(error)

    async with anyio.create_task_group() as group:
        for _ in range(4):
            group.start_soon(build)
    for agent in agents:
        await agent.close()
    assert len(agents) == 4, errors
    assert len({a.machine_id for a in agents}) == 1
    assert len({a.agent_id for a in agents}) == 4


async def test_unusable_key_path_raises_an_os_error(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_bytes(b"not a directory")
    builder = Agent.builder().with_machine_key(blocker / "machine.key")
    with pytest.raises(OSError, match="Not a directory") as info:
        await builder.build()
    assert isinstance(info.value, x0x.X0xOSError)
    assert str(blocker / "machine.key") in str(info.value)


async def test_corrupt_key_file_is_refused_and_left_alone(tmp_path: Path) -> None:
    path = tmp_path / "machine.key"
    async with await Agent.builder().with_machine_key(path).build():
        pass
    damaged = bytearray(path.read_bytes())
    damaged[10] ^= 0xFF
    path.write_bytes(bytes(damaged))
    with pytest.raises(x0x.CorruptDataError, match="checksum mismatch") as info:
        await Agent.builder().with_machine_key(path).build()
    assert isinstance(info.value, ValueError)
    assert path.read_bytes() == bytes(damaged)


async def test_agent_key_round_trip() -> None:
    key = x0x.generate_agent_key()
    assert len(key) == 72 and key[:4] == b"x0xk"
    builder = Agent.builder().with_agent_key(key)
    async with await builder.build() as a, await builder.build() as b:
        assert a.agent_id == b.agent_id
        assert a.machine_id == b.machine_id  # one HOME: the machine's key
        assert a.agent_keypair_bytes() == key
        assert a.public_key == b.public_key
        async with await Agent.builder().build() as other:
            assert other.machine_id == a.machine_id and other.agent_id != a.agent_id


async def test_ephemeral_machine_key_leaves_no_file(isolated_home: Path) -> None:
    builder = Agent.builder().with_ephemeral_machine_key()
    async with await builder.build() as a, await builder.build() as b:
        assert a.machine_id != b.machine_id  # a fresh key each build
    assert not (isolated_home / ".x0x").exists()
    async with await Agent.builder().build() as default:
        assert default.machine_id not in (a.machine_id, b.machine_id)


@pytest.mark.parametrize(
    ("key", "message"),
    [
        (b"short", "expected 72 bytes, got 5"),
        (b"\x00" * 72, "missing the x0xk magic"),
    ],
)
def test_bad_agent_key_is_a_value_error(key: bytes, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        Agent.builder().with_agent_key(key)


def test_damaged_agent_key_is_a_value_error() -> None:
    key = bytearray(x0x.generate_agent_key())
    key[20] ^= 1
    with pytest.raises(x0x.InvalidArgumentError, match="checksum mismatch"):
        Agent.builder().with_agent_key(bytes(key))


def test_builder_validates_addresses_and_chains() -> None:
    builder = Agent.builder()
    assert builder.with_bind("127.0.0.1:0") is builder
    assert builder.with_bootstrap(["127.0.0.1:5483", "localhost:1"]) is builder
    assert builder.with_bootstrap("[::1]:9") is builder
    with pytest.raises(ValueError, match='invalid bind address "localhost"'):
        builder.with_bind("localhost")
    with pytest.raises(ValueError, match="expected host:port"):
        builder.with_bootstrap(["127.0.0.1:1", "no-port"])
    with pytest.raises(ValueError, match="not valid UTF-8"):
        builder.with_bind("127.0.0.1:\udcff")


async def test_closed_agent_keeps_ids_but_refuses_native_calls() -> None:
    agent = await Agent.builder().build()
    agent_id = agent.agent_id
    await agent.close()
    await agent.close()  # idempotent
    assert agent.closed
    assert agent.agent_id == agent_id
    with pytest.raises(x0x.ClosedError, match="closed"):
        agent.agent_keypair_bytes()
    assert "closed" in repr(agent)
