"""Build an agent with a persisted machine key, print its identities, and start a network.

    python examples/basic_agent.py [MACHINE_KEY_PATH]

Run it twice with the same path: the machine id comes back (the key file is reused), while the
agent id is new each run unless you keep the agent key (see ``agent_keypair_bytes``). Without a
path, the key lives at ``~/.x0x/machine.key``.
"""

import asyncio
import sys
from typing import Optional

import x0x


async def main(key_path: Optional[str]) -> None:
    builder = x0x.Agent.builder()
    if key_path is not None:
        builder.with_machine_key(key_path)
    try:
        agent = await builder.build()
    except x0x.CorruptDataError as e:  # the file is kept; the user decides what to do with it
        sys.exit(f"refusing to start: {e}")
    except OSError as e:  # unreadable file, or a directory that cannot be created
        sys.exit(f"cannot use the machine key: {e}")

    async with agent:
        print(f"x0x {x0x.__version__}")
        print(f"machine id: {agent.machine_id}")
        print(f"agent id:   {agent.agent_id}")
        print(f"public key: {len(bytes(agent.public_key))} bytes of ML-DSA-65")
        # Keeping these 72 bytes (secretly) keeps the agent id across runs and machines.
        print(f"agent key:  {len(agent.agent_keypair_bytes())} bytes, reusable via with_agent_key")
        # No bootstrap peers: this agent is the first node of a network, others join through it.
        await agent.join_network()
        print(f"joined:     listening on {agent.local_addr}, peer id {agent.peer_id()[:16]}…")
        # 0.0.0.0 (the default bind) works as a bootstrap address on this machine only.
        print(f"dialable:   {', '.join(agent.local_addrs)}")


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1] if len(sys.argv) > 1 else None))
