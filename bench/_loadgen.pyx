# cython: language_level=3
# The native load generator: paced senders and counting sinks for many simulated participants
# on one UDP socket, so that it is never the bottleneck of a benchmark.
#
# Participant i lives at 127.A.B.C (its index plus one, spread over 127.1.0.1 and up) on one
# port: the socket is bound to that port on all local addresses, sends with IP_PKTINFO to pick
# each packet's source address, and learns each datagram's destination (so its receiver) from
# IP_PKTINFO on receive. Packets are SRTP-protected ahead of time by the caller; each carries
# its packet number, and the sender records when it actually left, so sinks measure added
# latency on the samples they keep (decrypted and checked afterwards, in Python).

from libc.stdint cimport int32_t, int64_t, uint8_t, uint16_t, uint32_t, uint64_t
from libc.stdlib cimport calloc, free, malloc
from libc.string cimport memcpy, memset


from netio cimport *


cdef extern from "<time.h>" nogil:
    enum:
        CLOCK_MONOTONIC
        TIMER_ABSTIME
    int clock_gettime(int clk, timespec* ts)
    int clock_nanosleep(int clk, int flags, const timespec* req, timespec* rem)


cdef enum:
    BATCH = 64
    SLOT = 2048
    CONTROL = 64            # room for one IP_PKTINFO control message


cdef inline int64_t now_ns() noexcept nogil:
    cdef timespec ts
    clock_gettime(CLOCK_MONOTONIC, &ts)
    return <int64_t>ts.tv_sec * 1000000000 + ts.tv_nsec


def monotonic_ns():
    """CLOCK_MONOTONIC in ns: the clock the generator schedules and timestamps with."""
    return now_ns()


def participant_address(int index):
    """The loopback address of participant `index`."""
    cdef uint32_t ip = participant_ip(index)
    return f"127.{(ip >> 16) & 255}.{(ip >> 8) & 255}.{ip & 255}"


cdef inline uint32_t participant_ip(int index) noexcept nogil:
    cdef uint32_t n = <uint32_t>index + 1
    return (<uint32_t>127 << 24) | ((1 + (n >> 16)) << 16) | (n & 0xFFFF)


cdef inline int participant_index(uint32_t ip) noexcept nogil:
    """The inverse of participant_ip, or -1."""
    if (ip >> 24) != 127 or ((ip >> 16) & 255) < 1:
        return -1
    return <int>((((ip >> 16) & 255) - 1) << 16 | (ip & 0xFFFF)) - 1


cdef class Loadgen:
    """Senders and sinks for `participants` simulated participants on one socket (fd)."""

    cdef int fd
    cdef int participants
    cdef uint64_t* per_participant  # datagrams received per participant
    cdef uint64_t nreceived
    cdef uint64_t nstrays           # datagrams for no known participant
    cdef volatile bint stopping
    cdef int sample_every
    cdef int sample_capacity
    cdef int nsamples
    cdef uint8_t* sample_data
    cdef uint32_t* sample_len
    cdef int32_t* sample_who
    cdef int64_t* sample_ns

    def __cinit__(self, int fd, int participants, int sample_capacity=8192,
                  int sample_every=97):
        self.fd = fd
        self.participants = participants
        self.sample_every = sample_every
        self.sample_capacity = sample_capacity
        self.per_participant = <uint64_t*>calloc(participants, sizeof(uint64_t))
        self.sample_data = <uint8_t*>malloc(<size_t>sample_capacity * SLOT)
        self.sample_len = <uint32_t*>malloc(sample_capacity * sizeof(uint32_t))
        self.sample_who = <int32_t*>malloc(sample_capacity * sizeof(int32_t))
        self.sample_ns = <int64_t*>malloc(sample_capacity * sizeof(int64_t))
        if not (self.per_participant and self.sample_data and self.sample_len and self.sample_who
                and self.sample_ns):
            raise MemoryError()

    def __dealloc__(self):
        free(self.per_participant)
        free(self.sample_data)
        free(self.sample_len)
        free(self.sample_who)
        free(self.sample_ns)

    def reset(self, int sample_every=0):
        """Zero the counts and drop the samples, before a new measurement."""
        memset(self.per_participant, 0, self.participants * sizeof(uint64_t))
        self.nreceived = 0
        self.nstrays = 0
        self.nsamples = 0
        self.stopping = False
        if sample_every > 0:
            self.sample_every = sample_every

    def stop(self):
        self.stopping = True

    @property
    def received(self):
        return self.nreceived

    @property
    def strays(self):
        return self.nstrays

    def counts(self):
        return [self.per_participant[i] for i in range(self.participants)]

    def samples(self):
        """[(receiver index, receive time ns, datagram)] kept by sink()."""
        return [(self.sample_who[i], self.sample_ns[i],
                 self.sample_data[<size_t>i * SLOT:<size_t>i * SLOT + self.sample_len[i]])
                for i in range(self.nsamples)]

    def send(self, const uint8_t[:, ::1] slab not None, const uint32_t[::1] lengths not None,
             const int32_t[::1] senders not None, const int64_t[::1] at_ns not None,
             int64_t[::1] sent_ns not None, str dest_ip, int dest_port=0,
             const int32_t[:, ::1] ports=None):
        """Send row i of slab from participant senders[i] to dest at time at_ns[i]
        (CLOCK_MONOTONIC), writing when it actually left into sent_ns[i]: when the sendmmsg
        that sent its last copy began (a time taken after the call returned would come after
        the copy's arrival when this thread is preempted meanwhile, and make a latency below
        zero on a busy host; this one counts the call's own time in). Returns the number
        of rows sent (every copy of them). Packets due together leave in one sendmmsg.

        dest is dest_ip:dest_port, or with ports (a row per packet, a column per copy)
        dest_ip:ports[i, c] for each copy c of row i: one relay process per port, each row to
        its sender's home process, or a copy to every process."""
        cdef Py_ssize_t n = lengths.shape[0]
        cdef Py_ssize_t i = 0, c = 0, j, cc, k, _m
        cdef Py_ssize_t copies = 1 if ports is None else ports.shape[1]
        cdef bint per_row = ports is not None
        cdef bint row_ok = True
        cdef uint16_t fixed_port = htons(dest_port)
        cdef sockaddr_in dest[BATCH]
        cdef mmsghdr msgs[BATCH]
        cdef iovec iov[BATCH]
        cdef uint8_t control[BATCH][CONTROL]
        cdef cmsghdr* cm
        cdef in_pktinfo* info
        cdef int64_t t, wait, began
        cdef timespec ts
        cdef int rc, sent = 0
        cdef uint32_t addr = htonl(_ipv4(dest_ip.encode()))
        if slab.shape[0] < n or senders.shape[0] < n or at_ns.shape[0] < n or \
                sent_ns.shape[0] < n:
            raise ValueError("slab, senders, at_ns and sent_ns need a row per packet")
        if per_row:
            if ports.shape[0] < n or not 0 < copies <= BATCH:
                raise ValueError(f"ports needs a row per packet and 1 to {BATCH} columns")
            for j in range(n):
                for cc in range(copies):
                    if not 0 < ports[j, cc] < 65536:
                        raise ValueError(f"port out of range: {ports[j, cc]}")
        elif not 0 < dest_port < 65536:
            raise ValueError(f"port out of range: {dest_port}")
        memset(dest, 0, sizeof(dest))
        for k in range(BATCH):
            dest[k].sin_family = AF_INET
            dest[k].sin_addr.s_addr = addr
        with nogil:
            while i < n and not self.stopping:
                t = now_ns()
                wait = at_ns[i] - t
                if wait > 200000:   # more than 0.2 ms early: sleep until then
                    ts.tv_sec = at_ns[i] // 1000000000
                    ts.tv_nsec = at_ns[i] % 1000000000
                    clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, NULL)
                    continue
                if wait > 0:
                    continue        # spin the last fraction of a millisecond
                # Messages from copy c of row i on, while rows are due: (j, cc) walks them.
                k = 0
                j = i
                cc = c
                while j < n and k < BATCH and at_ns[j] <= t:
                    dest[k].sin_port = <uint16_t>htons(ports[j, cc]) if per_row else fixed_port
                    iov[k].iov_base = <void*>&slab[j, 0]
                    iov[k].iov_len = lengths[j]
                    memset(&msgs[k], 0, sizeof(mmsghdr))
                    msgs[k].msg_hdr.msg_name = &dest[k]
                    msgs[k].msg_hdr.msg_namelen = sizeof(sockaddr_in)
                    msgs[k].msg_hdr.msg_iov = &iov[k]
                    msgs[k].msg_hdr.msg_iovlen = 1
                    memset(control[k], 0, CONTROL)
                    msgs[k].msg_hdr.msg_control = control[k]
                    msgs[k].msg_hdr.msg_controllen = CMSG_SPACE(sizeof(in_pktinfo))
                    cm = CMSG_FIRSTHDR(&msgs[k].msg_hdr)
                    cm.cmsg_level = IPPROTO_IP
                    cm.cmsg_type = IP_PKTINFO
                    cm.cmsg_len = CMSG_LEN(sizeof(in_pktinfo))
                    info = <in_pktinfo*>CMSG_DATA(cm)
                    info.ipi_spec_dst.s_addr = htonl(participant_ip(senders[j]))
                    k += 1
                    cc += 1
                    if cc == copies:
                        cc = 0
                        j += 1
                began = now_ns()
                rc = sendmmsg(self.fd, msgs, <unsigned int>k, 0)
                t = now_ns()
                if rc <= 0:
                    rc = 1           # skip the one that failed; the sinks will miss it
                    row_ok = False
                # A row counts as sent once all its copies have left.
                for _m in range(rc):
                    c += 1
                    if c == copies:
                        sent_ns[i] = began
                        if row_ok:
                            sent += 1
                        row_ok = True
                        c = 0
                        i += 1
        return sent

    def sink(self, double seconds):
        """Receive and count until stop() or `seconds` pass; keep every sample_every-th
        datagram (up to the sample capacity) with its receiver and arrival time. The socket
        must block with a receive timeout (SO_RCVTIMEO), so that stop() is noticed."""
        cdef mmsghdr msgs[BATCH]
        cdef iovec iov[BATCH]
        cdef uint8_t control[BATCH][CONTROL]
        cdef uint8_t* slab = <uint8_t*>malloc(BATCH * SLOT)
        cdef int64_t deadline = now_ns() + <int64_t>(seconds * 1e9)
        cdef int64_t t
        cdef int n, i, who
        cdef cmsghdr* cm
        cdef uint32_t dst
        if slab == NULL:
            raise MemoryError()
        with nogil:
            while not self.stopping and now_ns() < deadline:
                for i in range(BATCH):
                    iov[i].iov_base = slab + i * SLOT
                    iov[i].iov_len = SLOT
                    memset(&msgs[i], 0, sizeof(mmsghdr))
                    msgs[i].msg_hdr.msg_iov = &iov[i]
                    msgs[i].msg_hdr.msg_iovlen = 1
                    msgs[i].msg_hdr.msg_control = control[i]
                    msgs[i].msg_hdr.msg_controllen = CONTROL
                # One call per batch: it waits for the first datagram (at most SO_RCVTIMEO,
                # which the caller sets) and takes whatever else is queued.
                n = recvmmsg(self.fd, msgs, BATCH, MSG_WAITFORONE, NULL)
                if n <= 0:
                    continue
                t = now_ns()
                for i in range(n):
                    who = -1
                    cm = CMSG_FIRSTHDR(&msgs[i].msg_hdr)
                    while cm != NULL:
                        if cm.cmsg_level == IPPROTO_IP and cm.cmsg_type == IP_PKTINFO:
                            dst = ntohl((<in_pktinfo*>CMSG_DATA(cm)).ipi_addr.s_addr)
                            who = participant_index(dst)
                            break
                        cm = CMSG_NXTHDR(&msgs[i].msg_hdr, cm)
                    if who < 0 or who >= self.participants:
                        self.nstrays += 1
                        continue
                    self.per_participant[who] += 1
                    self.nreceived += 1
                    if (self.nreceived % <uint64_t>self.sample_every == 0
                            and self.nsamples < self.sample_capacity):
                        memcpy(self.sample_data + <size_t>self.nsamples * SLOT,
                               slab + i * SLOT, msgs[i].msg_len)
                        self.sample_len[self.nsamples] = msgs[i].msg_len
                        self.sample_who[self.nsamples] = who
                        self.sample_ns[self.nsamples] = t
                        self.nsamples += 1
        free(slab)
        return self.nreceived


cdef uint32_t _ipv4(bytes text) except? 0:
    parts = [int(x) for x in text.split(b".")]
    if len(parts) != 4 or not all(0 <= x < 256 for x in parts):
        raise ValueError(f"not an IPv4 address: {text!r}")
    return (parts[0] << 24) | (parts[1] << 16) | (parts[2] << 8) | parts[3]
