"""The library's log records (x0x's own and its dependencies') in Python's ``logging``."""

import logging
import socket

import anyio
import pytest

import x0x
from x0x._logs import TRACE, logger_name


async def test_a_failed_dial_and_quic_records_reach_python_logging(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(TRACE, logger="x0x")
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as silent:  # bound, never answers
        silent.bind(("127.0.0.1", 0))
        address = f"127.0.0.1:{silent.getsockname()[1]}"
        agent = await x0x.Agent.builder().with_bootstrap(address).build()
        with pytest.raises(x0x.X0xTimeoutError):
            await agent.join_network(timeout=0.5)
        wanted = f"dial to {address} failed"
        for _ in range(500):  # records come from the library's log thread
            if any(wanted in r.getMessage() for r in caplog.records):
                break
            await anyio.sleep(0.01)
        await agent.close()
    dial = [r for r in caplog.records if wanted in r.getMessage()]
    assert dial and dial[0].name == "x0x.gossip" and dial[0].levelno == logging.DEBUG
    # quinn's own records (tracing events) arrive too, under their crate's name.
    assert any(r.name.startswith("x0x.quinn") for r in caplog.records), {
        r.name for r in caplog.records
    }
    caplog.set_level(logging.WARNING, logger="x0x")
    x0x._logs.sync_level()


def test_logger_names_follow_rust_modules() -> None:
    assert logger_name("x0x::gossip") == "x0x.gossip"
    assert logger_name("x0x") == "x0x"
    assert logger_name("quinn_proto::connection") == "x0x.quinn_proto.connection"
