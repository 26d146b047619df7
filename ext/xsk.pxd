# The AF_XDP transmit socket (xsk.h, xsk.c): what xdp.pxi and batch.pxi call.

from libc.stdint cimport uint8_t, uint16_t, uint32_t, uint64_t


cdef extern from "xsk.h" nogil:
    enum:
        RELAY_XSK_FRAME
        RELAY_XSK_HEADROOM_MAX
    enum:
        RELAY_XSK_CSUM_OFFLOAD
        RELAY_XSK_CSUM_RELAY
        RELAY_XSK_CSUM_KERNEL
    ctypedef struct relay_xsk:
        pass
    ctypedef struct relay_xsk_hop:
        uint8_t header[RELAY_XSK_HEADROOM_MAX]
        uint8_t header_len
        uint8_t family
    ctypedef struct relay_xsk_stats:
        uint64_t frames
        uint64_t ring_full
        uint64_t wakeups
        uint64_t wakeup_errors
        uint64_t invalid
    relay_xsk* relay_xsk_open(unsigned ifindex, unsigned queue, unsigned frames, int checksum,
                              const char** stage)
    void relay_xsk_close(relay_xsk* x)
    int relay_xsk_fd(const relay_xsk* x)
    int relay_xsk_checksum(const relay_xsk* x)
    const relay_xsk_stats* relay_xsk_counters(relay_xsk* x)
    void relay_xsk_hop_init(relay_xsk_hop* hop, int family, const uint8_t* dst_mac,
                            const uint8_t* src_mac, const uint8_t* src, uint16_t src_port)
    int relay_xsk_send(relay_xsk* x, const relay_xsk_hop* hop, const void* to,
                       const uint8_t* data, uint32_t len)
    void relay_xsk_wake(relay_xsk* x)
    uint16_t relay_xsk_udp_checksum(uint32_t pseudo, const uint8_t* udp, uint32_t len)
