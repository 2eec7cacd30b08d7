"""The smoke test of an installed wheel: two agents in two processes, built with the default
builder, join on loopback; one publishes, the other receives it from the right sender.

    python scripts/wheel_smoke.py        # from outside the checkout, in the wheel's venv

Run by scripts/test_wheels.sh (and `make wheels`) and by cibuildwheel (pyproject.toml).
"""

import asyncio
import os
import platform
import sys

import x0x
from x0x import Agent

here = os.path.dirname(os.path.abspath(x0x.__file__))
assert here.startswith(sys.prefix), f"x0x imported from {here}, not from the venv {sys.prefix}"
PAYLOAD = b"hello from the wheel"


async def agent(bootstrap: str = "") -> Agent:
    builder = Agent.builder()
    if bootstrap:
        builder.with_bootstrap(bootstrap)
    built = await builder.build()
    await built.join_network(timeout=10)
    return built


async def publisher(bootstrap: str) -> None:
    """The second process: joins, prints its id, publishes, stays until stdin closes."""
    bob = await agent(bootstrap=bootstrap)
    try:
        assert bob.is_connected(), "bob did not connect to alice"
        print(bob.agent_id.to_hex(), flush=True)
        await bob.publish("smoke", PAYLOAD)
        await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)
    finally:
        await bob.close()
    assert bob.closed


async def main() -> None:
    alice = await agent()
    try:
        inbox = alice.subscribe("smoke")
        bob = await asyncio.create_subprocess_exec(
            sys.executable,
            __file__,
            alice.local_addr,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
        )
        assert bob.stdin is not None and bob.stdout is not None  # both piped above
        try:
            bob_id = (await asyncio.wait_for(bob.stdout.readline(), timeout=30)).decode().strip()
            assert bob_id, "the publisher process printed no agent id"
            message = await asyncio.wait_for(inbox.__anext__(), timeout=20)
            assert message.payload == PAYLOAD, message
            assert message.sender.to_hex() == bob_id, (message, bob_id)
            bob.stdin.close()
            assert await asyncio.wait_for(bob.wait(), timeout=20) == 0, "the publisher failed"
        finally:
            if bob.returncode is None:
                bob.kill()
                await bob.wait()
    finally:
        await alice.close()
    assert alice.closed


if len(sys.argv) > 1:  # the publisher, started by main() below
    asyncio.run(publisher(sys.argv[1]))
    sys.exit()
asyncio.run(main())
print(
    f"  smoke test ok (two processes): {platform.python_implementation()}"
    f" {platform.python_version()}, x0x {x0x.__version__} from {here}"
)
