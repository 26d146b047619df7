# The AF_XDP path (docs/ARCHITECTURE.md, "How copies leave the host"; xsk.h).
#
# With `relay serve --xdp IFACE`, a worker opens an AF_XDP socket on one queue of that
# interface and sends a receiver's copies through it once it knows the receiver's hop: the
# next hop's MAC and our own MAC and source address on that interface, which the worker's
# Python side looks up in the kernel's routing and neighbour tables (relay/nexthop.py) and
# hands over between batches (RouteTable.xdp_route). Until then, and for every receiver
# whose route leaves through another interface or whose neighbour is unknown, copies go out
# from the media socket as before: the socket's first copies are also what makes the kernel
# resolve the neighbour. A receiver whose address moves loses its hop at once (table.pxi,
# table_latch), so no frame follows it to where it was.
#
# A copy for a receiver with a hop goes onto the ring as soon as it is protected (forward.pxi,
# _queue), straight from its send slot, which it then leaves free: no message is made of it,
# and the kernel is woken every SEND_FLUSH frames and at each flush, as the socket path
# sends. Once a copy finds the ring full, it and every copy after it are queued as before
# until the flush, which frames them in order if the ring then has room (batch.pxi, _frame),
# or sends them from the socket: a receiver's later copy never overtakes an earlier one.
#
# Only the send half moves: what receivers send back still arrives on the media socket. Where
# connected sockets (connected.pxi) are on too, a receiver with a hop has none: its copies
# leave as frames, and its connected socket, if it had one, is closed when the hop comes.

from libc.stdlib cimport free


# Who computes a frame's UDP checksum, by enum relay_xsk_checksum's value (xsk.h).
XSK_CHECKSUMS = ("offload", "relay", "kernel")
assert (XSK_CHECKSUMS.index("offload"), XSK_CHECKSUMS.index("relay"),
        XSK_CHECKSUMS.index("kernel")) == (RELAY_XSK_CSUM_OFFLOAD, RELAY_XSK_CSUM_RELAY,
                                           RELAY_XSK_CSUM_KERNEL)


ctypedef struct XdpPath:
    relay_xsk* xsk          # NULL: the path is off
    uint32_t routed         # receivers with a hop
    uint32_t unwoken        # frames put on the ring since the kernel was last woken
    bint queueing           # a copy found the ring full: the rest queue until the flush
    uint64_t fallbacks      # copies for a receiver with a hop sent from the socket instead


cdef inline void xdp_init(XdpPath* x) noexcept nogil:
    x.xsk = NULL
    x.routed = 0
    x.unwoken = 0
    x.queueing = False
    x.fallbacks = 0


cdef inline void xdp_wake(XdpPath* x) noexcept nogil:
    """The kernel woken for what the ring holds."""
    relay_xsk_wake(x.xsk)
    x.unwoken = 0


cdef inline void xdp_flushed(XdpPath* x) noexcept nogil:
    """After a flush framed what was queued, in order: copies may go straight on again."""
    xdp_wake(x)
    x.queueing = False


cdef inline void xdp_forget(XdpPath* x, relay_xsk_hop** hop) noexcept nogil:
    """A receiver's hop, if it has one, forgotten: its address moved, went or it left."""
    if hop[0] != NULL:
        free(hop[0])
        hop[0] = NULL
        x.routed -= 1


cdef inline void xdp_stop(XdpPath* x) noexcept nogil:
    """After every receiver's hop is forgotten: the socket too."""
    if x.xsk != NULL:
        relay_xsk_close(x.xsk)
        x.xsk = NULL
