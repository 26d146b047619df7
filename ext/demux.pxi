# One port, three protocols (RFC 7983 section 7): the first byte of a datagram says what it is.
#
#   0..3       STUN: ICE connectivity checks and consent (RFC 8445, RFC 7675)
#   20..63     DTLS: the DTLS-SRTP handshake (RFC 5764 section 5.1.2)
#   128..191   RTP and RTCP, version 2: the fast path (forward.pxi)
#
# Anything else is malformed. STUN and DTLS are a WebRTC peer's signalling on the media port:
# rare next to media (a check every few seconds per peer, one handshake per join), so the loop
# only copies them aside with their source, and the worker's Python side answers them between
# batches (relay/webrtc.py). The buffer holds a whole batch and the worker takes it after each
# one, so nothing set aside is lost here; the Python side counts what it refuses.
#
# Python costs microseconds a datagram where this loop costs nanoseconds, so what reaches it is
# bounded twice: only what looks like STUN (the magic cookie and a length that fits, RFC 8489
# section 5) or a DTLS 1.x record (RFC 6347 section 4.1) is set aside, which random bytes
# almost never do (counted malformed here, as they cost); and at most `budget` datagrams until
# the worker gives it more (relay/worker.py: SIGNALLING_PER_SECOND each second), the rest
# counted as `signalling_limit`. A flood of well-formed checks with wrong passwords then costs
# the worker a bounded share of a core, and media goes on.
#
# Set-aside is off until the worker turns it on (it does when it serves WebRTC peers): a relay
# without them counts STUN and DTLS as malformed, as it did before.

cdef enum:
    SIGNALLING_MIN = 13     # bytes: a DTLS record header (RFC 6347 section 4.1); STUN's is 20


@cython.final
cdef class Aside:
    """The STUN and DTLS datagrams of one receive batch, with their sources."""

    cdef uint8_t* slab
    cdef uint32_t lens[BATCH_MAX]
    cdef sockaddr_in6 names[BATCH_MAX]
    cdef socklen_t namelens[BATCH_MAX]
    cdef int count

    def __cinit__(self):
        self.slab = <uint8_t*>malloc(BATCH_MAX * SLOT_SIZE)
        if self.slab == NULL:
            raise MemoryError()
        self.count = 0

    def __dealloc__(self):
        free(self.slab)

    cdef bint put(self, const uint8_t* pkt, uint32_t n, const sockaddr_in6* src,
                  socklen_t srclen) noexcept nogil:
        """Copy a datagram aside; False if the buffer is full (not within one batch)."""
        if self.count == BATCH_MAX or n > SLOT_SIZE or srclen > sizeof(sockaddr_in6):
            return False
        memcpy(self.slab + <size_t>self.count * SLOT_SIZE, pkt, n)
        self.lens[self.count] = n
        memcpy(&self.names[self.count], src, srclen)
        self.namelens[self.count] = srclen
        self.count += 1
        return True

    cdef list take(self):
        """[(datagram, (ip, port))], oldest first, and empty the buffer. Python objects per
        datagram here are fine: this is signalling, never media."""
        cdef int i
        taken = [
            ((<char*>self.slab + <size_t>i * SLOT_SIZE)[:self.lens[i]],
             _sockaddr_tuple(&self.names[i], self.namelens[i]))
            for i in range(self.count)
        ]
        self.count = 0
        return taken


cdef inline bint is_signalling(const uint8_t* pkt, uint32_t n) noexcept nogil:
    """STUN (first byte 0..3, RFC 7983 section 7) with the magic cookie and a length that is
    what the datagram holds past the header; or a DTLS record (20..63) of DTLS 1.0 or 1.2
    (version 0xFEFF or 0xFEFD, RFC 6347 section 4.1). n is at least SIGNALLING_MIN."""
    if pkt[0] <= 3:
        return (n >= 20 and load_be32(pkt + 4) == 0x2112A442
                and <uint32_t>load_be16(pkt + 2) + 20 == n)
    return 20 <= pkt[0] <= 63 and pkt[1] == 0xFE and (pkt[2] == 0xFD or pkt[2] == 0xFF)
