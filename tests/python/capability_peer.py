"""An agent that advertises capabilities, in its own process, built as the README shows.

    python capability_peer.py CAPABILITIES [BOOTSTRAP]

``CAPABILITIES`` is comma-separated. Prints one JSON line with its identities and address once
joined, then answers ``advertise CAPS`` (prints ``advertised``), ``leave`` (leaves the network,
prints ``left``) and ``quit``.
"""

import asyncio
import json
import sys
from typing import List

import x0x


async def main(capabilities: str, bootstrap: List[str]) -> None:
    builder = x0x.Agent.builder().with_capabilities(capabilities.split(","))
    builder.with_info({"role": "capability_peer"})
    if bootstrap:
        builder.with_bootstrap(bootstrap)
    async with await builder.build() as agent:
        await agent.join_network()
        identity = {
            "agent_id": agent.agent_id.to_hex(),
            "machine_id": agent.machine_id.to_hex(),
            "local_addr": agent.local_addr,
        }
        print(json.dumps(identity), flush=True)
        loop = asyncio.get_running_loop()
        while True:
            command = (await loop.run_in_executor(None, sys.stdin.readline)).split()
            if command[:1] == ["advertise"]:
                await agent.advertise(command[1].split(","))
                print("advertised", flush=True)
            elif command == ["leave"]:
                await agent.leave_network()
                print("left", flush=True)
            else:
                return


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2:]))
