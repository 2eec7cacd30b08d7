"""An agent in its own process, built exactly as the README shows, that answers direct requests.

    python direct_peer.py [BOOTSTRAP]

Prints one JSON line with its agent id and address once joined, then answers commands on
stdin: ``serve`` (serve requests: ``fail:TEXT`` raises ``ValueError(TEXT)``, ``slow`` sleeps a
minute, anything else is echoed back as ``echo:`` and the payload; plain messages are printed
as JSON ``{"message": payload, "sender": hex}``), ``stop`` (closes the server), ``stats``
(prints the agent's stats as JSON) and ``quit``. Each command prints one line when done.
"""

import asyncio
import json
import sys
from typing import List, Optional

import x0x


async def handler(message: x0x.DirectMessage) -> Optional[bytes]:
    if not message.is_request:
        text = message.payload.decode()
        print(json.dumps({"message": text, "sender": message.sender.to_hex()}), flush=True)
        return None
    if message.payload.startswith(b"fail:"):
        raise ValueError(message.payload[5:].decode())
    if message.payload == b"slow":
        await asyncio.sleep(60)
    return b"echo:" + message.payload


async def main(bootstrap: List[str]) -> None:
    builder = x0x.Agent.builder()
    if bootstrap:
        builder.with_bootstrap(bootstrap)
    async with await builder.build() as agent:
        await agent.join_network()
        print(json.dumps({"agent_id": agent.agent_id.to_hex(), "local_addr": agent.local_addr}))
        sys.stdout.flush()
        server: Optional[x0x.Server] = None
        loop = asyncio.get_running_loop()
        while True:
            command = (await loop.run_in_executor(None, sys.stdin.readline)).strip()
            if command == "serve":
                server = agent.serve(handler)
                print("serving", flush=True)
            elif command == "stop" and server is not None:
                server.close()
                await server.wait_closed()
                print("stopped", flush=True)
            elif command == "stats":
                print(json.dumps(agent.stats()), flush=True)
            else:
                return


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1:]))
