"""Direct messages and requests between two agents, over a QUIC connection of their own.

    python examples/direct_messages.py

Alice starts a network; Bob joins it and serves requests with a handler that shouts back
what it gets (and fails on an empty request). Alice sends Bob a plain message, asks him two
questions, and sees his handler's failure arrive as ``RemoteError``. A direct message never
goes through the gossip overlay: it is end-to-end encrypted between the two agents, and the
sender is proven by the connection's handshake. (From the shell: ``x0x inbox`` and
``x0x request AGENT_ID TEXT``, see ``python -m x0x --help``.)
"""

import asyncio

import x0x


async def shout(message: x0x.DirectMessage) -> bytes:
    """Bob's handler: each request runs in a task of its own."""
    if not message.is_request:
        print(f"bob got a message: {message.payload.decode()}")
        return b""  # ignored for plain messages
    if not message.payload:
        raise ValueError("nothing to shout")  # the requester gets RemoteError
    return message.payload.upper() + b"!"


async def main() -> None:
    alice = await x0x.Agent.builder().build()
    await alice.join_network()  # no bootstrap peers: Alice starts the network
    bob = await x0x.Agent.builder().with_bootstrap(alice.local_addr).build()
    async with alice, bob:
        await bob.join_network()
        async with bob.serve(shout):  # Bob's inbox is open from here on
            # send() returns once the message is in Bob's inbox.
            await alice.send(bob.agent_id, b"hi bob, two questions coming")
            for question in (b"are you there", b"loud and clear"):
                reply = await alice.request(bob.agent_id, question, timeout=5)
                print(f"alice asked {question.decode()!r}, bob replied {reply.decode()!r}")
            try:
                await alice.request(bob.agent_id, b"")
            except x0x.RemoteError as e:  # the handler raised: its type and message
                print(f"bob's handler failed: {e}")
        # Bob's server is closed: he refuses what comes now.
        try:
            await alice.send(bob.agent_id, b"still there?")
        except x0x.RemoteError as e:
            print(f"refused: {e}")
        stats = alice.stats()
        print(f"alice: {stats['direct_out']} direct messages and requests sent")


if __name__ == "__main__":
    asyncio.run(main())
