"""A userspace Ethernet switch that delays every frame: link latency without ``sch_netem``.

    ip netns exec HUB python switch.py --delay-ms 25 v0 v1 v2 ...

The harness runs it in the hub namespace in place of the kernel bridge when a test asks for
delay (``Net(n, delay_ms=...)``). It reads every frame arriving on the given interfaces (raw
``AF_PACKET`` sockets), learns which port owns each source MAC address, and sends the frame
``--delay-ms`` later out of the port that owns its destination (every other port for a
broadcast or an unknown destination). Each frame crosses the switch once, so the round-trip
time between two agents is twice the delay. The delay is the same for every frame, so frames
stay in order (netem's default, without jitter).

It prints ``ready`` once every socket is bound, a ``stats`` JSON line (frames forwarded, flooded,
dropped for lack of socket buffer) when its stdin closes, and then exits.
"""

import argparse
import collections
import json
import os
import selectors
import socket
import sys
import time
from typing import Deque, Dict, List, Tuple

ETH_P_ALL = 0x0003
SOL_PACKET = 263
PACKET_VNET_HDR = 15
VNET_HDR = 10  # struct virtio_net_hdr, before every frame read or written
PACKET_OUTGOING = 4  # our own sends, which the socket sees too
BROADCAST_BIT = 0x01  # the group bit of the first destination byte
SOCKET_BUFFER = 8 << 20


def open_port(name: str) -> socket.socket:
    sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ALL))
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, SOCKET_BUFFER)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, SOCKET_BUFFER)
    # Frames from a veth can be GSO super-frames with the UDP checksum left to the hardware
    # (CHECKSUM_PARTIAL). The virtio header says so; handing it back with the frame lets the
    # kernel finish the job on the way out, as a bridge would.
    sock.setsockopt(SOL_PACKET, PACKET_VNET_HDR, 1)
    sock.bind((name, 0))
    sock.setblocking(False)
    return sock


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--delay-ms", type=float, required=True)
    parser.add_argument("ports", nargs="+")
    args = parser.parse_args()
    delay = args.delay_ms / 1000

    ports = [open_port(name) for name in args.ports]
    owner: Dict[bytes, int] = {}  # MAC -> port index
    due: Deque[Tuple[float, int, bytes]] = collections.deque()  # (send at, from port, frame)
    counts = {"forwarded": 0, "flooded": 0, "send_failed": 0}
    selector = selectors.DefaultSelector()
    for i, sock in enumerate(ports):
        selector.register(sock, selectors.EVENT_READ, i)
    selector.register(sys.stdin, selectors.EVENT_READ, -1)
    print("ready", flush=True)

    def send(port: int, frame: bytes) -> None:
        try:
            ports[port].send(frame)
        except OSError:  # a full buffer, or the agent's namespace is gone: the frame is lost
            counts["send_failed"] += 1

    while True:
        timeout = max(0.0, due[0][0] - time.monotonic()) if due else None
        for key, _ in selector.select(timeout):
            port = key.data
            if port < 0:
                if not os.read(sys.stdin.fileno(), 4096):
                    print(json.dumps(dict(counts, event="stats")), flush=True)
                    return
                continue
            sock = ports[port]
            now = time.monotonic()
            while True:
                try:
                    frame, addr = sock.recvfrom(65536)
                except BlockingIOError:
                    break
                except OSError:
                    break
                if addr[2] == PACKET_OUTGOING or len(frame) < VNET_HDR + 14:
                    continue
                owner[frame[VNET_HDR + 6 : VNET_HDR + 12]] = port
                due.append((now + delay, port, frame))
        now = time.monotonic()
        while due and due[0][0] <= now:
            _, source, frame = due.popleft()
            dst = frame[VNET_HDR : VNET_HDR + 6]
            target = None if dst[0] & BROADCAST_BIT else owner.get(dst)
            if target is not None:
                if target != source:
                    send(target, frame)
                    counts["forwarded"] += 1
                continue
            counts["flooded"] += 1
            targets: List[int] = [p for p in range(len(ports)) if p != source]
            for p in targets:
                send(p, frame)


if __name__ == "__main__":
    main()
