# Connected per-receiver sockets (docs/ARCHITECTURE.md, "How copies leave the host").
#
# A datagram sent from an unconnected socket pays a route lookup, and the kernel builds its
# destination from the message header, every time; a connected UDP socket keeps its route and
# addresses. With `--connected-sockets N` (off by default: on this project's hosts a sendmsg
# per copy cost more than the lookup it saves, bench/RESULTS.md "Connected sockets and GSO"),
# each of up to N receivers gets a socket of its own, bound to the media socket's own address
# and port (SO_REUSEPORT: the receiver still sees every packet come from the port it talks
# to, as ICE and latching require) and connected to the receiver's address.
#
# The socket is made at the first copy after the receiver's address is known, closed when
# that address moves, is forgotten, or the receiver leaves (table.pxi). At most `limit` are
# open at once: past it, and for any receiver whose socket could not be made, copies go out
# as before, from the media socket through sendmmsg (batch.pxi). One attempt per address:
# a failure is not retried packet after packet.
#
# The kernel gives a connected socket what its peer sends (its receiver reports, a WebRTC
# peer's STUN and DTLS): every connected socket is in one epoll set, which the worker polls
# beside the media socket, and Forwarder.run_connected reads them into the same loop.

from libc.string cimport memcpy, memset


ctypedef struct Connections:
    int epoll_fd            # every connected socket is in it; -1: connected sockets are off
    uint32_t limit          # the most open at once
    uint32_t open
    uint64_t made           # sockets connected since start
    uint64_t failed         # attempts the kernel refused (descriptors, memory)
    uint64_t over_limit     # receivers left on the media socket because `limit` were open
    sockaddr_in6 local      # the media socket's address: each connected socket binds it too
    socklen_t local_len


cdef inline void conn_init(Connections* c) noexcept nogil:
    memset(c, 0, sizeof(Connections))
    c.epoll_fd = -1


cdef int conn_open(Connections* c, const sockaddr_in6* to, socklen_t tolen) noexcept nogil:
    """A socket bound to the media socket's address and connected to `to`, in the epoll
    set; -1 if off, at the limit, of another address family, or refused (counted)."""
    cdef int fd, one = 1
    cdef epoll_event ev
    if c.epoll_fd < 0 or to.sin6_family != c.local.sin6_family:
        return -1
    if c.open >= c.limit:
        c.over_limit += 1
        return -1
    fd = socket(c.local.sin6_family, SOCK_DGRAM | SOCK_CLOEXEC, 0)
    if fd < 0:
        c.failed += 1
        return -1
    ev.events = EPOLLIN
    ev.data.fd = fd
    if (setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one)) != 0
            or bind(fd, <const sockaddr*>&c.local, c.local_len) != 0
            or connect(fd, <const sockaddr*>to, tolen) != 0
            or epoll_ctl(c.epoll_fd, EPOLL_CTL_ADD, fd, &ev) != 0):
        close(fd)
        c.failed += 1
        return -1
    c.open += 1
    c.made += 1
    return fd


cdef inline void conn_close(Connections* c, int* fd) noexcept nogil:
    """Close a receiver's connected socket, if it has one (closing leaves the epoll set)."""
    if fd[0] >= 0:
        close(fd[0])
        fd[0] = -1
        c.open -= 1


cdef int conn_start(Connections* c, const sockaddr_in6* local, socklen_t local_len,
                    uint32_t limit) noexcept nogil:
    """Turn connected sockets on: 0, or -1 if the epoll set could not be made (errno)."""
    if c.epoll_fd >= 0:
        return 0
    c.epoll_fd = epoll_create1(EPOLL_CLOEXEC)
    if c.epoll_fd < 0:
        return -1
    memcpy(&c.local, local, local_len)
    c.local_len = local_len
    c.limit = limit
    return 0


cdef void conn_stop(Connections* c) noexcept nogil:
    """After every receiver's socket is closed: the epoll set too."""
    if c.epoll_fd >= 0:
        close(c.epoll_fd)
        c.epoll_fd = -1
