"""Which address a request comes from: the TCP peer, or the client that a trusted reverse proxy
names in `X-Forwarded-For` (`relay serve --trusted-proxies`).

The client address keys the per-client join throttle (control/auth.py) and the access log's
pseudonym (control/api/), so whoever can choose it can guess meeting passwords without being
slowed down. `X-Forwarded-For` is a list to which each proxy appends the address it received the
request from (the de-facto header that RFC 7239 §1 describes): only the entries that proxies we
run appended can be believed, and everything left of them was written by whoever sent the
request. Hence the rule:

- unless the TCP peer is inside one of the trusted networks, the peer is the client and the
  header is ignored (by default no network is trusted);
- otherwise the list is read from the right, past every address that is itself a trusted
  proxy; the first address that is not one is the client, and if every address is trusted, the
  leftmost one is (a trusted proxy vouched for it);
- an entry that is not an IP address (with or without a port) stops the reading: the list
  cannot be trusted past it, and the peer is the client. A misconfigured proxy then has its
  users throttled together, which is safe; a client never gets to choose its address.

Several `X-Forwarded-For` lines are one list, in order (RFC 9110 §5.3), and empty list elements
are ignored (RFC 9110 §5.6.1). `Forwarded` (RFC 7239) is not read: a proxy that maintains one
of the two headers passes the other from the client untouched, so believing both would let a
client choose; nginx (`$proxy_add_x_forwarded_for`) and HAProxy (`option forwardfor`) append
to `X-Forwarded-For`.

Addresses are compared and returned normalised: an IPv4-mapped IPv6 address (::ffff:192.0.2.1,
as a dual-stack socket reports IPv4 peers) is the IPv4 address.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Sequence

__all__ = ["Network", "TrustedProxies", "parse_network"]

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
Address = ipaddress.IPv4Address | ipaddress.IPv6Address


def parse_network(text: str) -> Network:
    """A trusted proxy's address or network (CIDR); ValueError, with a message that says what
    is wrong, for anything else."""
    try:
        network = ipaddress.ip_network(text, strict=True)
    except ValueError:
        try:
            loose = ipaddress.ip_network(text, strict=False)
        except ValueError:
            raise ValueError(
                f"{text!r} is not an IP address or network, as in 10.0.0.0/8 or 192.0.2.7"
            ) from None
        raise ValueError(f"{text!r} has host bits set: the network is {loose}") from None
    if network.prefixlen == 0:
        raise ValueError(
            f"{text} would trust every address, so any client could choose the address it is "
            "throttled and logged by; list your proxies' addresses or networks"
        )
    return network


def _address(text: str) -> Address | None:
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def _hop_address(hop: str) -> Address | None:
    """One `X-Forwarded-For` entry: an IP address, or one with a port as some proxies write it
    ("192.0.2.1:4711", "[2001:db8::1]:4711"); None for anything else."""
    host = hop
    if hop.startswith("["):
        host, bracket, rest = hop[1:].partition("]")
        if not bracket or (rest and not (rest[0] == ":" and rest[1:].isdigit())):
            return None
    elif hop.count(":") == 1:
        host, _, port = hop.partition(":")
        if not port.isdigit():
            return None
    return _address(host)


class TrustedProxies:
    """The networks whose `X-Forwarded-For` is believed, and the rule above."""

    def __init__(self, networks: Iterable[str | Network] = ()) -> None:
        self.networks: tuple[Network, ...] = tuple(
            parse_network(n) if isinstance(n, str) else n for n in networks
        )

    def __repr__(self) -> str:
        return f"TrustedProxies({[str(n) for n in self.networks]})"

    def trusts(self, address: Address) -> bool:
        # `in` is False across IP versions, so IPv4 and IPv6 networks can be mixed.
        return any(address in network for network in self.networks)

    def client(self, peer: str, forwarded_for: Sequence[str] = ()) -> str:
        """The client's address, given the TCP peer's and the request's `X-Forwarded-For`
        lines (in the order they came)."""
        peer_address = _address(peer)
        if peer_address is None:
            return peer  # not an IP peer (a Unix socket): nothing to trust
        if not self.trusts(peer_address):
            return str(peer_address)
        hops = [hop.strip() for line in forwarded_for for hop in line.split(",")]
        client = peer_address
        for hop in reversed([hop for hop in hops if hop]):
            address = _hop_address(hop)
            if address is None:
                return str(peer_address)
            client = address
            if not self.trusts(address):
                break
        return str(client)
