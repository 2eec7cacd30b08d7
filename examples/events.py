"""Watch an agent's connection events while another agent joins and leaves.

    python examples/events.py

Handlers can be plain functions or coroutines; an exception in one is logged, not raised.
"""

import asyncio

import x0x


async def main() -> None:
    hub = await x0x.Agent.builder().build()
    async with hub:
        await hub.join_network()
        seen = asyncio.Queue()  # type: asyncio.Queue[str]

        def on_connected(event: x0x.ConnectedEvent) -> None:
            print(f"hub: connected ({event['neighbours']} neighbour)")
            seen.put_nowait("connected")

        async def on_peer(event: x0x.PeerEvent) -> None:  # a coroutine handler works too
            print(f"hub: peer event for {event['peer_id'][:16]}…")
            seen.put_nowait("peer")

        def on_disconnected(event: x0x.DisconnectedEvent) -> None:
            print("hub: disconnected (no neighbours left)")
            seen.put_nowait("disconnected")

        hub.on("connected", on_connected)
        hub.on("peer_joined", on_peer)
        hub.on("peer_left", on_peer)
        hub.on("disconnected", on_disconnected)

        visitor = await x0x.Agent.builder().with_bootstrap(hub.local_addr).build()
        print(f"visitor {visitor.peer_id()[:16]}… joins")
        await visitor.join_network()
        for _ in range(2):  # connected + peer joined
            await asyncio.wait_for(seen.get(), timeout=10)
        print("visitor leaves")
        await visitor.close()
        for _ in range(2):  # peer left + disconnected
            await asyncio.wait_for(seen.get(), timeout=15)


if __name__ == "__main__":
    asyncio.run(main())
