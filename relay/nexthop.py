"""Where a datagram to an address would leave, from the kernel's own tables: the AF_XDP path's
hops (ext/xdp.pxi, docs/ARCHITECTURE.md "How copies leave the host").

A frame sent through AF_XDP skips the IP stack, so the worker writes what the stack would:
the next hop's MAC, our MAC and source address. They come from the kernel over rtnetlink
(rtnetlink(7); the messages of RFC 3549 section 3.1): RTM_GETROUTE asks the routing table
where a datagram to an address goes (the output interface, the gateway if any, the preferred
source address), RTM_GETNEIGH the neighbour table for the next hop's MAC, RTM_GETLINK the
interface's own MAC. Nothing is guessed: a destination routed through another interface, a
local one, or a next hop whose MAC the kernel does not know (yet: the socket path's first
copies make it resolve one) gets no hop, and its copies stay on the socket path.

The worker asks between batches, once a second for receivers without a hop, and again for
all of them every REFRESH seconds, so a neighbour whose MAC changed is followed; for at most
LOOKUP_PASS_S at a time, so a large audience's look-ups never hold up its media. Addresses
travel packed (as the kernel and the core hold them): parsing text is what a look-up would
otherwise spend most of its time on.
"""

from __future__ import annotations

import ipaddress
import socket
import struct
from dataclasses import dataclass

NETLINK_ROUTE = 0
NLM_F_REQUEST = 0x1
NLMSG_ERROR = 2
RTM_NEWLINK, RTM_GETLINK = 16, 18
RTM_NEWROUTE, RTM_GETROUTE = 24, 26
RTM_NEWNEIGH, RTM_GETNEIGH = 28, 30
RTA_DST, RTA_OIF, RTA_GATEWAY, RTA_PREFSRC = 1, 4, 5, 7
NDA_DST, NDA_LLADDR = 1, 2
IFLA_ADDRESS = 1
RTN_UNICAST = 1
# Neighbour states whose MAC can be used (the kernel sends to these itself): reachable, stale,
# delay, probe, a device without ARP (ifb, a point-to-point link), permanent.
NUD_USABLE = 0x02 | 0x04 | 0x08 | 0x10 | 0x40 | 0x80

HEADER = struct.Struct("=IHHII")  # nlmsghdr: length, type, flags, sequence, port id
RTMSG = struct.Struct("=BBBBBBBBI")  # family, dst_len, src_len, tos, table, proto, scope, type
NDMSG = struct.Struct("=BxxxiHBB")  # family, ifindex, state, flags, type
IFINFO = struct.Struct("=BxHiII")  # family, type, index, flags, change
ATTR = struct.Struct("=HH")
REFRESH = 10.0  # seconds between re-reading every receiver's hop
# Seconds of look-ups between two passes of the worker's loop (each look-up some 25 us): 64 at
# a time held the media for 1.5-2 ms, sixteen times over in each refresh of a thousand
# receivers (bench/RESULTS.md, "What holds a packet up besides its fan-out").
LOOKUP_PASS_S = 0.0002


class NetlinkError(OSError):
    """The kernel answered a request with an error."""


@dataclass(frozen=True)
class Hop:
    """What a frame to one receiver carries besides its destination address and port: MACs,
    and the source address packed (4 or 16 bytes)."""

    dst_mac: bytes
    src_mac: bytes
    src: bytes


def _attr(kind: int, value: bytes) -> bytes:
    length = ATTR.size + len(value)
    return ATTR.pack(length, kind) + value + bytes(-length % 4)


def _attrs(data: bytes) -> dict[int, bytes]:
    """A message's attributes after its fixed part: type -> value (the first of each)."""
    found: dict[int, bytes] = {}
    at = 0
    while at + ATTR.size <= len(data):
        length, kind = ATTR.unpack_from(data, at)
        if length < ATTR.size or at + length > len(data):
            break
        found.setdefault(kind & 0x3FFF, data[at + ATTR.size : at + length])
        at += (length + 3) & ~3
    return found


V4_MAPPED = bytes(10) + b"\xff\xff"


def routed_form(packed: bytes) -> bytes:
    """An address (packed) as the kernel routes it: an IPv4-mapped IPv6 address (a dual-stack
    socket's name for an IPv4 peer) is IPv4."""
    return packed[12:] if len(packed) == 16 and packed.startswith(V4_MAPPED) else packed


def sockaddr_ip(sockaddr: bytes) -> bytes:
    """The address of a raw sockaddr_in or sockaddr_in6 (as RouteTable.xdp_unrouted gives
    them), packed, in its routed form."""
    (family,) = struct.unpack_from("=H", sockaddr)
    if family == socket.AF_INET:
        return sockaddr[4:8]
    if family == socket.AF_INET6:
        return routed_form(sockaddr[8:24])
    raise ValueError(f"not an IP socket address (family {family})")


class NextHops:
    """Hops through one interface, looked up in the kernel's tables of this network
    namespace. `local_ip`: the media socket's address (frames come from it), or None for a
    wildcard bind, where each frame comes from the route's preferred source, as the socket's
    datagrams would."""

    def __init__(self, interface: str, local_ip: str | None = None) -> None:
        try:
            self.ifindex = socket.if_nametoindex(interface)
        except OSError as exc:
            raise OSError(exc.errno, f"no interface {interface!r} here") from exc
        self.interface = interface
        self.local: bytes | None = None
        if local_ip not in (None, "0.0.0.0", "::"):
            self.local = routed_form(ipaddress.ip_address(local_ip).packed)
        self.sock = socket.socket(
            socket.AF_NETLINK, socket.SOCK_RAW | socket.SOCK_CLOEXEC, NETLINK_ROUTE
        )
        self.sock.bind((0, 0))
        self.sock.settimeout(1.0)
        self.seq = 0
        self.mac = self._link_mac()

    def close(self) -> None:
        self.sock.close()

    def resolve(self, ip: str) -> Hop | None:
        """The hop to `ip` through our interface; None if the kernel would send it elsewhere,
        or does not know the next hop's MAC yet."""
        return self.resolve_packed(routed_form(ipaddress.ip_address(ip).packed))

    def resolve_packed(self, dst: bytes) -> Hop | None:
        """resolve() of an address packed (4 or 16 bytes, in its routed form): what the worker
        calls, for a thousand receivers at a time, without parsing text."""
        route = self._route(dst)
        if route is None:
            return None
        oif, gateway, prefsrc = route
        if oif != self.ifindex:
            return None
        mac = self._neighbour(gateway or dst)
        source = self.local or prefsrc
        if mac is None or source is None or len(source) != len(dst):
            return None
        return Hop(mac, self.mac, source)

    # -- requests --------------------------------------------------------------------------

    def _ask(self, kind: int, body: bytes) -> tuple[int, bytes] | None:
        """One request and its answer: (message type, payload); None if the kernel says it
        has no such entry (ENOENT, ENETUNREACH, EHOSTUNREACH...)."""
        self.seq += 1
        self.sock.send(
            HEADER.pack(HEADER.size + len(body), kind, NLM_F_REQUEST, self.seq, 0) + body
        )
        while True:
            data = self.sock.recv(65536)
            at = 0
            while at + HEADER.size <= len(data):
                length, answer, _, seq, _ = HEADER.unpack_from(data, at)
                if length < HEADER.size:
                    break
                payload = data[at + HEADER.size : at + length]
                at += (length + 3) & ~3
                if seq != self.seq:
                    continue  # an answer to an earlier request that timed out
                if answer == NLMSG_ERROR:
                    (code,) = struct.unpack_from("=i", payload)
                    if code == 0:
                        continue
                    return None
                return answer, payload

    def _link_mac(self) -> bytes:
        body = IFINFO.pack(socket.AF_UNSPEC, 0, self.ifindex, 0, 0)
        got = self._ask(RTM_GETLINK, body)
        if got is None or got[0] != RTM_NEWLINK:
            raise NetlinkError(0, f"the kernel did not describe interface {self.interface!r}")
        mac = _attrs(got[1][IFINFO.size :]).get(IFLA_ADDRESS)
        if mac is None or len(mac) != 6:
            raise NetlinkError(0, f"{self.interface!r} has no Ethernet address")
        return mac

    def _route(self, dst: bytes) -> tuple[int, bytes | None, bytes | None] | None:
        """(output interface, gateway or None, preferred source or None; addresses packed) of
        a unicast route to `dst`."""
        family = socket.AF_INET if len(dst) == 4 else socket.AF_INET6
        body = RTMSG.pack(family, 8 * len(dst), 0, 0, 0, 0, 0, 0, 0)
        body += _attr(RTA_DST, dst)
        got = self._ask(RTM_GETROUTE, body)
        if got is None or got[0] != RTM_NEWROUTE:
            return None
        kind = RTMSG.unpack_from(got[1])[7]
        attrs = _attrs(got[1][RTMSG.size :])
        if kind != RTN_UNICAST or RTA_OIF not in attrs:
            return None
        (oif,) = struct.unpack("=i", attrs[RTA_OIF][:4])
        return oif, attrs.get(RTA_GATEWAY), attrs.get(RTA_PREFSRC)

    def _neighbour(self, ip: bytes) -> bytes | None:
        family = socket.AF_INET if len(ip) == 4 else socket.AF_INET6
        body = NDMSG.pack(family, self.ifindex, 0, 0, 0) + _attr(NDA_DST, ip)
        got = self._ask(RTM_GETNEIGH, body)
        if got is None or got[0] != RTM_NEWNEIGH:
            return None
        state = NDMSG.unpack_from(got[1])[2]
        mac = _attrs(got[1][NDMSG.size :]).get(NDA_LLADDR)
        if not state & NUD_USABLE or mac is None or len(mac) != 6:
            return None
        return mac
