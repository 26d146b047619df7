# How long a packet stays in the relay: from the moment the kernel took it off the wire for the
# media socket (its receive timestamp, SO_TIMESTAMPNS, socket(7)) to the moment the last of its
# copies was handed back to the kernel (the end of the flush of the batch it came in). That
# counts what queued in the socket ahead of it, which is where a relay that falls behind keeps
# its backlog, and the whole fan-out to every receiver, which is the floor: for N receivers at
# C copies a second it is at least N / C (bench/RESULTS.md, "Every way of sending against a C
# ceiling sending the same way; how long packets stay").
#
# It is measured for each relayed RTP packet of a batch that recvmmsg read from the media
# socket (forward.pxi, Forwarder.run_once); packets whose copies wait for an index reservation
# (forward.pxi, _park) are counted when their batch ends, before those copies leave. Both clocks
# are CLOCK_REALTIME, the clock of the kernel's timestamps: a step of the wall clock between
# them (rare; NTP slews rather than steps) shows as one odd observation, clamped at 0. The
# kernel stamps datagrams on arrival once any socket of the host has asked it to; in the
# moment after the first asks (a host's first worker starting), a datagram is stamped when
# read instead, and counts as having waited nothing.
#
# The histogram counts each packet once, in the bucket of the first of the edges below that it
# does not pass (or +Inf), as the receiver reports' histograms do (reports.pxi): the metrics
# serve it as relay_forward_delay_seconds, and `relay bench` reads its percentiles from it
# (bench/delay.py), on the send-only path too, where nothing receives the copies.

cdef double DELAY_EDGES[DELAY_BUCKETS]     # seconds
DELAY_EDGES[:] = [0.0001, 0.0002, 0.0003, 0.0005, 0.00075, 0.001, 0.0015, 0.002, 0.003,
                  0.004, 0.005, 0.0075, 0.01, 0.015, 0.02, 0.03, 0.05, 0.075, 0.1, 0.2, 0.5,
                  1.0]


cdef inline double wall_clock() noexcept nogil:
    """CLOCK_REALTIME in seconds, the clock of the kernel's receive timestamps."""
    cdef timespec t
    clock_gettime(CLOCK_REALTIME, &t)
    return <double>t.tv_sec + 1e-9 * <double>t.tv_nsec


cdef inline void delay_observe(Counters* c, double seconds) noexcept nogil:
    cdef int i
    if seconds < 0:
        seconds = 0
    c.delay_sum_us += <uint64_t>(seconds * 1e6 + 0.5)
    for i in range(DELAY_BUCKETS):
        if seconds <= DELAY_EDGES[i]:
            c.delay[i] += 1
            return
    c.delay[DELAY_BUCKETS] += 1


cdef dict delay_histogram(const Counters* c):
    """The histogram as RouteTable.counters() gives it: the count in each bucket by its upper
    edge ("+Inf" last), and the sum in microseconds."""
    cdef int i
    out = {repr(DELAY_EDGES[i]): c.delay[i] for i in range(DELAY_BUCKETS)}
    out["+Inf"] = c.delay[DELAY_BUCKETS]
    return {"forward_delay": out, "forward_sums": {"delay_us": c.delay_sum_us}}


# The socket option that makes the kernel stamp each datagram (relay/worker.py sets it on the
# media sockets; Python's socket module does not name it).
RECEIVE_TIMESTAMPS = SO_TIMESTAMPNS
