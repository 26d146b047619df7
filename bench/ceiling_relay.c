/* See ceiling_relay.h. One thread, one socket, everything preallocated: the loop does no
 * allocation, creates no objects and makes two system calls per busy batch (recvmmsg and
 * sendmmsg), plus one sendmmsg per 1024 copies out; a receiver's copies of a burst go as one
 * message of several segments (UDP GSO) unless ceiling_relay_set_gso turned it off.
 * Connected (ceiling_relay_connect): one send() per copy instead, on the receiver's own
 * connected socket. With a hop (ceiling_relay_set_hop): each copy a frame on the AF_XDP
 * socket's ring, the kernel woken every XDP_WAKE_EVERY frames and at the end of the receive
 * batch, as the relay's worker does (ext/xdp.pxi, ext/batch.pxi). */
#include "ceiling_relay.h"
#include "xsk.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/udp.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define RECV_BATCH 64
#define SEND_BATCH 1024
#define RECV_STRIDE CEILING_RELAY_MAX_PACKET
/* Room for the plaintext of the longest accepted packet plus any receiver's tag (<= 16),
 * rounded to a cache line. */
#define SEND_STRIDE (CEILING_RELAY_MAX_PACKET + 64)
#define POLL_MS 100
/* A receiver's copies of a burst as one message of several segments (UDP GSO), as the relay
 * groups them (ext/batch.pxi, whose limits these are). */
#define GSO_SEGMENTS_MAX 64
#define GSO_SEGMENT_MAX 1452
#define GSO_BYTES_MAX 65507
#define GSO_CONTROL CMSG_SPACE(sizeof(uint16_t))
/* Frames put on the AF_XDP ring between two wakes of the kernel: the relay's flush (SEND_FLUSH,
 * ext/consts.pxi), so that the kernel copies each frame while it is still in cache, as it does
 * the relay's. */
#define XDP_WAKE_EVERY 256

struct receiver {
    struct sockaddr_in addr;
    ceiling *protect;
    int fd; /* its connected socket (ceiling_relay_connect), or -1: the sendmmsg batch */
    relay_xsk_hop *hop; /* its frames' header on the AF_XDP path, or NULL: a socket */
};

struct sender {
    uint32_t ssrc;
    size_t tag_len;
    ceiling *unprotect;
    uint32_t *receivers;
    size_t n;
};

struct ceiling_relay {
    int fd, crypto, gso;
    relay_xsk *xsk; /* the AF_XDP socket (ceiling_relay_xdp_open), or NULL */
    struct receiver *rx;
    size_t nrx, cap_rx;
    struct sender *tx;
    size_t ntx, cap_tx;
    /* Open addressing over SSRCs: slot holds sender index + 1, 0 when empty. */
    uint32_t *table;
    unsigned table_bits;
    uint8_t *recv_buf, *send_buf;
    struct iovec recv_iov[RECV_BATCH], send_iov[SEND_BATCH];
    struct mmsghdr recv_msg[RECV_BATCH], send_msg[SEND_BATCH];
    /* Per message: its segments' size, and room for its UDP_SEGMENT control message. */
    uint16_t segment[SEND_BATCH], most[SEND_BATCH]; /* most: segments it may hold */
    uint8_t control[SEND_BATCH][GSO_CONTROL];
    /* This batch's packets that passed, unprotected: where, how long, whose. */
    uint8_t *plain[RECV_BATCH];
    size_t plain_len[RECV_BATCH];
    const struct sender *from[RECV_BATCH];
};

static uint32_t load_be32(const uint8_t *p) {
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

static size_t slot_of(const ceiling_relay *r, uint32_t ssrc) {
    /* Multiplicative (Fibonacci) hashing: the top bits of ssrc * 2^32/phi. */
    return (size_t)((ssrc * 2654435769u) >> (32 - r->table_bits));
}

static const struct sender *find_sender(const ceiling_relay *r, uint32_t ssrc) {
    size_t mask = ((size_t)1 << r->table_bits) - 1;
    for (size_t i = slot_of(r, ssrc);; i = (i + 1) & mask) {
        uint32_t v = r->table[i];
        if (v == 0) return NULL;
        if (r->tx[v - 1].ssrc == ssrc) return &r->tx[v - 1];
    }
}

/* Fills the table from r->tx[0..ntx) at 2^bits slots. */
static int rehash(ceiling_relay *r, unsigned bits) {
    uint32_t *table = calloc((size_t)1 << bits, sizeof *table);
    if (!table) return -1;
    free(r->table);
    r->table = table;
    r->table_bits = bits;
    size_t mask = ((size_t)1 << bits) - 1;
    for (size_t k = 0; k < r->ntx; k++) {
        size_t i = slot_of(r, r->tx[k].ssrc);
        while (table[i]) i = (i + 1) & mask;
        table[i] = (uint32_t)(k + 1);
    }
    return 0;
}

ceiling_relay *ceiling_relay_new(int fd, int crypto) {
    ceiling_relay *r = calloc(1, sizeof *r);
    if (!r) return NULL;
    r->fd = fd;
    r->crypto = crypto;
    r->gso = 1;
    r->recv_buf = aligned_alloc(64, (size_t)RECV_BATCH * RECV_STRIDE);
    r->send_buf = aligned_alloc(64, (size_t)SEND_BATCH * SEND_STRIDE);
    if (!r->recv_buf || !r->send_buf || rehash(r, 4) != 0) {
        ceiling_relay_free(r);
        return NULL;
    }
    /* Everything but lengths and destinations is fixed: set it once. The source address of
     * what arrives is not needed (no latching), so recvmmsg gets no msg_name. */
    for (size_t i = 0; i < RECV_BATCH; i++) {
        r->recv_iov[i].iov_base = r->recv_buf + i * RECV_STRIDE;
        r->recv_iov[i].iov_len = RECV_STRIDE;
        r->recv_msg[i].msg_hdr.msg_iov = &r->recv_iov[i];
        r->recv_msg[i].msg_hdr.msg_iovlen = 1;
    }
    for (size_t i = 0; i < SEND_BATCH; i++) {
        r->send_iov[i].iov_base = r->send_buf + i * SEND_STRIDE;
        r->send_msg[i].msg_hdr.msg_namelen = sizeof(struct sockaddr_in);
    }
    return r;
}

void ceiling_relay_set_gso(ceiling_relay *r, int on) { r->gso = on; }

void ceiling_relay_free(ceiling_relay *r) {
    if (!r) return;
    for (size_t i = 0; i < r->nrx; i++) {
        ceiling_free(r->rx[i].protect);
        if (r->rx[i].fd >= 0) close(r->rx[i].fd);
        free(r->rx[i].hop);
    }
    relay_xsk_close(r->xsk);
    for (size_t i = 0; i < r->ntx; i++) {
        ceiling_free(r->tx[i].unprotect);
        free(r->tx[i].receivers);
    }
    free(r->rx);
    free(r->tx);
    free(r->table);
    free(r->recv_buf);
    free(r->send_buf);
    free(r);
}

int ceiling_relay_add_receiver(ceiling_relay *r, const char *ip, uint16_t port,
                               ceiling *protect, size_t tag_len) {
    struct sockaddr_in addr = {.sin_family = AF_INET, .sin_port = htons(port)};
    if (inet_pton(AF_INET, ip, &addr.sin_addr) != 1 || tag_len > SEND_STRIDE - RECV_STRIDE ||
        (r->crypto && !protect) || r->nrx >= INT32_MAX) {
        ceiling_free(protect);
        return -1;
    }
    if (r->nrx == r->cap_rx) {
        size_t cap = r->cap_rx ? 2 * r->cap_rx : 16;
        struct receiver *rx = realloc(r->rx, cap * sizeof *rx);
        if (!rx) {
            ceiling_free(protect);
            return -1;
        }
        r->rx = rx;
        r->cap_rx = cap;
    }
    r->rx[r->nrx] = (struct receiver){.addr = addr, .protect = protect, .fd = -1, .hop = NULL};
    return (int)r->nrx++;
}

int ceiling_relay_add_sender(ceiling_relay *r, uint32_t ssrc, ceiling *unprotect,
                             size_t tag_len, const uint32_t *receivers, size_t n) {
    uint32_t *copy = malloc((n ? n : 1) * sizeof *copy);
    int ok = copy && (!r->crypto || unprotect) && tag_len <= RECV_STRIDE &&
             r->ntx < UINT32_MAX - 1 && !find_sender(r, ssrc);
    for (size_t i = 0; ok && i < n; i++) ok = receivers[i] < r->nrx;
    if (ok && r->ntx == r->cap_tx) {
        size_t cap = r->cap_tx ? 2 * r->cap_tx : 16;
        struct sender *tx = realloc(r->tx, cap * sizeof *tx);
        if (tx) {
            r->tx = tx;
            r->cap_tx = cap;
        }
        ok = tx != NULL;
    }
    /* Keep the table at most half full, so probes stay short. */
    if (ok && 2 * (r->ntx + 1) > ((size_t)1 << r->table_bits))
        ok = rehash(r, r->table_bits + 1) == 0;
    if (!ok) {
        free(copy);
        ceiling_free(unprotect);
        return -1;
    }
    if (n) memcpy(copy, receivers, n * sizeof *copy);
    r->tx[r->ntx++] = (struct sender){
        .ssrc = ssrc, .tag_len = tag_len, .unprotect = unprotect, .receivers = copy, .n = n};
    size_t mask = ((size_t)1 << r->table_bits) - 1, i = slot_of(r, ssrc);
    while (r->table[i]) i = (i + 1) & mask;
    r->table[i] = (uint32_t)r->ntx;
    return 0;
}

int ceiling_relay_connect(ceiling_relay *r, size_t index) {
    if (index >= r->nrx) {
        errno = EINVAL;
        return -1;
    }
    struct receiver *rx = &r->rx[index];
    if (rx->fd >= 0) return 0;
    struct sockaddr_in local;
    socklen_t local_len = sizeof local;
    if (getsockname(r->fd, (struct sockaddr *)&local, &local_len) != 0) return -1;
    if (local.sin_family != AF_INET) {
        errno = EAFNOSUPPORT;
        return -1;
    }
    const int one = 1;
    int fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (fd < 0) return -1;
    if (setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof one) != 0 ||
        bind(fd, (struct sockaddr *)&local, sizeof local) != 0 ||
        connect(fd, (struct sockaddr *)&rx->addr, sizeof rx->addr) != 0) {
        int saved = errno;
        close(fd);
        errno = saved;
        return -1;
    }
    rx->fd = fd;
    return 0;
}

int ceiling_relay_xdp_open(ceiling_relay *r, unsigned ifindex, unsigned queue,
                           const char **stage) {
    if (r->xsk) return 0;
    /* the relay's worker's size, and its checksums where the bench sends (ifb, veth) */
    r->xsk = relay_xsk_open(ifindex, queue, 4096, RELAY_XSK_CSUM_OFFLOAD, stage);
    return r->xsk ? 0 : -1;
}

int ceiling_relay_set_hop(ceiling_relay *r, size_t index, const uint8_t dst_mac[6],
                          const uint8_t src_mac[6], const uint8_t src[4]) {
    struct sockaddr_in local;
    socklen_t local_len = sizeof local;
    if (!r->xsk || index >= r->nrx) {
        errno = EINVAL;
        return -1;
    }
    if (getsockname(r->fd, (struct sockaddr *)&local, &local_len) != 0) return -1;
    relay_xsk_hop *hop = r->rx[index].hop ? r->rx[index].hop : malloc(sizeof *hop);
    if (!hop) return -1;
    relay_xsk_hop_init(hop, AF_INET, dst_mac, src_mac, src, local.sin_port);
    r->rx[index].hop = hop;
    return 0;
}

/* Length of a well-formed RTP header within len bytes (fixed part, CSRCs, extension), or 0. */
static size_t rtp_header_len(const uint8_t *p, size_t len) {
    size_t h = 12 + 4 * (size_t)(p[0] & 0x0f);
    if (p[0] & 0x10) {
        if (h + 4 > len) return 0;
        h += 4 + 4 * ((size_t)p[h + 2] << 8 | p[h + 3]);
    }
    return h <= len ? h : 0;
}

/* Gives message m, if it has several segments, its UDP_SEGMENT control message. */
static void segment(ceiling_relay *r, size_t m) {
    struct msghdr *h = &r->send_msg[m].msg_hdr;
    h->msg_control = NULL;
    h->msg_controllen = 0;
    if (h->msg_iovlen < 2) return;
    h->msg_control = r->control[m];
    h->msg_controllen = GSO_CONTROL;
    struct cmsghdr *c = CMSG_FIRSTHDR(h);
    c->cmsg_level = SOL_UDP;
    c->cmsg_type = UDP_SEGMENT;
    c->cmsg_len = CMSG_LEN(sizeof(uint16_t));
    memcpy(CMSG_DATA(c), &r->segment[m], sizeof(uint16_t));
}

/* Sends send_msg[0..n), each copy of each counted. A refused message is counted and skipped;
 * a full socket buffer or device queue (EAGAIN, ENOBUFS) drops the rest of the batch, as
 * retrying would cost a system call each and most likely fail the same way. */
static void flush(ceiling_relay *r, size_t n, uint64_t *out, uint64_t *errors) {
    size_t off = 0;
    for (size_t m = 0; m < n; m++) segment(r, m);
    while (off < n) {
        int k = sendmmsg(r->fd, r->send_msg + off, (unsigned)(n - off), MSG_DONTWAIT);
        if (k > 0) {
            for (size_t m = off; m < off + (size_t)k; m++) *out += r->send_msg[m].msg_hdr.msg_iovlen;
            off += (size_t)k;
        } else if (k < 0 && errno == EINTR) {
            continue;
        } else if (k < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == ENOBUFS)) {
            for (size_t m = off; m < n; m++) *errors += r->send_msg[m].msg_hdr.msg_iovlen;
            return;
        } else {
            *errors += r->send_msg[off].msg_hdr.msg_iovlen;
            off += 1;
        }
    }
}

static double now_s(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

int ceiling_relay_run(ceiling_relay *r, volatile sig_atomic_t *stop, double duration_s,
                      uint64_t *counters) {
    uint64_t in = 0, out = 0, dropped = 0, errors = 0, frames = 0, fallbacks = 0;
    const double deadline = duration_s > 0 ? now_s() + duration_s : 0;
    const int crypto = r->crypto;
    int rc = 0;
    while (!*stop) {
        int wait_ms = POLL_MS;
        if (deadline) {
            double left = deadline - now_s();
            if (left <= 0) break;
            if (left * 1000 < POLL_MS) wait_ms = (int)(left * 1000) + 1;
        }
        /* Non-blocking first: under load the data is already there and a poll would be one
         * more system call per batch; poll only when the socket is empty. */
        int got = recvmmsg(r->fd, r->recv_msg, RECV_BATCH, MSG_DONTWAIT, NULL);
        if (got < 0) {
            if (errno == EAGAIN || errno == EWOULDBLOCK) {
                struct pollfd pfd = {.fd = r->fd, .events = POLLIN};
                if (poll(&pfd, 1, wait_ms) < 0 && errno != EINTR) {
                    rc = -1;
                    break;
                }
                continue;
            }
            if (errno == EINTR || errno == ECONNREFUSED) continue;
            rc = -1;
            break;
        }
        in += (uint64_t)got;
        /* First every packet of the batch checked and unprotected, then each run of one
         * sender's packets (a burst) fanned out receiver by receiver, as the relay does
         * (ext/forward.pxi), so that a receiver's copies of it can leave as one message. */
        int valid = 0;
        for (int i = 0; i < got; i++) {
            uint8_t *p = r->recv_buf + (size_t)i * RECV_STRIDE;
            size_t len = r->recv_msg[i].msg_len;
            /* RTP version 2 only; RTCP (second octet 192..223 under rtcp-mux, RFC 5761
             * section 4) is not relayed by the ceiling. */
            if ((r->recv_msg[i].msg_hdr.msg_flags & MSG_TRUNC) || len < 12 || (p[0] >> 6) != 2 ||
                (p[1] >= 192 && p[1] <= 223)) {
                dropped++;
                continue;
            }
            const struct sender *s = find_sender(r, load_be32(p + 8));
            size_t h = rtp_header_len(p, len);
            if (!s || !h || h + s->tag_len > len) {
                dropped++;
                continue;
            }
            if (crypto) {
                uint32_t plain = (uint32_t)len;
                if (ceiling_unprotect(s->unprotect, p, RECV_STRIDE, &plain, 1) != 1) {
                    dropped++;
                    continue;
                }
                len = plain;
            }
            r->plain[valid] = p;
            r->plain_len[valid] = len;
            r->from[valid] = s;
            valid++;
        }
        size_t queued = 0, messages = 0, framed = 0;
        for (int first = 0, end; first < valid; first = end) {
            const struct sender *s = r->from[first];
            for (end = first + 1; end < valid && r->from[end] == s; end++) {
            }
            for (size_t k = 0; k < s->n; k++) {
                const struct receiver *rx = &r->rx[s->receivers[k]];
                if (queued + (size_t)(end - first) > SEND_BATCH) {
                    flush(r, messages, &out, &errors);
                    queued = messages = 0;
                }
                int open = 0; /* a message of this receiver's that the next copy may join */
                for (int i = first; i < end; i++) {
                    uint8_t *q = r->send_buf + queued * SEND_STRIDE;
                    uint32_t q_len = (uint32_t)r->plain_len[i];
                    memcpy(q, r->plain[i], q_len);
                    if (crypto) ceiling_protect(rx->protect, q, SEND_STRIDE, &q_len, 1);
                    if (rx->hop) {
                        /* A frame on the ring (its bytes copied into the UMEM), or, the ring
                         * full, the sendmmsg batch as the relay falls back (ext/batch.pxi). */
                        if (relay_xsk_send(r->xsk, rx->hop, &rx->addr, q, q_len)) {
                            if (++framed % XDP_WAKE_EVERY == 0) relay_xsk_wake(r->xsk);
                            continue;
                        }
                        fallbacks++;
                    }
                    if (rx->fd >= 0) {
                        /* Its own connected socket: the kernel keeps the route and addresses,
                         * so this send() skips the lookup a sendmmsg message pays (the
                         * relay's --connected-sockets, ext/connected.pxi). */
                        ssize_t sent;
                        do sent = send(rx->fd, q, q_len, MSG_DONTWAIT);
                        while (sent < 0 && errno == EINTR);
                        if (sent < 0)
                            errors++;
                        else
                            out++;
                        continue;
                    }
                    r->send_iov[queued].iov_len = q_len;
                    struct msghdr *last = messages ? &r->send_msg[messages - 1].msg_hdr : NULL;
                    if (open && q_len <= r->segment[messages - 1] &&
                        last->msg_iovlen < r->most[messages - 1]) {
                        last->msg_iovlen++;
                        open = q_len == r->segment[messages - 1]; /* shorter: the last one */
                    } else {
                        struct msghdr *h = &r->send_msg[messages].msg_hdr;
                        h->msg_name = (void *)&rx->addr;
                        h->msg_iov = &r->send_iov[queued];
                        h->msg_iovlen = 1;
                        r->segment[messages] = (uint16_t)q_len;
                        r->most[messages] = (uint16_t)(GSO_BYTES_MAX / (q_len ? q_len : 1));
                        if (r->most[messages] > GSO_SEGMENTS_MAX)
                            r->most[messages] = GSO_SEGMENTS_MAX;
                        messages++;
                        open = r->gso && q_len <= GSO_SEGMENT_MAX;
                    }
                    queued++;
                }
            }
        }
        if (messages) flush(r, messages, &out, &errors);
        if (framed) {
            if (framed % XDP_WAKE_EVERY) relay_xsk_wake(r->xsk); /* what is left of the batch */
            out += framed;
            frames += framed;
        }
    }
    counters[CEILING_RELAY_PACKETS_IN] += in;
    counters[CEILING_RELAY_PACKETS_OUT] += out;
    counters[CEILING_RELAY_DROPPED] += dropped;
    counters[CEILING_RELAY_SEND_ERRORS] += errors;
    counters[CEILING_RELAY_XDP_FRAMES] += frames;
    counters[CEILING_RELAY_XDP_FALLBACKS] += fallbacks;
    return rc;
}

static volatile sig_atomic_t *stop_target;

static void on_stop_signal(int signum) {
    (void)signum;
    if (stop_target) *stop_target = 1;
}

int ceiling_relay_catch_signals(volatile sig_atomic_t *stop, struct sigaction saved[2]) {
    struct sigaction act;
    memset(&act, 0, sizeof act);
    act.sa_handler = on_stop_signal;
    sigemptyset(&act.sa_mask);
    stop_target = stop;
    if (sigaction(SIGINT, &act, &saved[0]) != 0) return -1;
    if (sigaction(SIGTERM, &act, &saved[1]) != 0) {
        sigaction(SIGINT, &saved[0], NULL);
        return -1;
    }
    return 0;
}

void ceiling_relay_release_signals(const struct sigaction saved[2]) {
    sigaction(SIGINT, &saved[0], NULL);
    sigaction(SIGTERM, &saved[1], NULL);
}
