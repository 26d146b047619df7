# Retransmission (RFC 4585 section 6.2.1, the generic NACK): a receiver that lost packets
# names them, and the relay sends them again from a cache of what it forwarded, protected for
# that receiver. Forwarder._answer_nack (forward.pxi) does it; this file holds the cache.
#
# The cache. One per sent stream (SenderStream.cache) on each worker, shared by all that
# stream's receivers there, whether the sender is homed here or its packets come from another
# worker (fanout.pxi). A video stream's is opened at its first packet, so its first losses are
# served too; any other stream's at the first NACK that names it (browsers NACK video only:
# audio costs nothing). CACHE_SLOTS plaintexts, indexed by the sender's SRTP index; one older
# than CACHE_AGE (video; CACHE_AGE_AUDIO for the rest, whose jitter buffers are shorter) is not
# served (the receiver's jitter buffer has given up on it), nor one larger than CACHE_BYTES
# (it is not kept). Memory: sizeof(RtxCache) (RTX_CACHE_BYTES, about
# 770 KB) per cached stream on each worker that forwards it, and nothing per packet.
#
# Never the same index twice with other bytes (table.pxi, "Never the same index twice"). A
# retransmission is the packet that went out at that receiver's index, protected again at the
# same index. The receiver's index o maps to the sender's index o - delta through its OutStream
# exactly as when the packet first went out, as long as the mapping has not changed since
# (the same source, under the same key, the same delta and payload type: OutStream.resend_from
# is where the present mapping began). Then the cached plaintext, rewritten as then (sequence
# number, payload type), is the same RTP packet, and under the same key and index the same SRTP
# packet (AES-CM and AES-GCM are deterministic): no keystream is used for other bytes. An index
# outside [resend_from, next), or a packet the cache does not hold under that sender's key, is
# not sent.
#
# What the cache cannot serve is asked of the sender: one NACK per receiver NACK at most, each
# index asked at most once per RTX_ASK_AGAIN whoever asks on this worker; a sender homed on
# another worker is asked by that worker (EXPORT_NACK, fanout.pxi), which alone protects RTCP
# for it.
# What one receiver gets again and asks of the sender is bounded (RTX_BURST, then one per
# RTX_SHARE packets it was sent within the second), so a NACK flood cannot multiply the traffic
# a receiver gets, nor the NACKs a sender does.

cdef enum:
    CACHE_SLOTS = 512       # packets: a second of 4 Mbit/s video in 1,000-byte packets
    CACHE_BYTES = 1500      # the largest plaintext kept (what fits an Ethernet MTU)
    RTX_BURST = 64          # retransmissions a receiver may get in a second, plus ...
    RTX_SHARE = 5           # ... one per RTX_SHARE packets it was sent in that second
    RTX_ASKED = 64          # indexes per stream remembered as asked of the sender
    NACK_MAX_FCI = 32       # FCI entries (16 packets each) in one NACK the relay sends

    # What became of each packet a NACK named (the "rtx" counters, relay_retransmissions_total)
    RTX_SERVED = 0          # sent again from the cache
    RTX_ASKED_SENDER = 1    # not cached: asked of its sender
    RTX_NOT_CACHED = 2      # not cached, and its sender is not asked (asked lately, elsewhere)
    RTX_RATE_LIMITED = 3    # past the receiver's retransmission budget
    RTX_NOT_SENT = 4        # not an index this receiver was sent under the present mapping
    RTX_UNKNOWN_STREAM = 5  # no stream of that SSRC in the receiver's meeting
    RTX_OUTCOMES = 6

RTX_NAMES = ("served", "asked_sender", "not_cached", "rate_limited", "not_sent",
             "unknown_stream")
assert len(RTX_NAMES) == RTX_OUTCOMES

cdef double CACHE_AGE = 1.0         # seconds a cached packet of video may be served
cdef double CACHE_AGE_AUDIO = 0.5   # and of any other stream
cdef double RTX_ASK_AGAIN = 0.2     # seconds before the sender is asked the same index again


ctypedef struct CachedPacket:
    uint64_t index          # the sender's SRTP index
    double at               # when it came (the loop's clock)
    uint32_t key            # the sender's uplink key then (low bits of its fingerprint)
    uint16_t length         # plaintext bytes; 0: empty


ctypedef struct RtxCache:
    CachedPacket meta[CACHE_SLOTS]
    uint64_t asked[RTX_ASKED]       # sender indexes lately asked of the sender, and when
    double asked_at[RTX_ASKED]
    uint32_t asked_next
    uint8_t data[CACHE_SLOTS * CACHE_BYTES]


RTX_CACHE_BYTES = sizeof(RtxCache)  # one stream's cache (the documentation, the benchmarks)


cdef inline RtxCache* rtx_cache_new() noexcept nogil:
    cdef RtxCache* c = <RtxCache*>calloc(1, sizeof(RtxCache))
    cdef int i
    if c != NULL:
        for i in range(RTX_ASKED):
            c.asked_at[i] = -1e18
    return c


cdef inline void rtx_cache_put(RtxCache* c, uint64_t index, uint32_t key, const uint8_t* plain,
                               size_t n, double now) noexcept nogil:
    """Keep a forwarded packet's plaintext (one too large leaves its slot empty)."""
    cdef uint32_t s = <uint32_t>(index & (CACHE_SLOTS - 1))
    cdef CachedPacket* e = &c.meta[s]
    e.index = index
    e.at = now
    e.key = key
    if n > CACHE_BYTES:
        e.length = 0
        return
    memcpy(&c.data[<size_t>s * CACHE_BYTES], plain, n)
    e.length = <uint16_t>n


cdef inline const uint8_t* rtx_cache_get(const RtxCache* c, uint64_t index, uint32_t key,
                                         double now, double max_age,
                                         size_t* n) noexcept nogil:
    """The plaintext the sender sent at `index` under `key`, if kept and at most max_age
    seconds old; else NULL."""
    cdef uint32_t s = <uint32_t>(index & (CACHE_SLOTS - 1))
    cdef const CachedPacket* e = &c.meta[s]
    if e.length == 0 or e.index != index or e.key != key or now - e.at > max_age:
        return NULL
    n[0] = e.length
    return &c.data[<size_t>s * CACHE_BYTES]


cdef inline bint rtx_ask(RtxCache* c, uint64_t index, double now) noexcept nogil:
    """Whether to ask the sender for `index` now (not asked within RTX_ASK_AGAIN); if so, it
    is remembered as asked."""
    cdef int i
    for i in range(RTX_ASKED):
        if c.asked[i] == index and now - c.asked_at[i] < RTX_ASK_AGAIN:
            return False
    c.asked[c.asked_next] = index
    c.asked_at[c.asked_next] = now
    c.asked_next = (c.asked_next + 1) % RTX_ASKED
    return True


cdef inline uint64_t nack_index(uint64_t next, uint16_t seq) noexcept nogil:
    """A receiver's index for a sequence number its NACK names, given `next`, the lowest index
    its stream was not sent yet (OutStream.next, above 0): the latest index at or below the
    highest it was sent with that sequence number (a NACK is about the past)."""
    cdef uint64_t last = next - 1
    return last - <uint16_t>(<uint16_t>last - seq)


cdef size_t nack_build(uint8_t* buf, uint32_t media_ssrc, const uint64_t* indexes,
                       int count) noexcept nogil:
    """A generic NACK (RFC 4585 section 6.2.1) for these sender indexes (ascending order
    packs best): PID and a bitmask of the 16 after it per entry. Its packet sender SSRC is 0:
    the relay sends no media of its own. Returns its length."""
    cdef size_t n = 12
    cdef int i
    cdef uint16_t pid = 0, blp = 0, seq, gap
    cdef bint open_entry = False
    for i in range(count):
        seq = <uint16_t>(indexes[i] & 0xFFFF)
        gap = <uint16_t>(seq - pid)
        if open_entry and 1 <= gap <= 16:
            blp |= <uint16_t>(1 << (gap - 1))
            continue
        if open_entry:
            store_be16(buf + n, pid)
            store_be16(buf + n + 2, blp)
            n += 4
        pid = seq
        blp = 0
        open_entry = True
    if open_entry:
        store_be16(buf + n, pid)
        store_be16(buf + n + 2, blp)
        n += 4
    buf[0] = 0x81           # version 2, FMT 1: generic NACK
    buf[1] = 205            # RTPFB
    store_be16(buf + 2, <uint16_t>(n // 4 - 1))
    store_be32(buf + 4, 0)
    store_be32(buf + 8, media_ssrc)
    return n
