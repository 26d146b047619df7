# RTP and RTCP header arithmetic (RFC 3550 section 5.1 and 6.4), header-only so the load
# generator can cimport it too. Nothing here allocates or touches Python objects.

from libc.stdint cimport uint8_t, uint16_t, uint32_t


cdef inline uint16_t load_be16(const uint8_t* p) noexcept nogil:
    return <uint16_t>((<uint16_t>p[0] << 8) | p[1])


cdef inline uint32_t load_be32(const uint8_t* p) noexcept nogil:
    return ((<uint32_t>p[0] << 24) | (<uint32_t>p[1] << 16)
            | (<uint32_t>p[2] << 8) | <uint32_t>p[3])


cdef inline void store_be16(uint8_t* p, uint16_t v) noexcept nogil:
    p[0] = <uint8_t>(v >> 8)
    p[1] = <uint8_t>v


cdef inline void store_be32(uint8_t* p, uint32_t v) noexcept nogil:
    p[0] = <uint8_t>(v >> 24)
    p[1] = <uint8_t>(v >> 16)
    p[2] = <uint8_t>(v >> 8)
    p[3] = <uint8_t>v


cdef inline Py_ssize_t rtp_header_len(const uint8_t* p, size_t n) noexcept nogil:
    """Length of the RTP header that SRTP leaves in the clear, or -1 if malformed.

    The clear part is the 12-byte fixed header, 4 bytes per CSRC (CC, the low nibble of byte 0)
    and, with the X bit, the extension: a 4-byte head whose second half counts 32-bit words
    (RFC 3550 section 5.3.1). Padding (the P bit) is part of the payload and is encrypted.
    """
    cdef size_t hlen
    if n < 12 or (p[0] >> 6) != 2:
        return -1
    hlen = 12 + 4 * <size_t>(p[0] & 0x0F)
    if p[0] & 0x10:
        if hlen + 4 > n:
            return -1
        hlen += 4 + 4 * <size_t>load_be16(p + hlen + 2)
    if hlen > n:
        return -1
    return <Py_ssize_t>hlen


cdef inline bint rtcp_header_ok(const uint8_t* p, size_t n) noexcept nogil:
    """An RTCP compound packet starts with a version-2 header and a sender SSRC (8 bytes)."""
    return n >= 8 and (p[0] >> 6) == 2
