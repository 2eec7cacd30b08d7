"""Find an agent by what it can do, then ask it: capabilities, ``find`` and ``request``.

    python examples/request_response.py

A summarizer advertises the capability ``"summarize"`` and serves requests. A client that
knows neither its id nor its address joins the same network through a third agent, finds it
by capability (a lookup in the network's directory; the card it gets back is signed by the
summarizer and came over a connection that proved its id), and sends it a text to summarize.
From the shell: ``x0x serve summarize`` and ``x0x find summarize``.
"""

import asyncio

import x0x

TEXT = b"x0x lets software agents find each other by capability and call each other directly."


async def summarize(message: x0x.DirectMessage) -> bytes:
    """The summarizer's handler: the first five words."""
    return b" ".join(message.payload.split()[:5]) + b" ..."


async def main() -> None:
    hub = await x0x.Agent.builder().build()
    await hub.join_network()  # no bootstrap peers: the hub starts the network
    summarizer = await (
        x0x.Agent.builder()
        .with_capabilities(["summarize", "summarize:en"])
        .with_info({"model": "first-five-words"})
        .with_bootstrap(hub.local_addr)
        .build()
    )
    client = await x0x.Agent.builder().with_bootstrap(hub.local_addr).build()
    async with hub, summarizer, client:
        await summarizer.join_network()
        await client.join_network()
        async with summarizer.serve(summarize):
            found = await client.find("summarize", timeout=5, limit=1)
            if not found:
                raise SystemExit("nobody advertises 'summarize'")
            agent = found[0]
            print(f"found {agent.agent_id.to_hex()[:16]} with {', '.join(agent.capabilities)}")
            print(f"its card says model={agent.info['model']}")
            print(f"same machine: {agent.machine_id == summarizer.machine_id}")
            summary = await client.request(agent.agent_id, TEXT, timeout=10)
            print(f"summary: {summary.decode()}")
        print(f"the client knows {len(client.peers())} agents")


if __name__ == "__main__":
    asyncio.run(main())
