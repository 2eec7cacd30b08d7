"""Two agents exchange signed messages over QUIC on loopback.

    python examples/pubsub_messaging.py

Alice starts a network; Bob joins it through Alice's address. Both subscribe to "chat" and
each publishes; every message is signed with ML-DSA-65 by its sender and verified on arrival,
so ``message.sender`` is the proven author. (For two separate processes or shells, see
``python -m x0x --help``.)
"""

import asyncio
from typing import Dict

import x0x


async def agent(name: str, bootstrap: str = "") -> x0x.Agent:
    builder = x0x.Agent.builder()
    if bootstrap:
        builder.with_bootstrap(bootstrap)
    built = await builder.build()
    print(f"{name}: agent {built.agent_id.to_hex()[:16]}… on {built.local_addr}")
    return built


async def receive(
    name: str, subscription: x0x.Subscription, names: Dict[x0x.AgentId, str], count: int
) -> None:
    for _ in range(count):
        message = await asyncio.wait_for(subscription.__anext__(), timeout=10)
        author = names.get(message.sender, message.sender.to_hex()[:16])
        print(f"{name} received from {author}: {message.payload.decode()}")


async def main() -> None:
    alice = await agent("alice")
    await alice.join_network()  # no bootstrap peers: Alice starts the network
    bob = await agent("bob", bootstrap=alice.local_addr)
    async with alice, bob:
        alice_inbox = alice.subscribe("chat")
        bob_inbox = bob.subscribe("chat")
        await bob.join_network()  # returns once Bob has a neighbour (Alice)
        print(f"bob connected: {bob.is_connected()}")
        names = {alice.agent_id: "alice", bob.agent_id: "bob"}

        await alice.publish("chat", b"hello bob, this is alice")
        await bob.publish("chat", b"hi alice, bob here")
        # Both subscribe to "chat", so each gets both messages (its own included).
        await asyncio.gather(
            receive("alice", alice_inbox, names, 2), receive("bob", bob_inbox, names, 2)
        )
        stats = alice.stats()
        print(
            f"alice: published {stats['published']}, delivered {stats['delivered']}, "
            f"rejected {stats['dropped_bad_signature'] + stats['dropped_wrong_sender']}"
        )


if __name__ == "__main__":
    asyncio.run(main())
