/* An AF_XDP socket that only transmits (xsk.h says what and why). In the order a copy takes:
 * opening the socket and its rings, the hop a receiver's frames start with, a copy written as
 * a frame and put on the TX ring, the kernel woken, the sent frames taken back. */
#include "xsk.h"

#include <errno.h>
#include <linux/if_ether.h>
#include <linux/if_xdp.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <unistd.h>

#ifndef AF_XDP
#define AF_XDP 44
#endif
#ifndef SOL_XDP
#define SOL_XDP 283
#endif

#define FILL_RING 64u       /* the kernel wants one to bind; a TX-only socket never fills it */
#ifndef XDP_MAX_TX_SKB_BUDGET
#define XDP_MAX_TX_SKB_BUDGET 9     /* Linux 6.17: frames one wake may send in copy mode */
#endif
#define TX_BUDGET 256u
#define ETH_LEN 14u
#define IP4_LEN 20u
#define IP6_LEN 40u
#define UDP_LEN 8u
#define UDP_CHECK 6u        /* the checksum's offset in the UDP header */

/* AF_XDP TX metadata, as the kernel's UAPI (linux/if_xdp.h, Linux 6.8; the flag that turns it
 * on, Linux 6.11) has it: spelled out here, since the headers this builds against may be
 * older than the kernel it runs on. The metadata lies just before the frame in its UMEM
 * frame, and the descriptor's XDP_TX_METADATA option says it is there. */
#ifndef XDP_UMEM_TX_SW_CSUM
#define XDP_UMEM_TX_SW_CSUM (1u << 1)
#endif
#ifndef XDP_UMEM_TX_METADATA_LEN
#define XDP_UMEM_TX_METADATA_LEN (1u << 2)
#endif
#ifndef XDP_TX_METADATA
#define XDP_TX_METADATA (1u << 1)
#endif
#ifndef XDP_TXMD_FLAGS_CHECKSUM
#define XDP_TXMD_FLAGS_CHECKSUM (1u << 1)
#endif

struct umem_registration {  /* struct xdp_umem_reg, with tx_metadata_len */
    uint64_t addr;
    uint64_t len;
    uint32_t chunk_size;
    uint32_t headroom;
    uint32_t flags;
    uint32_t tx_metadata_len;
};

struct tx_metadata {        /* struct xsk_tx_metadata: the checksum request is all we use */
    uint64_t flags;
    union {
        struct {
            uint16_t csum_start;    /* from the frame's start: the UDP header */
            uint16_t csum_offset;   /* from there: the checksum field */
            uint64_t launch_time;
        } request;
        struct {
            uint64_t tx_timestamp;
        } completion;
    } u;
};

/* A ring the kernel shares with us: its two indexes (free-running, masked into the array). */
typedef struct ring {
    uint32_t *producer;
    uint32_t *consumer;
    void *entries;          /* struct xdp_desc (TX) or uint64_t frame addresses (completion) */
    void *map;
    size_t map_len;
} ring;

struct relay_xsk {
    int fd;
    uint32_t size;          /* frames, and entries of each ring: a power of two */
    uint8_t *umem;
    size_t umem_len;
    ring tx, done;          /* TX ring and completion ring */
    uint32_t tx_next;       /* our producer index, published to the kernel at wake */
    uint32_t done_next;     /* our consumer index of the completion ring */
    uint64_t *spare;        /* frames not on the TX ring nor in the kernel's hands */
    uint32_t nspare;
    uint32_t meta_len;      /* TX metadata before each frame: 0, or sizeof(struct tx_metadata) */
    int checksum;           /* enum relay_xsk_checksum: who computes the UDP checksums */
    relay_xsk_stats stats;
};

static inline uint32_t load_acquire(const uint32_t *p) { return __atomic_load_n(p, __ATOMIC_ACQUIRE); }
static inline void store_release(uint32_t *p, uint32_t v) { __atomic_store_n(p, v, __ATOMIC_RELEASE); }

static int map_ring(int fd, ring *r, const struct xdp_ring_offset *off, size_t entry,
                    uint32_t n, off_t pgoff)
{
    r->map_len = off->desc + n * entry;
    r->map = mmap(NULL, r->map_len, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_POPULATE, fd, pgoff);
    if (r->map == MAP_FAILED) {
        r->map = NULL;
        return -1;
    }
    r->producer = (uint32_t *)((uint8_t *)r->map + off->producer);
    r->consumer = (uint32_t *)((uint8_t *)r->map + off->consumer);
    r->entries = (uint8_t *)r->map + off->desc;
    return 0;
}

/* Register the UMEM, with room for TX metadata before each frame where the checksums are
 * not the relay's to compute. A kernel without TX metadata refuses the flag (EINVAL): then,
 * where OFFLOAD was asked, the relay computes them after all. */
static int register_umem(relay_xsk *x, int checksum)
{
    struct umem_registration reg;

    memset(&reg, 0, sizeof(reg));
    reg.addr = (uintptr_t)x->umem;
    reg.len = x->umem_len;
    reg.chunk_size = RELAY_XSK_FRAME;
    if (checksum != RELAY_XSK_CSUM_RELAY) {
        reg.flags = XDP_UMEM_TX_METADATA_LEN;
        if (checksum == RELAY_XSK_CSUM_KERNEL)
            reg.flags |= XDP_UMEM_TX_SW_CSUM;
        reg.tx_metadata_len = sizeof(struct tx_metadata);
        if (setsockopt(x->fd, SOL_XDP, XDP_UMEM_REG, &reg, sizeof(reg)) == 0) {
            x->meta_len = reg.tx_metadata_len;
            x->checksum = checksum;
            return 0;
        }
        if (errno != EINVAL || checksum == RELAY_XSK_CSUM_KERNEL)
            return -1;
        /* zeroed, not just unflagged: Linux 6.8-6.10 read tx_metadata_len without the flag */
        reg.flags = 0;
        reg.tx_metadata_len = 0;
    }
    x->meta_len = 0;
    x->checksum = RELAY_XSK_CSUM_RELAY;
    return setsockopt(x->fd, SOL_XDP, XDP_UMEM_REG, &reg, sizeof(reg));
}

relay_xsk *relay_xsk_open(unsigned ifindex, unsigned queue, unsigned frames, int checksum,
                          const char **stage)
{
    relay_xsk *x = calloc(1, sizeof(*x));
    struct xdp_mmap_offsets off;
    struct sockaddr_xdp at;
    socklen_t optlen = sizeof(off);
    uint32_t fill = FILL_RING, budget, i;
    int saved;

    *stage = "memory";
    if (x == NULL)
        return NULL;
    x->fd = -1;
    if (frames == 0 || (frames & (frames - 1)) != 0) {
        *stage = "frames (a power of two)";
        errno = EINVAL;
        goto fail;
    }
    if (checksum != RELAY_XSK_CSUM_OFFLOAD && checksum != RELAY_XSK_CSUM_RELAY
            && checksum != RELAY_XSK_CSUM_KERNEL) {
        *stage = "checksum (offload, relay or kernel)";
        errno = EINVAL;
        goto fail;
    }
    x->size = frames;
    x->spare = malloc(frames * sizeof(uint64_t));
    if (x->spare == NULL)
        goto fail;
    *stage = "socket(AF_XDP)";
    x->fd = socket(AF_XDP, SOCK_RAW | SOCK_CLOEXEC, 0);
    if (x->fd < 0)
        goto fail;
    *stage = "UMEM";
    x->umem_len = (size_t)frames * RELAY_XSK_FRAME;
    x->umem = mmap(NULL, x->umem_len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (x->umem == MAP_FAILED) {
        x->umem = NULL;
        goto fail;
    }
    *stage = checksum == RELAY_XSK_CSUM_KERNEL
        ? "XDP_UMEM_REG (TX metadata: Linux 6.11 or later)" : "XDP_UMEM_REG";
    if (register_umem(x, checksum) != 0)
        goto fail;
    *stage = "rings";
    if (setsockopt(x->fd, SOL_XDP, XDP_UMEM_FILL_RING, &fill, sizeof(fill)) != 0
        || setsockopt(x->fd, SOL_XDP, XDP_UMEM_COMPLETION_RING, &frames, sizeof(frames)) != 0
        || setsockopt(x->fd, SOL_XDP, XDP_TX_RING, &frames, sizeof(frames)) != 0
        || getsockopt(x->fd, SOL_XDP, XDP_MMAP_OFFSETS, &off, &optlen) != 0
        || map_ring(x->fd, &x->tx, &off.tx, sizeof(struct xdp_desc), frames, XDP_PGOFF_TX_RING) != 0
        || map_ring(x->fd, &x->done, &off.cr, sizeof(uint64_t), frames,
                    XDP_UMEM_PGOFF_COMPLETION_RING) != 0)
        goto fail;
    memset(&at, 0, sizeof(at));
    at.sxdp_family = AF_XDP;
    at.sxdp_flags = XDP_COPY;
    at.sxdp_ifindex = ifindex;
    at.sxdp_queue_id = queue;
    *stage = "bind";
    if (bind(x->fd, (struct sockaddr *)&at, sizeof(at)) != 0)
        goto fail;
    /* In copy mode a wake sends at most 32 frames unless told more (Linux 6.17 and later; an
     * older kernel refuses the option, and each wake sends 32). */
    budget = frames < TX_BUDGET ? frames : TX_BUDGET;
    (void)setsockopt(x->fd, SOL_XDP, XDP_MAX_TX_SKB_BUDGET, &budget, sizeof(budget));
    for (i = 0; i < frames; i++)
        x->spare[i] = (uint64_t)i * RELAY_XSK_FRAME;
    x->nspare = frames;
    x->tx_next = load_acquire(x->tx.producer);
    x->done_next = load_acquire(x->done.consumer);
    *stage = NULL;
    return x;
fail:
    saved = errno;
    relay_xsk_close(x);
    errno = saved;
    return NULL;
}

void relay_xsk_close(relay_xsk *x)
{
    if (x == NULL)
        return;
    if (x->tx.map)
        munmap(x->tx.map, x->tx.map_len);
    if (x->done.map)
        munmap(x->done.map, x->done.map_len);
    if (x->fd >= 0)
        close(x->fd);   /* before the UMEM goes: the kernel lets go of it with the socket */
    if (x->umem)
        munmap(x->umem, x->umem_len);
    free(x->spare);
    free(x);
}

int relay_xsk_fd(const relay_xsk *x) { return x->fd; }

int relay_xsk_checksum(const relay_xsk *x) { return x->checksum; }

const relay_xsk_stats *relay_xsk_counters(relay_xsk *x)
{
    struct xdp_statistics st;
    socklen_t len = sizeof(st);
    if (getsockopt(x->fd, SOL_XDP, XDP_STATISTICS, &st, &len) == 0)
        x->stats.invalid = st.tx_invalid_descs;
    return &x->stats;
}

/* -- the ones' complement sum (RFC 1071) ---------------------------------------------------
 * Summed over the words as they lie in memory (a 64-bit accumulator of 32-bit words, folded at
 * the end): the result, stored back the same way, is the checksum in network order whatever
 * the host's byte order (RFC 1071 section 2 (B)). A value computed on the host joins the sum
 * as it would lie in the packet: htons(). */

static uint64_t sum_words(const uint8_t *p, uint32_t len, uint64_t acc)
{
    uint32_t w32;
    uint16_t w16 = 0;
    while (len >= 4) {
        memcpy(&w32, p, 4);
        acc += w32;
        p += 4;
        len -= 4;
    }
    if (len >= 2) {
        memcpy(&w16, p, 2);
        acc += w16;
        p += 2;
        len -= 2;
    }
    if (len) {                  /* an odd last byte, padded with a zero byte after it */
        w16 = 0;
        memcpy(&w16, p, 1);
        acc += w16;
    }
    return acc;
}

static uint16_t fold(uint64_t acc)
{
    while (acc >> 16)
        acc = (acc & 0xffff) + (acc >> 16);
    return (uint16_t)acc;
}

uint16_t relay_xsk_udp_checksum(uint32_t pseudo, const uint8_t *udp, uint32_t len)
{
    uint16_t sum = (uint16_t)~fold(sum_words(udp, len, pseudo));
    return sum ? sum : 0xffff;  /* a computed 0 is sent as all ones: 0 means "none" (RFC 768) */
}

/* -- the hop ------------------------------------------------------------------------------- */

void relay_xsk_hop_init(relay_xsk_hop *hop, int family, const uint8_t *dst_mac,
                        const uint8_t *src_mac, const uint8_t *src, uint16_t src_port)
{
    uint8_t *ip = hop->header + ETH_LEN, *udp;
    uint16_t ethertype = htons(family == AF_INET ? ETH_P_IP : ETH_P_IPV6);
    uint16_t proto = htons(IPPROTO_UDP);

    memset(hop, 0, sizeof(*hop));
    hop->family = (uint8_t)family;
    memcpy(hop->header, dst_mac, 6);
    memcpy(hop->header + 6, src_mac, 6);
    memcpy(hop->header + 12, &ethertype, 2);
    if (family == AF_INET) {
        ip[0] = 0x45;               /* version 4, a header of 5 words */
        ip[6] = 0x40;               /* don't fragment; identification 0 (RFC 6864 section 4) */
        ip[8] = 64;                 /* TTL, as Linux's default */
        ip[9] = IPPROTO_UDP;
        memcpy(ip + 12, src, 4);
        hop->ip_sum = (uint32_t)sum_words(ip, IP4_LEN, 0);  /* length, checksum, dst: zero */
        udp = ip + IP4_LEN;
        hop->sum = (uint32_t)sum_words(src, 4, proto);
    } else {
        ip[0] = 0x60;               /* version 6; traffic class and flow label 0 */
        ip[6] = IPPROTO_UDP;
        ip[7] = 64;                 /* hop limit */
        memcpy(ip + 8, src, 16);
        udp = ip + IP6_LEN;
        hop->sum = (uint32_t)sum_words(src, 16, proto);
    }
    memcpy(udp, &src_port, 2);
    hop->header_len = (uint8_t)(udp + UDP_LEN - hop->header);
}

/* -- a copy as a frame --------------------------------------------------------------------- */

/* The frames the kernel has finished with, back among the spare ones. The completion ring
 * gives each descriptor's address, past the TX metadata: its UMEM frame's start is that
 * address rounded down. */
static void take_back(relay_xsk *x)
{
    uint32_t ready = load_acquire(x->done.producer), n = 0;
    const uint64_t *addrs = x->done.entries;
    while (x->done_next != ready) {
        x->spare[x->nspare++] = addrs[x->done_next & (x->size - 1)]
                                & ~(uint64_t)(RELAY_XSK_FRAME - 1);
        x->done_next++;
        n++;
    }
    if (n)
        store_release(x->done.consumer, x->done_next);
}

/* The destination address (4 or 16 bytes, network order) and port of `to` for a hop of
 * `family`; an IPv4-mapped IPv6 address (a dual-stack socket's name for an IPv4 peer) is
 * IPv4. NULL when `to` is of the other family. */
static const uint8_t *destination(int family, const void *to, uint16_t *port)
{
    const struct sockaddr_in *v4 = to;
    const struct sockaddr_in6 *v6 = to;
    if (v4->sin_family == AF_INET) {
        *port = v4->sin_port;
        return family == AF_INET ? (const uint8_t *)&v4->sin_addr : NULL;
    }
    if (v6->sin6_family != AF_INET6)
        return NULL;
    *port = v6->sin6_port;
    if (family == AF_INET6)
        return v6->sin6_addr.s6_addr;
    if (IN6_IS_ADDR_V4MAPPED(&v6->sin6_addr))
        return v6->sin6_addr.s6_addr + 12;
    return NULL;
}

int relay_xsk_send(relay_xsk *x, const relay_xsk_hop *hop, const void *to,
                   const uint8_t *data, uint32_t len)
{
    uint16_t port, udp_len = (uint16_t)(UDP_LEN + len), wire_len, csum;
    const uint8_t *dst = destination(hop->family, to, &port);
    uint32_t addr_len = hop->family == AF_INET ? 4 : 16, options = 0;
    uint8_t *chunk, *frame, *ip, *udp;
    struct xdp_desc *desc;
    uint64_t pseudo;

    if (dst == NULL || hop->header_len + len > RELAY_XSK_FRAME - x->meta_len)
        return 0;
    if (x->nspare == 0)
        take_back(x);
    if (x->nspare == 0 || x->tx_next - load_acquire(x->tx.consumer) >= x->size) {
        relay_xsk_wake(x);      /* a full ring: let the kernel take what it holds, once */
        if (x->nspare == 0 || x->tx_next - load_acquire(x->tx.consumer) >= x->size) {
            x->stats.ring_full++;
            return 0;
        }
    }
    chunk = x->umem + x->spare[--x->nspare];
    frame = chunk + x->meta_len;
    memcpy(frame, hop->header, hop->header_len);
    memcpy(frame + hop->header_len, data, len);
    ip = frame + ETH_LEN;
    wire_len = htons(udp_len);
    if (hop->family == AF_INET) {
        uint16_t total = htons((uint16_t)(IP4_LEN + udp_len)), ip_csum;
        memcpy(ip + 2, &total, 2);
        memcpy(ip + 16, dst, 4);
        ip_csum = (uint16_t)~fold(sum_words(dst, 4, (uint64_t)hop->ip_sum + total));
        memcpy(ip + 10, &ip_csum, 2);
        udp = ip + IP4_LEN;
    } else {
        memcpy(ip + 4, &wire_len, 2);
        memcpy(ip + 24, dst, 16);
        udp = ip + IP6_LEN;
    }
    memcpy(udp + 2, &port, 2);
    memcpy(udp + 4, &wire_len, 2);
    /* the pseudo-header: addresses, protocol, UDP length; the UDP header follows in the sum */
    pseudo = sum_words(dst, addr_len, (uint64_t)hop->sum + wire_len);
    if (x->meta_len) {
        /* Offloaded: the field holds the pseudo-header's sum, not complemented, and the
         * checksum is computed from the UDP header on, into the field, as for the kernel's
         * own CHECKSUM_PARTIAL datagrams. */
        struct tx_metadata *meta = (struct tx_metadata *)chunk;
        meta->flags = XDP_TXMD_FLAGS_CHECKSUM;
        meta->u.request.csum_start = (uint16_t)(udp - frame);
        meta->u.request.csum_offset = UDP_CHECK;
        options = XDP_TX_METADATA;
        csum = fold(pseudo);
    } else {
        csum = relay_xsk_udp_checksum((uint32_t)fold(pseudo), udp, udp_len);
    }
    memcpy(udp + UDP_CHECK, &csum, 2);

    desc = (struct xdp_desc *)x->tx.entries + (x->tx_next & (x->size - 1));
    desc->addr = (uint64_t)(frame - x->umem);
    desc->len = hop->header_len + len;
    desc->options = options;
    x->tx_next++;
    x->stats.frames++;
    return 1;
}

/* -- the kernel woken ---------------------------------------------------------------------- */

void relay_xsk_wake(relay_xsk *x)
{
    uint32_t before, after;
    int tries = (int)(x->size / 16) + 4;

    store_release(x->tx.producer, x->tx_next);
    /* In copy mode each sendto() sends up to its budget of frames and says EAGAIN while more
     * wait; this stops when the ring is empty or when a try sends nothing (the device's queue
     * full: what is left goes at the next wake). */
    while (tries-- > 0 && (before = load_acquire(x->tx.consumer)) != x->tx_next) {
        x->stats.wakeups++;
        if (sendto(x->fd, NULL, 0, MSG_DONTWAIT, NULL, 0) < 0 && errno != EAGAIN
                && errno != EINTR && errno != EBUSY && errno != ENOBUFS) {
            x->stats.wakeup_errors++;
            break;
        }
        after = load_acquire(x->tx.consumer);
        if (after == before) {
            x->stats.wakeup_errors++;
            break;
        }
    }
    take_back(x);
}
