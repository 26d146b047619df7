/* An AF_XDP socket that only transmits: copies leave through a ring the kernel reads, past
 * the IP stack (docs/ARCHITECTURE.md, "How copies leave the host").
 *
 * The worker writes each copy as a whole Ethernet frame (Ethernet, IPv4 or IPv6, UDP, the
 * SRTP packet) into a frame of a memory area it registered with the kernel (the UMEM), puts
 * the frame's place on the TX ring, and wakes the kernel with one sendto() for many frames.
 * In copy mode (the only mode veth and ifb offer, and the fallback everywhere) the kernel
 * copies each frame into an skb and hands it to the device's driver directly: no routing,
 * no netfilter, no qdisc, no socket accounting. Once sent, the frame's place comes back on the
 * completion ring and is used again.
 *
 * What the frame says comes from a relay_xsk_hop: the addresses the IP stack would have put
 * there (the next hop's MAC from the kernel's neighbour table, our MAC and source address on
 * that interface, relay/nexthop.py), the destination address and port from the copy's own
 * message (ext/batch.pxi), so a frame never goes anywhere its socket twin would not.
 *
 * Ring layout and protocol: the kernel's Documentation/networking/af_xdp.rst. Only the
 * producer of a ring writes its producer index, with release order after the descriptors; the
 * consumer reads it with acquire order, and the same the other way for the consumer index. */
#ifndef RELAY_XSK_H
#define RELAY_XSK_H

#include <stdint.h>
#include <netinet/in.h>

#define RELAY_XSK_FRAME 2048u           /* bytes per UMEM frame: one Ethernet frame each */
#define RELAY_XSK_HEADROOM_MAX 62u      /* Ethernet 14 + IPv6 40 + UDP 8 */

/* Who computes each frame's UDP checksum (relay_xsk_open's `checksum`).
 *
 * OFFLOAD: the device, as for the kernel's own UDP sockets. Each frame carries AF_XDP TX
 *   metadata (Linux 6.11 or later, or a kernel with XDP_UMEM_TX_METADATA_LEN backported;
 *   the kernel's Documentation/networking/xsk-tx-metadata.rst) asking for it from the UDP
 *   header on, and the UDP checksum field holds the pseudo-header's sum, as the kernel's
 *   CHECKSUM_PARTIAL wants. In copy mode the kernel hands the device an skb marked so; a
 *   device without checksum offload gets it computed by the kernel before its driver sees it
 *   (validate_xmit_skb). Where the kernel has no TX metadata, the relay computes it (RELAY).
 * RELAY: the worker, over the whole datagram, before the frame goes on the ring.
 * KERNEL: the kernel, in software, as it builds each skb (XDP_UMEM_TX_SW_CSUM): for checking
 *   frames on a veth, where an offloaded checksum is never filled in, and for a device whose
 *   offload cannot be trusted. Refused (EINVAL) by a kernel without TX metadata. */
enum relay_xsk_checksum { RELAY_XSK_CSUM_OFFLOAD, RELAY_XSK_CSUM_RELAY, RELAY_XSK_CSUM_KERNEL };

typedef struct relay_xsk relay_xsk;

/* Where one receiver's frames go, and from where: the header every frame to it starts with.
 * `header` holds Ethernet and IP and UDP with every field that does not depend on the packet
 * (lengths, checksums, the destination address and port are written per frame); `sum` is the
 * ones' complement sum of the pseudo-header's fixed part (the source address, the protocol),
 * `ip_sum` that of the IPv4 header without its length and destination. */
typedef struct relay_xsk_hop {
    uint8_t header[RELAY_XSK_HEADROOM_MAX];
    uint8_t header_len;                 /* 42 (IPv4) or 62 (IPv6) */
    uint8_t family;                     /* AF_INET or AF_INET6 */
    uint32_t sum;
    uint32_t ip_sum;
} relay_xsk_hop;

typedef struct relay_xsk_stats {
    uint64_t frames;                    /* put on the TX ring */
    uint64_t ring_full;                 /* copies that found no free frame or ring slot */
    uint64_t wakeups;                   /* sendto() calls that woke the kernel */
    uint64_t wakeup_errors;             /* of them, refused (the device down, its queue full) */
    uint64_t invalid;                   /* frames the kernel refused as malformed (XDP_STATISTICS) */
} relay_xsk_stats;

/* An AF_XDP socket on queue `queue` of interface `ifindex` in copy mode, with `frames` UMEM
 * frames (a power of two) and TX and completion rings as large, its frames' UDP checksums
 * computed as `checksum` asks (enum relay_xsk_checksum): NULL on failure, with errno set and
 * *stage naming the step that failed (for the worker's log). */
relay_xsk *relay_xsk_open(unsigned ifindex, unsigned queue, unsigned frames, int checksum,
                          const char **stage);
void relay_xsk_close(relay_xsk *x);
int relay_xsk_fd(const relay_xsk *x);
/* Who computes the UDP checksums: what was asked, or RELAY where OFFLOAD was asked of a
 * kernel without TX metadata. */
int relay_xsk_checksum(const relay_xsk *x);
/* The counters, `invalid` read from the kernel now. */
const relay_xsk_stats *relay_xsk_counters(relay_xsk *x);

/* Fill a hop from its MACs (6 bytes each) and the source address and port (network order):
 * `src` is 4 bytes for AF_INET, 16 for AF_INET6. The destination address is not in the hop:
 * each frame takes it from its own message (relay_xsk_send). */
void relay_xsk_hop_init(relay_xsk_hop *hop, int family, const uint8_t *dst_mac,
                        const uint8_t *src_mac, const uint8_t *src, uint16_t src_port);

/* Queue one datagram of `len` bytes to `to` (a sockaddr_in or sockaddr_in6 of the hop's
 * family) as a frame on the TX ring: 1, or 0 when no frame or ring slot is free even after
 * taking back the sent ones (the caller sends it another way). Nothing leaves before
 * relay_xsk_wake(). */
int relay_xsk_send(relay_xsk *x, const relay_xsk_hop *hop, const void *to,
                   const uint8_t *data, uint32_t len);

/* Wake the kernel to send what the TX ring holds; frames a busy device leaves on the ring go
 * at the next wake. */
void relay_xsk_wake(relay_xsk *x);

/* The ones' complement checksum RFC 768 and RFC 8200 section 8.1 give a UDP datagram, over
 * the header at `udp` (its checksum field zero) and the `len` bytes of it and its data, with
 * the pseudo-header's sum `pseudo` (addresses and protocol, in the same byte order as the
 * packet's words): exposed for tests. */
uint16_t relay_xsk_udp_checksum(uint32_t pseudo, const uint8_t *udp, uint32_t len);

#endif
