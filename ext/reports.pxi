# Receiver reports put to use (RFC 3550 section 6.4): what each receiver says of the streams it
# gets, for the operator (the participants list, the metrics' histograms).
#
# A receiver's RR (or the report blocks of its SR) names a stream by SSRC and says, of what it
# got since its last report, the fraction lost (of 256) and the interarrival jitter (in the
# stream's timestamp units: 90 kHz for video, 48 kHz for audio, the clocks the relay forwards),
# and LSR and DLSR: the middle 32 bits of the NTP timestamp of the last sender report it got
# for that stream, and how long ago (in 1/65536 s). The relay forwards each sender report
# itself and remembers when (`sr_remember`, SR_KEPT per stream), so the round-trip time between
# the relay and the receiver is: the report's arrival - when the relay forwarded that SR -
# DLSR (section 6.4.1). A block whose LSR the relay does not know (0: no SR yet; or one older
# than SR_KEPT reports) gives no round-trip time.
#
# Per block: a histogram each (Counters.rr_*, the edges below), and the receiver's latest
# values (Participant.rr_*), which the worker reports for the participants list once they
# change (RouteTable.take_reception).

cdef double RR_LOSS_EDGES[RR_BUCKETS]       # fraction lost
cdef double RR_JITTER_EDGES[RR_BUCKETS]     # seconds
cdef double RR_RTT_EDGES[RR_BUCKETS]        # seconds
RR_LOSS_EDGES[:] = [0.001, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5]
RR_JITTER_EDGES[:] = [0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.5]
RR_RTT_EDGES[:] = [0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0]


cdef inline void sr_remember(SenderStream* st, const uint8_t* sr, double now) noexcept nogil:
    """A sender report of this stream is being forwarded: note its NTP middle bits and when."""
    st.sr_ntp[st.sr_next] = load_be32(sr + 10)
    st.sr_at[st.sr_next] = now
    st.sr_next = (st.sr_next + 1) % SR_KEPT


cdef inline void _observe(uint64_t* buckets, const double* edges, double value) noexcept nogil:
    cdef int i
    for i in range(RR_BUCKETS):
        if value <= edges[i]:
            buckets[i] += 1
            return
    buckets[RR_BUCKETS] += 1


cdef inline uint32_t _microseconds(double seconds) noexcept nogil:
    """Rounded to the nearest, and kept below RTT_UNKNOWN (about 71 minutes)."""
    return <uint32_t>min(seconds * 1e6 + 0.5, 4e9)


cdef void rr_block(Counters* c, Participant* receiver, const SenderStream* st,
                   const uint8_t* block, double now) noexcept nogil:
    """One report block (24 bytes) of `receiver` about stream `st`."""
    cdef uint8_t fraction = block[4]
    cdef double clock = 90000.0 if st.video else 48000.0
    cdef double jitter_s = load_be32(block + 12) / clock
    cdef uint32_t lsr = load_be32(block + 16)
    cdef double dlsr_s = load_be32(block + 20) / 65536.0
    cdef double rtt_s = -1.0
    cdef int i
    if lsr != 0:
        for i in range(SR_KEPT):
            if st.sr_ntp[i] == lsr and st.sr_at[i] > 0:
                rtt_s = now - st.sr_at[i] - dlsr_s
                break
    _observe(c.rr_loss, RR_LOSS_EDGES, fraction / 256.0)
    c.rr_loss_sum_ppm += <uint64_t>(fraction * 1000000 // 256)
    _observe(c.rr_jitter, RR_JITTER_EDGES, jitter_s)
    c.rr_jitter_sum_us += _microseconds(jitter_s)
    receiver.rr_fraction = fraction
    receiver.rr_jitter_us = _microseconds(jitter_s)
    if rtt_s >= 0:
        _observe(c.rr_rtt, RR_RTT_EDGES, rtt_s)
        c.rr_rtt_sum_us += _microseconds(rtt_s)
        receiver.rr_rtt_us = _microseconds(rtt_s)
    receiver.rr_fresh = True


cdef dict report_histograms(const Counters* c):
    """The histograms as RouteTable.counters() gives them: per family, the count in each
    bucket by its upper edge ("+Inf" last), and the sum."""
    cdef int i
    out = {}
    out["rr_loss"] = {repr(RR_LOSS_EDGES[i]): c.rr_loss[i] for i in range(RR_BUCKETS)}
    out["rr_loss"]["+Inf"] = c.rr_loss[RR_BUCKETS]
    out["rr_jitter"] = {repr(RR_JITTER_EDGES[i]): c.rr_jitter[i] for i in range(RR_BUCKETS)}
    out["rr_jitter"]["+Inf"] = c.rr_jitter[RR_BUCKETS]
    out["rr_rtt"] = {repr(RR_RTT_EDGES[i]): c.rr_rtt[i] for i in range(RR_BUCKETS)}
    out["rr_rtt"]["+Inf"] = c.rr_rtt[RR_BUCKETS]
    out["rr_sums"] = {
        "loss_ppm": c.rr_loss_sum_ppm,
        "jitter_us": c.rr_jitter_sum_us,
        "rtt_us": c.rr_rtt_sum_us,
    }
    return out
