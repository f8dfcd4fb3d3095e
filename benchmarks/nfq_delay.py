#!/usr/bin/env python3
"""Holds every packet that an nftables `queue num N` rule hands over for DELAY seconds, then
accepts it: delay on a path without `netem` (this kernel has none), for benchmarks/probe.sh.

    nfq_delay.py QUEUE_NUM DELAY_SECONDS [SECONDS_TO_LIVE]

Speaks nfnetlink_queue directly over a netlink socket (no libnetfilter_queue bindings needed):
bind the queue, ask for metadata only, and answer NF_ACCEPT per packet id once its time is due.
Prints "ready" when bound; exits after SECONDS_TO_LIVE (default 600).
"""
import heapq
import select
import socket
import struct
import sys
import time

NETLINK_NETFILTER = 12
NFNL_SUBSYS_QUEUE = 3
NFQNL_MSG_PACKET, NFQNL_MSG_VERDICT, NFQNL_MSG_CONFIG = 0, 1, 2
NFQA_CFG_CMD, NFQA_CFG_PARAMS = 1, 2
NFQNL_CFG_CMD_BIND = 1
NFQNL_COPY_META = 1
NFQA_PACKET_HDR, NFQA_VERDICT_HDR = 1, 2
NF_ACCEPT = 1
NLM_F_REQUEST, NLM_F_ACK = 1, 4
NLMSG_ERROR = 2


def attr(kind, payload):
    length = 4 + len(payload)
    return struct.pack("=HH", length, kind) + payload + b"\0" * ((4 - length % 4) % 4)


def message(kind, queue, attrs, flags=NLM_F_REQUEST, seq=0):
    # nfgenmsg: family AF_UNSPEC, version 0, resource id (the queue) in network order.
    body = struct.pack("=BB", socket.AF_UNSPEC, 0) + struct.pack("!H", queue) + b"".join(attrs)
    return struct.pack("=IHHII", 16 + len(body), (NFNL_SUBSYS_QUEUE << 8) | kind, flags, seq, 0) + body


def expect_ack(sock, what):
    data = sock.recv(65536)
    length, kind = struct.unpack_from("=IH", data, 0)
    if kind == NLMSG_ERROR:
        (code,) = struct.unpack_from("=i", data, 16)
        if code != 0:
            sys.exit(f"nfq_delay: {what} failed: errno {-code}")


def packet_ids(data):
    """The packet id of every NFQNL_MSG_PACKET in one netlink read."""
    offset = 0
    while offset + 16 <= len(data):
        length, kind = struct.unpack_from("=IH", data, offset)
        if length < 16:
            break
        if kind & 0xFF == NFQNL_MSG_PACKET and kind >> 8 == NFNL_SUBSYS_QUEUE:
            a = offset + 20
            while a + 4 <= offset + length:
                alen, atype = struct.unpack_from("=HH", data, a)
                if alen < 4:
                    break
                if atype & 0x7FFF == NFQA_PACKET_HDR:
                    yield struct.unpack_from("!I", data, a + 4)[0]
                a += (alen + 3) & ~3
        offset += (length + 3) & ~3


def main():
    queue, delay = int(sys.argv[1]), float(sys.argv[2])
    ttl = float(sys.argv[3]) if len(sys.argv) > 3 else 600
    sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, NETLINK_NETFILTER)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
    sock.bind((0, 0))
    sock.send(message(NFQNL_MSG_CONFIG, queue,
                      [attr(NFQA_CFG_CMD, struct.pack("=BB", NFQNL_CFG_CMD_BIND, 0) + struct.pack("!H", socket.AF_INET))],
                      NLM_F_REQUEST | NLM_F_ACK, 1))
    expect_ack(sock, "bind")
    sock.send(message(NFQNL_MSG_CONFIG, queue,
                      [attr(NFQA_CFG_PARAMS, struct.pack("!IB", 0, NFQNL_COPY_META))], NLM_F_REQUEST | NLM_F_ACK, 2))
    expect_ack(sock, "copy mode")
    print("ready", flush=True)
    due = []
    end = time.monotonic() + ttl
    while time.monotonic() < end:
        now = time.monotonic()
        while due and due[0][0] <= now:
            _, pid = heapq.heappop(due)
            sock.send(message(NFQNL_MSG_VERDICT, queue, [attr(NFQA_VERDICT_HDR, struct.pack("!II", NF_ACCEPT, pid))]))
        wait = min(due[0][0] - now, 1.0) if due else 1.0
        if select.select([sock], [], [], max(wait, 0))[0]:
            data = sock.recv(65536)
            arrived = time.monotonic()
            for pid in packet_ids(data):
                heapq.heappush(due, (arrived + delay, pid))


if __name__ == "__main__":
    main()
