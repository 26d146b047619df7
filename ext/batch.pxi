# Batched UDP I/O: the only two system calls of the media path.
#
# RecvBatch fills up to BATCH_MAX slots with one recvmmsg; SendBatch queues up to its capacity
# of protected packets, each with its own destination, and sends them with sendmmsg. Both own
# their memory, allocated once. push() and items() let tests drive the loop without sockets.

@cython.final
cdef class RecvBatch:
    """Up to BATCH_MAX received datagrams with their source addresses."""

    cdef uint8_t* slab
    cdef uint32_t lens[BATCH_MAX]
    cdef bint truncated[BATCH_MAX]
    cdef sockaddr_in6 names[BATCH_MAX]
    cdef socklen_t namelens[BATCH_MAX]
    cdef mmsghdr msgs[BATCH_MAX]
    cdef iovec iov[BATCH_MAX]
    cdef int count

    def __cinit__(self):
        self.slab = <uint8_t*>malloc(BATCH_MAX * SLOT_SIZE)
        if self.slab == NULL:
            raise MemoryError()
        self.count = 0

    def __dealloc__(self):
        free(self.slab)

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
        self.count += 1

    def clear(self):
        self.count = 0


@cython.final
cdef class SendBatch:
    """Protected datagrams waiting for sendmmsg, each with its destination."""

    cdef uint8_t* slab
    cdef uint32_t* lens
    cdef int32_t* owners         # participant slot of each datagram's receiver
    cdef sockaddr_in6* names
    cdef mmsghdr* msgs
    cdef iovec* iov
    cdef int capacity
    cdef int count

    def __cinit__(self, int capacity=SEND_SLOTS):
        if capacity <= 0:
            raise ValueError("capacity must be positive")
        self.capacity = capacity
        self.slab = <uint8_t*>malloc(<size_t>capacity * SLOT_SIZE)
        self.lens = <uint32_t*>malloc(capacity * sizeof(uint32_t))
        self.owners = <int32_t*>malloc(capacity * sizeof(int32_t))
        self.names = <sockaddr_in6*>calloc(capacity, sizeof(sockaddr_in6))
        self.msgs = <mmsghdr*>calloc(capacity, sizeof(mmsghdr))
        self.iov = <iovec*>calloc(capacity, sizeof(iovec))
        if not (self.slab and self.lens and self.owners and self.names and self.msgs
                and self.iov):
            raise MemoryError()
        self.count = 0

    def __dealloc__(self):
        free(self.slab)
        free(self.lens)
        free(self.owners)
        free(self.names)
        free(self.msgs)
        free(self.iov)

    def __len__(self):
        return self.count

    cdef inline uint8_t* slot(self) noexcept nogil:
        """The next free slot (SLOT_SIZE bytes), or NULL when the batch is full."""
        if self.count == self.capacity:
            return NULL
        return self.slab + <size_t>self.count * SLOT_SIZE

    cdef inline void commit_port(self, uint32_t n, const sockaddr_in6* to, socklen_t tolen,
                                 int32_t owner, uint16_t port_be) noexcept nogil:
        """commit(), to another port of the same host when port_be (network order) is set."""
        cdef int i = self.count
        self.commit(n, to, tolen, owner)
        if port_be:
            self.names[i].sin6_port = port_be   # sin_port sits at the same offset

    cdef inline void commit(self, uint32_t n, const sockaddr_in6* to, socklen_t tolen,
                            int32_t owner) noexcept nogil:
        """Queue the slot slot() returned, now holding n bytes for `to`."""
        cdef int i = self.count
        self.lens[i] = n
        self.owners[i] = owner
        memcpy(&self.names[i], to, tolen)
        self.iov[i].iov_base = self.slab + <size_t>i * SLOT_SIZE
        self.iov[i].iov_len = n
        self.msgs[i].msg_hdr.msg_name = &self.names[i]
        self.msgs[i].msg_hdr.msg_namelen = tolen
        self.msgs[i].msg_hdr.msg_iov = &self.iov[i]
        self.msgs[i].msg_hdr.msg_iovlen = 1
        self.count = i + 1

    cdef void flush(self, int fd, RouteTable t) noexcept nogil:
        """sendmmsg everything queued. A datagram the kernel refuses (an ICMP error from an
        earlier send, a full buffer on a non-blocking socket) is counted and skipped."""
        cdef int sent = 0, n, i
        while sent < self.count:
            n = sendmmsg(fd, &self.msgs[sent], <unsigned int>(self.count - sent), 0)
            if n < 0:
                if errno == EINTR:
                    continue
                t.stats.dropped[DROP_SEND_ERROR] += 1
                sent += 1
                continue
            for i in range(sent, sent + n):
                t.stats.packets_out += 1
                t.stats.bytes_out += self.lens[i]
                t.parts[self.owners[i]].packets_out += 1
                t.parts[self.owners[i]].bytes_out += self.lens[i]
            sent += n
        self.count = 0

    def items(self):
        """[(datagram, (ip, port))] queued: for tests."""
        return [(self.slab[<size_t>i * SLOT_SIZE:<size_t>i * SLOT_SIZE + self.lens[i]],
                 _sockaddr_tuple(&self.names[i], self.msgs[i].msg_hdr.msg_namelen))
                for i in range(self.count)]

    def clear(self):
        self.count = 0
