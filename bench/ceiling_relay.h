/* The C ceiling for the whole relay: recvmmsg -> SRTP unprotect -> for each receiver: copy,
 * protect with its key -> sendmmsg, on one UDP socket, without the GIL. `relay bench --compare`
 * runs it with crypto ("ceiling") and without ("io_ceiling") next to the real relay, both
 * sending as the relay does by default (a burst's copies to one receiver as one UDP GSO
 * message); on the send-only path (bench/sendonly.py) also a datagram per copy
 * ("ceiling_sendmmsg", ceiling_relay_set_gso off), one send() per copy on a socket of each
 * receiver's ("ceiling_connected", ceiling_relay_connect), and each copy an Ethernet frame on
 * an AF_XDP socket's ring ("ceiling_xdp", "io_ceiling_xdp": ceiling_relay_xdp_open and
 * ceiling_relay_set_hop, the relay's own AF_XDP path's ext/xsk.c).
 *
 * Deliberately minimal: no replay window, no ROC tracking (index = sequence number), no
 * address latching, no RTCP, no sequence rewriting, IPv4 only. Packets from SSRCs that were
 * not added as senders are dropped. What the real relay does on top of this is its overhead. */
#ifndef RELAY_BENCH_CEILING_RELAY_H
#define RELAY_BENCH_CEILING_RELAY_H

#include <signal.h>
#include <stddef.h>
#include <stdint.h>

#include "ceiling.h"

typedef struct ceiling_relay ceiling_relay;

/* Indexes into the counters array that ceiling_relay_run adds to. */
enum {
    CEILING_RELAY_PACKETS_IN,
    CEILING_RELAY_PACKETS_OUT,
    CEILING_RELAY_DROPPED,     /* malformed, truncated, RTCP, unknown SSRC, failed auth */
    CEILING_RELAY_SEND_ERRORS, /* packets sendmmsg refused (EAGAIN, ENOBUFS, ...) */
    CEILING_RELAY_XDP_FRAMES,  /* of the packets out, those put on the AF_XDP ring */
    CEILING_RELAY_XDP_FALLBACKS, /* copies for a receiver with a hop that found the ring full
                                  * and went in the sendmmsg batch instead */
    CEILING_RELAY_NCOUNTERS
};

/* The largest datagram accepted; longer ones arrive truncated and are dropped. */
#define CEILING_RELAY_MAX_PACKET 2048

/* fd: a bound UDP/IPv4 socket, blocking or not (the relay never blocks on it); not closed by
 * ceiling_relay_free. crypto = 0 skips unprotect and protect (the io ceiling). */
ceiling_relay *ceiling_relay_new(int fd, int crypto);
void ceiling_relay_free(ceiling_relay *r);

/* on = 0: every copy a message of its own; else (the default) a receiver's copies of a burst
 * (consecutive packets of one sender in a receive batch), equal in size but the last, go as
 * one message of several segments (UDP GSO), as the relay sends them (ext/batch.pxi). */
void ceiling_relay_set_gso(ceiling_relay *r, int on);

/* A receiver at ip:port (dotted IPv4, port in host order). protect is the context for its
 * downlink (NULL without crypto); the relay owns it from here on, even on failure.
 * tag_len is what protect adds. Returns the receiver's index, or -1 (bad address, no memory). */
int ceiling_relay_add_receiver(ceiling_relay *r, const char *ip, uint16_t port,
                               ceiling *protect, size_t tag_len);

/* Gives receiver `index` a UDP socket of its own, bound with SO_REUSEPORT to the relay
 * socket's address and port (which must have SO_REUSEPORT set before it was bound) and
 * connected to the receiver; each copy to it then leaves with send() on that socket instead
 * of in the sendmmsg batch (the form of the relay's own connected sockets, ext/connected.pxi).
 * The kernel delivers what that receiver sends to its connected socket, which the relay never
 * reads: connect only receivers that send nothing (a webinar's attendees). Closed by
 * ceiling_relay_free. Returns 0, or -1 with errno set (bad index; descriptors run out: raise
 * RLIMIT_NOFILE). */
int ceiling_relay_connect(ceiling_relay *r, size_t index);

/* Opens an AF_XDP socket on queue `queue` of interface `ifindex` (copy mode, ext/xsk.h) for
 * the copies of every receiver given a hop. Returns 0, or -1 with errno set and *stage naming
 * the step that failed. */
int ceiling_relay_xdp_open(ceiling_relay *r, unsigned ifindex, unsigned queue,
                           const char **stage);

/* Receiver `index`'s copies leave as frames from then on: dst_mac the next hop's, src_mac and
 * src (IPv4, network order) ours on the interface (relay/nexthop.py looks them up, as the
 * relay's worker does); the source port is the relay socket's. A copy that finds the ring
 * full goes in the sendmmsg batch instead (counted). Returns 0, or -1 with errno set (no
 * AF_XDP socket, bad index, no memory). */
int ceiling_relay_set_hop(ceiling_relay *r, size_t index, const uint8_t dst_mac[6],
                          const uint8_t src_mac[6], const uint8_t src[4]);

/* A sender's stream: packets with this SSRC are unprotected with `unprotect` (owned by the
 * relay from here on, even on failure; NULL without crypto, whose tag is tag_len bytes) and
 * sent to the n receivers listed by index. Returns 0, or -1 (duplicate SSRC, bad receiver
 * index, no memory). */
int ceiling_relay_add_sender(ceiling_relay *r, uint32_t ssrc, ceiling *unprotect,
                             size_t tag_len, const uint32_t *receivers, size_t n);

/* Relays until *stop is non-zero or duration_s seconds have passed (duration_s <= 0: no
 * limit), noticing either within 100 ms. Adds to counters[CEILING_RELAY_NCOUNTERS].
 * Returns 0, or -1 with errno set when the socket fails. */
int ceiling_relay_run(ceiling_relay *r, volatile sig_atomic_t *stop, double duration_s,
                      uint64_t *counters);

/* For a caller that runs the loop on its main thread: until ceiling_relay_release_signals,
 * SIGINT and SIGTERM set *stop instead of their previous action (saved[2] keeps those).
 * Installed without SA_RESTART, so a waiting poll returns at once. Returns 0 or -1. */
int ceiling_relay_catch_signals(volatile sig_atomic_t *stop, struct sigaction saved[2]);
void ceiling_relay_release_signals(const struct sigaction saved[2]);

#endif
