# Python handles on the C ceilings for the benchmarks: Ceiling (ceiling.c), one call per batch,
# and CeilingRelay (ceiling_relay.c), the whole minimal relay loop without the GIL.

from cpython cimport array
from libc.errno cimport errno
from libc.signal cimport sig_atomic_t
from libc.stdint cimport uint8_t, uint16_t, uint32_t, uint64_t
from libc.string cimport memset, strerror
from posix.signal cimport sigaction_t

import array


cdef extern from "ceiling.h" nogil:
    ctypedef struct ceiling
    ceiling* ceiling_new(int aead, const uint8_t* key, size_t key_len, const uint8_t* salt,
                         const uint8_t* auth_key, size_t tag_len)
    void ceiling_free(ceiling* c)
    size_t ceiling_protect(ceiling* c, uint8_t* slab, size_t stride, uint32_t* lens, size_t n)
    size_t ceiling_unprotect(ceiling* c, uint8_t* slab, size_t stride, uint32_t* lens,
                             size_t n)


cdef class Ceiling:
    """The minimal OpenSSL loop for one suite, keyed with session keys."""

    cdef ceiling* c

    def __init__(self, bint aead, bytes key not None, bytes salt not None,
                 bytes auth_key not None, int tag_len):
        if len(salt) < (12 if aead else 14) or (not aead and len(auth_key) != 20):
            raise ValueError("salt must be 12 (GCM) or 14 bytes, auth_key 20 (AES-CM)")
        self.c = ceiling_new(aead, key, len(key), salt, auth_key, tag_len)
        if self.c == NULL:
            raise MemoryError()

    def __dealloc__(self):
        ceiling_free(self.c)

    def protect_batch(self, uint8_t[:, ::1] slab not None, uint32_t[::1] lengths not None):
        cdef size_t done, n = lengths.shape[0]
        with nogil:
            done = ceiling_protect(self.c, &slab[0, 0], slab.shape[1], &lengths[0], n)
        return done

    def unprotect_batch(self, uint8_t[:, ::1] slab not None, uint32_t[::1] lengths not None):
        cdef size_t done, n = lengths.shape[0]
        with nogil:
            done = ceiling_unprotect(self.c, &slab[0, 0], slab.shape[1], &lengths[0], n)
        return done


cdef extern from "ceiling_relay.h" nogil:
    ctypedef struct ceiling_relay
    enum:
        CEILING_RELAY_PACKETS_IN
        CEILING_RELAY_PACKETS_OUT
        CEILING_RELAY_DROPPED
        CEILING_RELAY_SEND_ERRORS
        CEILING_RELAY_XDP_FRAMES
        CEILING_RELAY_XDP_FALLBACKS
        CEILING_RELAY_NCOUNTERS
    ceiling_relay* ceiling_relay_new(int fd, int crypto)
    void ceiling_relay_set_gso(ceiling_relay* r, int on)
    void ceiling_relay_free(ceiling_relay* r)
    int ceiling_relay_add_receiver(ceiling_relay* r, const char* ip, uint16_t port,
                                   ceiling* protect, size_t tag_len)
    int ceiling_relay_add_sender(ceiling_relay* r, uint32_t ssrc, ceiling* unprotect,
                                 size_t tag_len, const uint32_t* receivers, size_t n)
    int ceiling_relay_connect(ceiling_relay* r, size_t index)
    int ceiling_relay_xdp_open(ceiling_relay* r, unsigned ifindex, unsigned queue,
                               const char** stage)
    int ceiling_relay_set_hop(ceiling_relay* r, size_t index, const uint8_t* dst_mac,
                              const uint8_t* src_mac, const uint8_t* src)
    # The header's stop is volatile; a plain pointer converts to it implicitly.
    int ceiling_relay_run(ceiling_relay* r, sig_atomic_t* stop, double duration_s,
                          uint64_t* counters)
    int ceiling_relay_catch_signals(sig_atomic_t* stop, sigaction_t* saved)
    void ceiling_relay_release_signals(const sigaction_t* saved)


cdef ceiling* _context(keys) except NULL:
    """A new ceiling context from (aead, key, salt, auth_key, tag_len) session keys."""
    aead, key, salt, auth_key, tag_len = keys
    cdef bytes k = bytes(key), s = bytes(salt), a = bytes(auth_key)
    if len(s) < (12 if aead else 14) or (not aead and len(a) != 20):
        raise ValueError("salt must be 12 (GCM) or 14 bytes, auth_key 20 (AES-CM)")
    if len(k) not in (16, 32):
        raise ValueError("key must be 16 or 32 bytes")
    cdef ceiling* c = ceiling_new(bool(aead), k, len(k), s, a, tag_len)
    if c == NULL:
        raise MemoryError()
    return c


cdef class CeilingRelay:
    """The minimal C relay (ceiling_relay.c) on a bound UDP/IPv4 socket it does not own.

    Keys are session keys as a tuple (aead, key, salt, auth_key, tag_len); with crypto off
    they are not needed. run() relays without the GIL until stop(), SIGINT/SIGTERM (when
    catch_signals) or the duration, and returns the counters; once stopped it stays stopped.
    """

    cdef ceiling_relay* r
    cdef sig_atomic_t stop_flag
    cdef readonly bint crypto

    def __init__(self, int fd, bint crypto=True, bint gso=True):
        if self.r != NULL:
            raise RuntimeError("already initialised")
        self.crypto = crypto
        self.r = ceiling_relay_new(fd, crypto)
        if self.r == NULL:
            raise MemoryError()
        ceiling_relay_set_gso(self.r, gso)

    def __dealloc__(self):
        ceiling_relay_free(self.r)

    def add_receiver(self, str ip not None, int port, keys=None):
        """Adds a receiver at ip:port (IPv4); returns its index for add_sender."""
        cdef ceiling* c = NULL
        cdef size_t tag_len = 0
        if not 0 < port < 65536:
            raise ValueError(f"port out of range: {port}")
        if self.crypto:
            if keys is None:
                raise ValueError("keys are needed with crypto on")
            c = _context(keys)
            tag_len = keys[4]
        index = ceiling_relay_add_receiver(self.r, ip.encode(), port, c, tag_len)
        if index < 0:
            raise ValueError(f"cannot add receiver {ip}:{port} (not IPv4, or no memory)")
        return index

    def add_sender(self, uint32_t ssrc, receivers, keys=None):
        """Relays packets of SSRC ssrc (unprotected with keys) to the receivers by index."""
        cdef uint32_t[::1] targets = array.array("I", receivers)
        cdef ceiling* c = NULL
        cdef size_t tag_len = 0
        cdef uint32_t dummy = 0
        if self.crypto:
            if keys is None:
                raise ValueError("keys are needed with crypto on")
            c = _context(keys)
            tag_len = keys[4]
        rc = ceiling_relay_add_sender(self.r, ssrc, c, tag_len,
                                      &targets[0] if targets.shape[0] else &dummy,
                                      targets.shape[0])
        if rc != 0:
            raise ValueError(f"cannot add sender {ssrc:#x} (duplicate SSRC or bad receiver)")

    def connect(self, receivers):
        """Gives each receiver listed (by index) a socket of its own, bound (SO_REUSEPORT)
        to the relay socket's address and port and connected to it: its copies then leave
        by send() on it, not in the sendmmsg batch. The relay socket must have had
        SO_REUSEPORT set before it was bound; what a connected receiver sends goes to its
        socket, which the relay never reads (list only receivers that do not send)."""
        cdef size_t index
        for index in receivers:
            if ceiling_relay_connect(self.r, index) != 0:
                raise OSError(errno, "cannot connect a receiver's socket: "
                              f"{strerror(errno).decode()}")

    def xdp_open(self, unsigned ifindex, unsigned queue=0):
        """An AF_XDP socket on queue `queue` of interface `ifindex` (copy mode, ext/xsk.h) for
        the copies of the receivers given a hop (set_hop). OSError if the kernel refuses."""
        cdef const char* stage = NULL
        if ceiling_relay_xdp_open(self.r, ifindex, queue, &stage) != 0:
            step = stage.decode() if stage != NULL else "open"
            raise OSError(errno, f"AF_XDP socket ({step}): {strerror(errno).decode()}")

    def set_hop(self, size_t index, bytes dst_mac not None, bytes src_mac not None,
                bytes src not None):
        """Receiver `index`'s copies leave as frames from now on: the next hop's MAC, ours
        and our IPv4 address on the interface (relay/nexthop.py's Hop)."""
        if len(dst_mac) != 6 or len(src_mac) != 6 or len(src) != 4:
            raise ValueError("MACs of 6 bytes and an IPv4 source of 4")
        if ceiling_relay_set_hop(self.r, index, dst_mac, src_mac, src) != 0:
            raise OSError(errno, f"cannot give receiver {index} a hop: "
                          f"{strerror(errno).decode()}")

    def stop(self):
        """Makes run() return within 100 ms (callable from another thread)."""
        self.stop_flag = 1

    def run(self, double duration=0.0, bint catch_signals=True):
        """Relays until stopped or for duration seconds (<= 0: no limit); returns counters.

        With catch_signals, SIGINT and SIGTERM stop the loop while it runs (their previous
        handlers are restored afterwards); call it from the main thread then.
        """
        cdef uint64_t counters[CEILING_RELAY_NCOUNTERS]
        cdef sigaction_t saved[2]
        cdef int rc
        memset(counters, 0, sizeof(counters))
        if catch_signals and ceiling_relay_catch_signals(&self.stop_flag, saved) != 0:
            raise OSError(errno, "sigaction failed")
        try:
            with nogil:
                rc = ceiling_relay_run(self.r, &self.stop_flag, duration, counters)
            if rc != 0:
                raise OSError(errno, f"relay socket failed: {strerror(errno).decode()}")
        finally:
            if catch_signals:
                ceiling_relay_release_signals(saved)
        return {
            "packets_in": counters[CEILING_RELAY_PACKETS_IN],
            "packets_out": counters[CEILING_RELAY_PACKETS_OUT],
            "dropped": counters[CEILING_RELAY_DROPPED],
            "send_errors": counters[CEILING_RELAY_SEND_ERRORS],
            "xdp_frames": counters[CEILING_RELAY_XDP_FRAMES],
            "xdp_fallbacks": counters[CEILING_RELAY_XDP_FALLBACKS],
        }
