# Batched UDP I/O: how the media path receives (recvmmsg) and sends.
#
# RecvBatch fills up to BATCH_MAX slots with one recvmmsg; SendBatch queues up to its capacity
# of protected packets, each with its own destination, and sends them with sendmmsg, or, for
# a receiver with a connected socket of its own (connected.pxi), with send() on that socket,
# or, for a receiver with a hop on the AF_XDP path (xdp.pxi), as frames on its TX ring.
# Both own their memory, allocated once. push() and items() let tests drive the loop without
# sockets.

from libc.string cimport memcmp


@cython.final
cdef class RecvBatch:
    """Up to BATCH_MAX received datagrams with their source addresses, and when the kernel
    received each (CLOCK_REALTIME seconds; 0 where the socket gives no timestamps: delay.pxi)."""

    cdef uint8_t* slab
    cdef uint8_t* control
    cdef double stamps[BATCH_MAX]
    cdef uint32_t lens[BATCH_MAX]
    cdef bint truncated[BATCH_MAX]
    cdef sockaddr_in6 names[BATCH_MAX]
    cdef socklen_t namelens[BATCH_MAX]
    cdef mmsghdr msgs[BATCH_MAX]
    cdef iovec iov[BATCH_MAX]
    cdef int count

    def __cinit__(self):
        self.slab = <uint8_t*>malloc(BATCH_MAX * SLOT_SIZE)
        self.control = <uint8_t*>malloc(BATCH_MAX * STAMP_CONTROL)
        if self.slab == NULL or self.control == NULL:
            raise MemoryError()
        self.count = 0

    def __dealloc__(self):
        free(self.slab)
        free(self.control)

    def __len__(self):
        return self.count

    cdef int recv(self, int fd) noexcept nogil:
        """recvmmsg without waiting; the number received, 0 if none, -errno on error."""
        cdef int i, n
        for i in range(BATCH_MAX):
            self.iov[i].iov_base = self.slab + i * SLOT_SIZE
            self.iov[i].iov_len = SLOT_SIZE
            memset(&self.msgs[i].msg_hdr, 0, sizeof(msghdr))
            self.msgs[i].msg_hdr.msg_iov = &self.iov[i]
            self.msgs[i].msg_hdr.msg_iovlen = 1
            self.msgs[i].msg_hdr.msg_name = &self.names[i]
            self.msgs[i].msg_hdr.msg_namelen = sizeof(sockaddr_in6)
            self.msgs[i].msg_hdr.msg_control = self.control + i * STAMP_CONTROL
            self.msgs[i].msg_hdr.msg_controllen = STAMP_CONTROL
        n = recvmmsg(fd, self.msgs, BATCH_MAX, MSG_DONTWAIT, NULL)
        if n < 0:
            self.count = 0
            n = errno    # EWOULDBLOCK is EAGAIN on Linux; a switch on both would not compile
            if n == EAGAIN or n == EINTR:
                return 0
            return -n
        for i in range(n):
            self.lens[i] = self.msgs[i].msg_len
            self.namelens[i] = self.msgs[i].msg_hdr.msg_namelen
            self.truncated[i] = (self.msgs[i].msg_hdr.msg_flags & MSG_TRUNC) != 0
            self.stamps[i] = _received_at(&self.msgs[i].msg_hdr)
        self.count = n
        return n

    def push(self, data, address):
        """Add a datagram as if received from address (ip, port): for tests."""
        cdef const uint8_t[::1] view = bytes(data)
        cdef bytes name = _sockaddr_bytes(address)
        cdef int i = self.count
        if i >= BATCH_MAX:
            raise OverflowError(f"a batch holds {BATCH_MAX} datagrams")
        self.lens[i] = <uint32_t>view.shape[0]
        self.truncated[i] = view.shape[0] > SLOT_SIZE
        if view.shape[0]:
            memcpy(self.slab + i * SLOT_SIZE, &view[0],
                   min(<size_t>view.shape[0], <size_t>SLOT_SIZE))
        memset(&self.names[i], 0, sizeof(sockaddr_in6))
        memcpy(&self.names[i], <const char*>name, len(name))
        self.namelens[i] = <socklen_t>len(name)
        self.stamps[i] = 0
        self.count += 1

    def clear(self):
        self.count = 0


cdef inline double _received_at(msghdr* h) noexcept nogil:
    """The kernel's receive timestamp of a datagram (SCM_TIMESTAMPNS) in seconds, or 0."""
    cdef cmsghdr* c = CMSG_FIRSTHDR(h)
    cdef timespec t
    while c != NULL:
        if c.cmsg_level == SOL_SOCKET and c.cmsg_type == SCM_TIMESTAMPNS:
            memcpy(&t, CMSG_DATA(c), sizeof(timespec))
            return <double>t.tv_sec + 1e-9 * <double>t.tv_nsec
        c = CMSG_NXTHDR(h, c)
    return 0


@cython.final
cdef class SendBatch:
    """Protected datagrams waiting to be sent, each with its destination, grouped in messages:
    a receiver's consecutive copies of equal size (its copies of a burst, forward.pxi) make
    one message of several segments that the kernel splits (UDP GSO: UDP_SEGMENT, Linux
    4.18), so the system call, route and UDP header are paid once for all of them. The last
    segment may be shorter; a shorter one ends the message. A datagram is in a slot of its
    own (SLOT_SIZE apart), so a message's segments are an iovec each."""

    cdef uint8_t* slab
    cdef uint32_t* lens          # per slot: the datagram's bytes
    cdef int32_t* owners         # per slot: participant slot of the datagram's receiver
    cdef sockaddr_in6* names     # per slot: its destination
    cdef socklen_t* namelens
    cdef iovec* iov              # per slot
    cdef mmsghdr* msgs           # per message: its first slot's name and iovecs
    cdef int32_t* conns          # per message: the receiver's connected socket, or -1
    cdef uint32_t* seg_size      # per message: the size of every segment but the last
    cdef uint32_t* msg_bytes
    cdef bint* msg_closed        # its last segment was shorter: nothing more joins it
    cdef bint* msg_framed        # it went out as frames on the AF_XDP path (xdp.pxi)
    cdef uint8_t* control        # per message: room for the UDP_SEGMENT control message
    cdef int capacity
    cdef int count               # slots queued
    cdef int nmsgs               # messages queued
    cdef public bint gso         # group copies into messages (off: one message per copy)

    def __cinit__(self, int capacity=SEND_SLOTS):
        if capacity <= 0:
            raise ValueError("capacity must be positive")
        self.capacity = capacity
        self.slab = <uint8_t*>malloc(<size_t>capacity * SLOT_SIZE)
        self.lens = <uint32_t*>malloc(capacity * sizeof(uint32_t))
        self.owners = <int32_t*>malloc(capacity * sizeof(int32_t))
        self.names = <sockaddr_in6*>calloc(capacity, sizeof(sockaddr_in6))
        self.namelens = <socklen_t*>calloc(capacity, sizeof(socklen_t))
        self.iov = <iovec*>calloc(capacity, sizeof(iovec))
        self.msgs = <mmsghdr*>calloc(capacity, sizeof(mmsghdr))
        self.conns = <int32_t*>malloc(capacity * sizeof(int32_t))
        self.seg_size = <uint32_t*>malloc(capacity * sizeof(uint32_t))
        self.msg_bytes = <uint32_t*>malloc(capacity * sizeof(uint32_t))
        self.msg_closed = <bint*>malloc(capacity * sizeof(bint))
        self.msg_framed = <bint*>calloc(capacity, sizeof(bint))
        self.control = <uint8_t*>calloc(capacity, GSO_CONTROL)
        if not (self.slab and self.lens and self.owners and self.names and self.namelens
                and self.iov and self.msgs and self.conns and self.seg_size
                and self.msg_bytes and self.msg_closed and self.msg_framed and self.control):
            raise MemoryError()
        self.count = 0
        self.nmsgs = 0
        self.gso = True

    def __dealloc__(self):
        free(self.slab)
        free(self.lens)
        free(self.owners)
        free(self.names)
        free(self.namelens)
        free(self.iov)
        free(self.msgs)
        free(self.conns)
        free(self.seg_size)
        free(self.msg_bytes)
        free(self.msg_closed)
        free(self.msg_framed)
        free(self.control)

    def __len__(self):
        return self.count

    cdef inline uint8_t* slot(self) noexcept nogil:
        """The next free slot (SLOT_SIZE bytes), or NULL when the batch is full."""
        if self.count == self.capacity:
            return NULL
        return self.slab + <size_t>self.count * SLOT_SIZE

    cdef inline void commit_port(self, uint32_t n, const sockaddr_in6* to, socklen_t tolen,
                                 int32_t owner, uint16_t port_be, int conn) noexcept nogil:
        """commit(), to another port of the same host when port_be (network order) is set
        (never through `conn`, which is connected to the receiver's own port)."""
        cdef sockaddr_in6 other
        if port_be:
            memcpy(&other, to, tolen)
            other.sin6_port = port_be   # sin_port sits at the same offset
            self.commit(n, &other, tolen, owner, -1)
        else:
            self.commit(n, to, tolen, owner, conn)

    cdef inline void commit(self, uint32_t n, const sockaddr_in6* to, socklen_t tolen,
                            int32_t owner, int conn) noexcept nogil:
        """Queue the slot slot() returned, now holding n bytes for `to`, which `conn` is
        connected to (or -1: from the media socket): as one more segment of the message
        before it where it can be, or as a message of its own."""
        cdef int i = self.count, m = self.nmsgs - 1
        self.lens[i] = n
        self.owners[i] = owner
        memcpy(&self.names[i], to, tolen)
        self.namelens[i] = tolen
        self.iov[i].iov_base = self.slab + <size_t>i * SLOT_SIZE
        self.iov[i].iov_len = n
        self.count = i + 1
        if (self.gso and m >= 0 and not self.msg_closed[m] and n <= self.seg_size[m]
                and self.seg_size[m] <= GSO_SEGMENT_MAX
                and self.owners[i - 1] == owner and self.conns[m] == conn
                and self.msgs[m].msg_hdr.msg_iovlen < GSO_SEGMENTS_MAX
                and self.msg_bytes[m] + n <= GSO_BYTES_MAX
                and self.namelens[i - 1] == tolen
                and memcmp(&self.names[i - 1], to, tolen) == 0):
            self.msgs[m].msg_hdr.msg_iovlen += 1
            self.msg_bytes[m] += n
            self.msg_closed[m] = n < self.seg_size[m]
            return
        m += 1
        self.nmsgs = m + 1
        self.conns[m] = conn
        self.seg_size[m] = n
        self.msg_bytes[m] = n
        self.msg_closed[m] = False
        self.msgs[m].msg_hdr.msg_name = NULL if conn >= 0 else &self.names[i]
        self.msgs[m].msg_hdr.msg_namelen = 0 if conn >= 0 else tolen
        self.msgs[m].msg_hdr.msg_iov = &self.iov[i]
        self.msgs[m].msg_hdr.msg_iovlen = 1
        self.msgs[m].msg_hdr.msg_control = NULL
        self.msgs[m].msg_hdr.msg_controllen = 0

    cdef void _segment(self, int m) noexcept nogil:
        """Give message m, if it has several segments, its UDP_SEGMENT control message."""
        cdef msghdr* h = &self.msgs[m].msg_hdr
        cdef cmsghdr* c
        cdef uint16_t size
        if h.msg_iovlen < 2:
            return
        h.msg_control = self.control + <size_t>m * GSO_CONTROL
        h.msg_controllen = CMSG_SPACE(sizeof(uint16_t))
        c = CMSG_FIRSTHDR(h)
        c.cmsg_level = SOL_UDP
        c.cmsg_type = UDP_SEGMENT
        c.cmsg_len = CMSG_LEN(sizeof(uint16_t))
        size = <uint16_t>self.seg_size[m]
        memcpy(CMSG_DATA(c), &size, sizeof(uint16_t))

    cdef void flush(self, int fd, RouteTable t) noexcept nogil:
        """Send everything queued, in order: each run of messages for the media socket with
        one sendmmsg, each message for a connected socket with sendmsg(). A message the kernel
        refuses (an ICMP error from an earlier send, a full buffer on a non-blocking socket)
        is counted and skipped; one of several segments refused as such (a device without
        checksum offload, a route whose MTU is smaller: EIO, EINVAL) turns grouping off and
        goes out a segment at a time."""
        cdef int m = 0, end, n
        for end in range(self.nmsgs):
            self._segment(end)
            self.msg_framed[end] = False
        if t.xdp.xsk != NULL and (t.xdp.routed or t.xdp.unwoken or t.xdp.queueing):
            self._frame(t)      # and the kernel woken for the frames put on the ring since
        while m < self.nmsgs:
            if self.msg_framed[m]:
                m += 1
                continue
            if self.conns[m] >= 0:
                n = 1 if sendmsg(self.conns[m], &self.msgs[m].msg_hdr, 0) >= 0 else -1
            else:
                end = m + 1
                while end < self.nmsgs and self.conns[end] < 0 and not self.msg_framed[end]:
                    end += 1
                n = sendmmsg(fd, &self.msgs[m], <unsigned int>(end - m), 0)
            if n < 0:
                if errno == EINTR:
                    continue
                if self.msgs[m].msg_hdr.msg_iovlen > 1 and (errno == EIO or errno == EINVAL):
                    self.gso = False
                    t.stats.gso_refused += 1
                    self._send_apart(fd, t, m)
                else:
                    t.stats.dropped[DROP_SEND_ERROR] += self.msgs[m].msg_hdr.msg_iovlen
                m += 1
                continue
            for end in range(m, m + n):
                self._count_sent(t, end)
            m += n
        self.count = 0
        self.nmsgs = 0

    cdef void _frame(self, RouteTable t) noexcept nogil:
        """Every message for a receiver with a hop (copies that found the ring full when they
        were made, forward.pxi), as frames on the AF_XDP path (a segment each), and the kernel
        woken once for all. A message the ring has no room for stays for the media socket,
        from its first segment not framed."""
        cdef int m, first, sent, segments
        cdef relay_xsk_hop* hop
        cdef msghdr* h
        for m in range(self.nmsgs):
            if self.conns[m] >= 0:
                continue
            h = &self.msgs[m].msg_hdr
            first = <int>(h.msg_iov - self.iov)
            hop = t.parts[self.owners[first]].hop
            if hop == NULL:
                continue
            segments = <int>h.msg_iovlen
            sent = 0
            while sent < segments and relay_xsk_send(
                    t.xdp.xsk, hop, &self.names[first + sent],
                    self.slab + <size_t>(first + sent) * SLOT_SIZE, self.lens[first + sent]):
                self._count_slot(t, first + sent)
                sent += 1
            if sent == segments:
                self.msg_framed[m] = True
            else:
                t.xdp.fallbacks += <uint64_t>(segments - sent)
                h.msg_iov += sent
                h.msg_iovlen -= <size_t>sent
        xdp_flushed(&t.xdp)

    cdef void _send_apart(self, int fd, RouteTable t, int m) noexcept nogil:
        """Message m's segments, a datagram each."""
        cdef msghdr one = self.msgs[m].msg_hdr
        cdef iovec* first = one.msg_iov
        cdef size_t k
        cdef int rc
        one.msg_control = NULL
        one.msg_controllen = 0
        one.msg_iovlen = 1
        for k in range(self.msgs[m].msg_hdr.msg_iovlen):
            one.msg_iov = first + k
            rc = sendmsg(self.conns[m] if self.conns[m] >= 0 else fd, &one, 0)
            if rc < 0:
                t.stats.dropped[DROP_SEND_ERROR] += 1
            else:
                self._count_slot(t, <int>(first + k - self.iov))

    cdef inline void _count_sent(self, RouteTable t, int m) noexcept nogil:
        cdef int first = <int>(self.msgs[m].msg_hdr.msg_iov - self.iov), i
        cdef int segments = <int>self.msgs[m].msg_hdr.msg_iovlen
        if segments > 1:
            t.stats.gso_segments += <uint64_t>segments
        for i in range(first, first + segments):
            self._count_slot(t, i)

    cdef inline void _count_slot(self, RouteTable t, int i) noexcept nogil:
        t.stats.packets_out += 1
        t.stats.bytes_out += self.lens[i]
        t.parts[self.owners[i]].packets_out += 1
        t.parts[self.owners[i]].bytes_out += self.lens[i]

    def items(self):
        """[(datagram, (ip, port))] queued: for tests."""
        return [(self.slab[<size_t>i * SLOT_SIZE:<size_t>i * SLOT_SIZE + self.lens[i]],
                 _sockaddr_tuple(&self.names[i], self.namelens[i]))
                for i in range(self.count)]

    def messages(self):
        """[(segments, segment size, (ip, port))] queued, a message each: for tests."""
        cdef int m, first
        out = []
        for m in range(self.nmsgs):
            first = <int>(self.msgs[m].msg_hdr.msg_iov - self.iov)
            out.append((<int>self.msgs[m].msg_hdr.msg_iovlen, self.seg_size[m],
                        _sockaddr_tuple(&self.names[first], self.namelens[first])))
        return out

    def clear(self):
        self.count = 0
        self.nmsgs = 0
