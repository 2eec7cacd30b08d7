"""An agent in its own process, built exactly as the README shows, driven over stdin/stdout.

    python chat_peer.py [BOOTSTRAP]

Prints one JSON line with its identities and address once joined, then answers ``publish``
(publishes ``hello from <agent id>`` on ``room``), ``await N`` (waits for N messages on
``room``, its own included, and prints them as JSON ``[[sender, payload], ...]``) and ``quit``.
"""

import asyncio
import json
import sys
from typing import List

import x0x


async def main(bootstrap: List[str]) -> None:
    builder = x0x.Agent.builder()
    if bootstrap:
        builder.with_bootstrap(bootstrap)
    async with await builder.build() as agent:
        room = agent.subscribe("room")
        await agent.join_network()
        identity = {
            "agent_id": agent.agent_id.to_hex(),
            "machine_id": agent.machine_id.to_hex(),
            "peer_id": agent.peer_id(),
            "local_addr": agent.local_addr,
        }
        print(json.dumps(identity), flush=True)
        loop = asyncio.get_running_loop()
        while True:
            command = (await loop.run_in_executor(None, sys.stdin.readline)).split()
            if command == ["publish"]:
                await agent.publish("room", f"hello from {agent.agent_id.to_hex()}".encode())
                print("published", flush=True)
            elif command[:1] == ["await"]:
                got = [await asyncio.wait_for(room.__anext__(), 20) for _ in range(int(command[1]))]
                print(
                    json.dumps([[m.sender.to_hex(), m.payload.decode()] for m in got]), flush=True
                )
            else:
                return


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1:]))
