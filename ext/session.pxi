# Session: the Python face of one SRTP master key (the `relay.srtp.Session` contract), with the
# per-SSRC state kept apart for sending and receiving, as libsrtp keeps it.
#
# Per-packet calls copy the packet once into a bytes object or a scratch buffer and run the
# nogil transforms of srtp.pxi on it. The batch calls run many packets in one nogil section.

from cpython.buffer cimport PyObject_GetBuffer, PyBuffer_Release, PyBUF_SIMPLE
from cpython.bytes cimport (PyBytes_AS_STRING, PyBytes_CheckExact, PyBytes_FromStringAndSize,
                            PyBytes_GET_SIZE)
from libc.stdlib cimport calloc, free, realloc

from relay.errors import AuthError, ReplayError, SrtpError


ctypedef struct SrtpStream:
    uint32_t ssrc
    bint used               # slot taken in the open-addressing table
    SrtpIndex rtp_tx        # what we protected: ROC and indexes already used
    SrtpIndex rtp_rx        # what we accepted: ROC estimate and replay window
    SrtpIndex rtcp_rx
    uint32_t rtcp_tx_next   # the next SRTCP index we send (starts at 0, section 3.4)


STATUS_NAMES = {
    SRTP_OK: "ok",
    SRTP_ERR_MALFORMED: "malformed",
    SRTP_ERR_AUTH: "auth",
    SRTP_ERR_REPLAY: "replay",
    SRTP_ERR_REPLAY_OLD: "replay_old",
    SRTP_ERR_NO_ROOM: "no_room",
    SRTP_ERR_INDEX_LIMIT: "index_limit",
    SRTP_ERR_CRYPTO: "crypto",
}


cdef int _raise_for(int status, str what) except -1:
    """Turn a status code from srtp.pxi into the exception the contract names."""
    if status == SRTP_ERR_AUTH:
        raise AuthError(f"{what}: authentication tag mismatch")
    if status == SRTP_ERR_REPLAY:
        if what.startswith("protect"):
            raise ReplayError(f"{what}: this SSRC and index were already protected; "
                              "encrypting twice under one index would reuse keystream")
        raise ReplayError(f"{what}: packet index already received (replay)")
    if status == SRTP_ERR_REPLAY_OLD:
        raise ReplayError(f"{what}: packet index is older than the replay window")
    if status == SRTP_ERR_MALFORMED:
        raise SrtpError(f"{what}: malformed packet (too short, not version 2, "
                        "or a header that runs past the end)")
    if status == SRTP_ERR_INDEX_LIMIT:
        raise SrtpError(f"{what}: packet index limit reached; the master key must be replaced")
    if status == SRTP_ERR_NO_ROOM:
        raise SrtpError(f"{what}: no room in the buffer for the authentication tag")
    raise SrtpError(f"{what}: OpenSSL failure (status {status})")


cdef const SuiteSpec* _suite_spec(object suite) except NULL:
    # Any str names a suite, relay.vocabulary.Suite's members included (str subclasses).
    cdef int i
    cdef bytes name
    if not isinstance(suite, str):
        raise TypeError(f"suite must be a str, not {type(suite).__name__}")
    name = suite.encode("ascii", "replace")
    for i in range(SUITE_COUNT):
        if name == SUITE_SPECS[i].name:
            return &SUITE_SPECS[i]
    raise ValueError(f"unknown SRTP suite {suite!r}; expected one of: "
                     + ", ".join(s.decode() for s in _suite_names()))


def _suite_names():
    return [SUITE_SPECS[i].name for i in range(SUITE_COUNT)]


SUITES = {SUITE_SPECS[i].name.decode(): (SUITE_SPECS[i].key_len, SUITE_SPECS[i].salt_len,
                                         SUITE_SPECS[i].rtp_tag_len) for i in range(SUITE_COUNT)}


cdef inline uint32_t _slot_hash(uint32_t ssrc) noexcept nogil:
    return ssrc * <uint32_t>2654435761u   # Knuth's multiplicative hash


@cython.final
cdef class Session:
    """One SRTP master key: protect what we send, unprotect what we receive.

    Args:
        suite: one of SUITES.
        key_material: master key || master salt, as bytes (length SUITES[suite][0] +
            SUITES[suite][1]).
        replay_window: how many packets behind the newest one are still accepted, 64..1024.

    Raises:
        ValueError: unknown suite, wrong key length, an MKI, or a window out of range.
    """

    cdef SrtpContext ctx
    cdef const SuiteSpec* spec
    cdef SrtpStream* streams    # open addressing on SSRC, power-of-two capacity
    cdef size_t capacity
    cdef size_t count
    cdef uint8_t* scratch       # unprotect works on a copy here, so failures leave no trace
    cdef size_t scratch_len
    cdef readonly str suite
    cdef readonly int replay_window

    def __cinit__(self):
        memset(&self.ctx, 0, sizeof(SrtpContext))

    def __init__(self, suite, key_material, *, int replay_window=128, mki=None):
        cdef const SuiteSpec* spec = _suite_spec(suite)
        cdef const uint8_t[::1] km
        cdef int rc
        if mki is not None:
            raise ValueError("MKI is not supported: relay keys each direction with one master "
                             "key, so packets carry no MKI; expected mki=None")
        km = _key_bytes(key_material)
        if <size_t>km.shape[0] != spec.key_len + spec.salt_len:
            raise ValueError(
                f"{suite} needs {spec.key_len + spec.salt_len} bytes of key material "
                f"({spec.key_len}-byte master key || {spec.salt_len}-byte master salt), "
                f"got {km.shape[0]}")
        _check_window(replay_window)
        self._reset(spec, replay_window)
        rc = srtp_context_from_master(&self.ctx, spec, &km[0], &km[spec.key_len],
                                      <uint32_t>replay_window)
        if rc != SRTP_OK:
            _raise_for(rc, "Session")

    @classmethod
    def _from_session_keys(cls, suite, *, bytes rtp_key, bytes rtp_salt, bytes rtcp_key,
                           bytes rtcp_salt, bytes rtp_auth_key=b"", bytes rtcp_auth_key=b"",
                           int replay_window=128):
        """A Session keyed with session keys directly, skipping the KDF.

        For known-answer tests whose vectors start from session keys (RFC 7714 section 16-17).
        """
        cdef Session self = Session.__new__(Session)
        cdef const SuiteSpec* spec = _suite_spec(suite)
        for name, value, want in (("rtp_key", rtp_key, spec.key_len),
                                  ("rtcp_key", rtcp_key, spec.key_len),
                                  ("rtp_salt", rtp_salt, spec.salt_len),
                                  ("rtcp_salt", rtcp_salt, spec.salt_len),
                                  ("rtp_auth_key", rtp_auth_key,
                                   0 if spec.aead else SRTP_AUTH_KEY_LEN),
                                  ("rtcp_auth_key", rtcp_auth_key,
                                   0 if spec.aead else SRTP_AUTH_KEY_LEN)):
            if len(value) != want:
                raise ValueError(f"{name} must be {want} bytes for {suite}, got {len(value)}")
        _check_window(replay_window)
        self._reset(spec, replay_window)
        srtp_context_setup(&self.ctx, spec, <uint32_t>replay_window)
        srtp_keys_set(&self.ctx.rtp, spec, rtp_key, rtp_salt, rtp_auth_key)
        srtp_keys_set(&self.ctx.rtcp, spec, rtcp_key, rtcp_salt, rtcp_auth_key)
        return self

    cdef void _reset(self, const SuiteSpec* spec, int window):
        self.spec = spec
        self.suite = spec.name.decode()
        self.replay_window = window

    def __dealloc__(self):
        srtp_context_clear(&self.ctx)
        free(self.streams)
        free(self.scratch)

    def __repr__(self):
        return f"<relay.srtp.Session {self.suite} streams={self.count}>"

    # -- the SSRC table ------------------------------------------------------------------

    cdef SrtpStream* _find(self, uint32_t ssrc) noexcept nogil:
        cdef size_t mask, i
        if self.capacity == 0:
            return NULL
        mask = self.capacity - 1
        i = _slot_hash(ssrc) & mask
        while self.streams[i].used:
            if self.streams[i].ssrc == ssrc:
                return &self.streams[i]
            i = (i + 1) & mask
        return NULL

    cdef SrtpStream* _insert(self, const SrtpStream* proto) noexcept nogil:
        """Store a copy of proto (whose SSRC is not in the table); NULL when out of memory."""
        cdef size_t mask, i, old_capacity
        cdef SrtpStream* old
        if (self.count + 1) * 2 > self.capacity:
            old = self.streams
            old_capacity = self.capacity
            self.capacity = old_capacity * 2 if old_capacity else 8
            self.streams = <SrtpStream*>calloc(self.capacity, sizeof(SrtpStream))
            if self.streams == NULL:
                self.streams = old
                self.capacity = old_capacity
                return NULL
            self.count = 0
            for i in range(old_capacity):
                if old[i].used:
                    self._insert(&old[i])
            free(old)
        mask = self.capacity - 1
        i = _slot_hash(proto.ssrc) & mask
        while self.streams[i].used:
            i = (i + 1) & mask
        memcpy(&self.streams[i], proto, sizeof(SrtpStream))
        self.streams[i].used = True
        self.count += 1
        return &self.streams[i]

    cdef SrtpStream* _stream_for(self, uint32_t ssrc, SrtpStream* fresh) noexcept nogil:
        """The stream for ssrc, or fresh (zeroed, not stored) when there is none yet."""
        cdef SrtpStream* st = self._find(ssrc)
        if st != NULL:
            return st
        memset(fresh, 0, sizeof(SrtpStream))
        fresh.ssrc = ssrc
        return fresh

    cdef int _keep(self, SrtpStream* st, SrtpStream* fresh) noexcept nogil:
        """After success: store a stream that was fresh."""
        if st == fresh and self._insert(fresh) == NULL:
            return SRTP_ERR_CRYPTO
        return SRTP_OK

    cdef uint8_t* _scratch(self, size_t n) except NULL:
        cdef uint8_t* grown
        if n > self.scratch_len:
            grown = <uint8_t*>realloc(self.scratch, n)
            if grown == NULL:
                raise MemoryError()
            self.scratch = grown
            self.scratch_len = n
        return self.scratch

    # -- per-packet calls (the contract) ---------------------------------------------------

    @cython.always_allow_keywords(False)   # METH_O: the cheapest call CPython has
    def protect(self, data):
        """Encrypt and authenticate one RTP packet.

        Args:
            data: a plain RTP packet (bytes-like).

        Returns:
            The SRTP packet: the same header, the encrypted payload, the tag.

        Raises:
            SrtpError: malformed RTP; ReplayError: this SSRC and sequence number (with its
            ROC) was already protected.
        """
        return self._transform(data, 0)

    @cython.always_allow_keywords(False)
    def unprotect(self, data):
        """Authenticate and decrypt one SRTP packet.

        Raises:
            AuthError: the tag does not match. ReplayError: seen before, or older than the
            replay window. SrtpError: malformed.
        """
        return self._transform(data, 1)

    def unprotect_at(self, data, uint32_t roc):
        """Unprotect one SRTP packet whose ROC the caller knows from elsewhere, rather than
        estimating it from the packets seen so far (RFC 3711 section 3.3.1): for receivers
        that see a stream sparsely, such as a benchmark's sampling sinks. Raises as
        unprotect does."""
        cdef const uint8_t[::1] view = bytes(data)
        cdef size_t n = <size_t>view.shape[0]
        cdef size_t out_n = 0
        cdef uint8_t* buf
        cdef SrtpStream fresh
        cdef SrtpStream* st
        cdef int rc
        if n < 12 or n > SRTP_MAX_PACKET:
            _raise_for(SRTP_ERR_MALFORMED, "unprotect_at")
        buf = self._scratch(n)
        memcpy(buf, &view[0], n)
        st = self._stream_for(load_be32(buf + 8), &fresh)
        rc = srtp_unprotect_at(&self.ctx, &st.rtp_rx, buf, n,
                               (<uint64_t>roc << 16) | load_be16(buf + 2), &out_n, NULL)
        if rc == SRTP_OK:
            rc = self._keep(st, &fresh)
        if rc != SRTP_OK:
            _raise_for(rc, "unprotect_at")
        return PyBytes_FromStringAndSize(<const char*>buf, <Py_ssize_t>out_n)

    @cython.always_allow_keywords(False)
    def protect_rtcp(self, data):
        """Encrypt and authenticate one RTCP compound packet (SRTCP with E = 1)."""
        return self._transform(data, 2)

    @cython.always_allow_keywords(False)
    def unprotect_rtcp(self, data):
        """Authenticate and decrypt one SRTCP packet; raises as unprotect does."""
        return self._transform(data, 3)

    cdef object _transform(self, object data, int op):
        cdef Py_buffer view
        cdef bint viewed = False
        cdef const uint8_t* src
        cdef size_t n, out_n = 0
        cdef size_t overhead = 0
        cdef object out = None
        cdef uint8_t* buf
        cdef int rc
        cdef SrtpStream fresh
        cdef SrtpStream* st
        # bytes, the common case, is read directly; anything else through the buffer protocol.
        if PyBytes_CheckExact(data):
            src = <const uint8_t*>PyBytes_AS_STRING(data)
            n = <size_t>PyBytes_GET_SIZE(data)
        else:
            PyObject_GetBuffer(data, &view, PyBUF_SIMPLE)
            viewed = True
            src = <const uint8_t*>view.buf
            n = <size_t>view.len
        try:
            if n > SRTP_MAX_PACKET:
                raise SrtpError(f"{_OP_NAMES[op]}: {n}-byte packet; SRTP travels in UDP, "
                                f"so at most {SRTP_MAX_PACKET} bytes")
            # protect works in the result, sized for the trailer; unprotect in the scratch
            # buffer, since its result is shorter and a failure must leave nothing behind.
            if op == 0 or op == 2:
                overhead = (self.ctx.rtp_tag_len if op == 0
                            else self.ctx.rtcp_tag_len + SRTCP_TRAILER)
                out = PyBytes_FromStringAndSize(NULL, <Py_ssize_t>(n + overhead))
                buf = <uint8_t*>PyBytes_AS_STRING(out)
            else:
                buf = self._scratch(n if n else 1)
            if n:
                memcpy(buf, src, n)
        finally:
            if viewed:
                PyBuffer_Release(&view)
        # The SSRC sits at bytes 8..11 in RTP and 4..7 in RTCP; a packet too short to have
        # one is refused by the transform, so reading 0 for it here is harmless.
        st = self._stream_for(load_be32(buf + 8) if op < 2 and n >= 12 else
                              load_be32(buf + 4) if op >= 2 and n >= 8 else 0, &fresh)
        # The GIL stays held: releasing and taking it back would cost more than the packet.
        if op == 0:
            rc = srtp_protect(&self.ctx, &st.rtp_tx, buf, n, n + overhead, &out_n)
        elif op == 1:
            rc = srtp_unprotect(&self.ctx, &st.rtp_rx, buf, n, &out_n, NULL)
        elif op == 2:
            rc = srtcp_protect(&self.ctx, &st.rtcp_tx_next, buf, n, n + overhead, &out_n)
        else:
            rc = srtcp_unprotect(&self.ctx, &st.rtcp_rx, buf, n, &out_n)
        if rc == SRTP_OK:
            rc = self._keep(st, &fresh)
        if rc != SRTP_OK:
            _raise_for(rc, _OP_NAMES[op])
        if out is None:
            out = PyBytes_FromStringAndSize(<const char*>buf, <Py_ssize_t>out_n)
        return out

    # -- batch calls (benchmarks and the forwarding loop) -----------------------------------

    def protect_batch(self, uint8_t[:, ::1] slab not None, uint32_t[::1] lengths not None,
                      int32_t[::1] status=None):
        """Protect len(lengths) RTP packets in place, one per row of slab, without the GIL.

        Row i holds a packet of lengths[i] bytes; the row width is the room for its tag. On
        return lengths[i] is the SRTP length, and status[i] (if given) the status code
        (0 = ok; names in STATUS_NAMES). Returns the number protected.
        """
        return self._batch(slab, lengths, status, 0)

    def unprotect_batch(self, uint8_t[:, ::1] slab not None, uint32_t[::1] lengths not None,
                        int32_t[::1] status=None):
        """Unprotect SRTP packets in place, as protect_batch. A failed row keeps its length."""
        return self._batch(slab, lengths, status, 1)

    cdef Py_ssize_t _batch(self, uint8_t[:, ::1] slab, uint32_t[::1] lengths,
                           int32_t[::1] status, int op) except -1:
        cdef Py_ssize_t count = lengths.shape[0]
        cdef size_t stride = <size_t>slab.shape[1]
        cdef Py_ssize_t i, ok = 0
        cdef uint8_t* row
        cdef size_t n, out_n
        cdef int rc
        cdef SrtpStream fresh
        cdef SrtpStream* st
        cdef int32_t* codes = NULL
        if slab.shape[0] < count:
            raise ValueError(f"slab has {slab.shape[0]} rows for {count} lengths")
        if status is not None:
            if status.shape[0] < count:
                raise ValueError(f"status has {status.shape[0]} entries for {count} packets")
            codes = &status[0]
        if count == 0:
            return 0
        row = &slab[0, 0]
        with nogil:
            for i in range(count):
                n = lengths[i]
                if n > stride:
                    rc = SRTP_ERR_MALFORMED
                else:
                    st = self._stream_for(load_be32(row + 8) if n >= 12 else 0, &fresh)
                    if op == 0:
                        rc = srtp_protect(&self.ctx, &st.rtp_tx, row, n, stride, &out_n)
                    else:
                        rc = srtp_unprotect(&self.ctx, &st.rtp_rx, row, n, &out_n, NULL)
                    if rc == SRTP_OK:
                        rc = self._keep(st, &fresh)
                if rc == SRTP_OK:
                    lengths[i] = <uint32_t>out_n
                    ok += 1
                if codes != NULL:
                    codes[i] = rc
                row += stride
        return ok


_OP_NAMES = ("protect", "unprotect", "protect_rtcp", "unprotect_rtcp")


cdef int _check_window(int window) except -1:
    if not REPLAY_WINDOW_MIN <= window <= REPLAY_WINDOW_MAX:
        raise ValueError(f"replay_window must be between {REPLAY_WINDOW_MIN} and "
                         f"{REPLAY_WINDOW_MAX} packets, got {window}")
    return 0


cdef const uint8_t[::1] _key_bytes(object key_material):
    if isinstance(key_material, str):
        raise TypeError("key_material must be bytes (master key || master salt); decode an "
                        "SDES 'inline:' key with relay.srtp.parse_sdes_key first")
    return bytes(key_material)


# -- test hooks: the primitives the RFC 3711 Appendix B vectors check directly ---------------

def _kdf(bytes master_key not None, bytes master_salt not None, int label, int length):
    """srtp_kdf: `length` bytes of session key material for `label` (RFC 3711 section 4.3)."""
    cdef bytes out = PyBytes_FromStringAndSize(NULL, length)
    if len(master_key) not in (16, 32) or len(master_salt) not in (12, 14):
        raise ValueError("master key must be 16 or 32 bytes and master salt 12 or 14")
    _raise_if(srtp_kdf(master_key, len(master_key), master_salt, len(master_salt), label,
                       <uint8_t*>PyBytes_AS_STRING(out), length))
    return out


def _aes_cm_keystream(bytes key not None, bytes iv not None, int length):
    """The AES-CM keystream from counter block iv (RFC 3711 section 4.1.1), via srtp_ctr_xor."""
    cdef SrtpKeys k
    cdef bytes out = PyBytes_FromStringAndSize(NULL, length)
    if len(key) not in (16, 32) or len(iv) != 16:
        raise ValueError("key must be 16 or 32 bytes and iv 16")
    memset(&k, 0, sizeof(k))
    memset(PyBytes_AS_STRING(out), 0, length)
    k.enc = EVP_CIPHER_CTX_new()
    try:
        if srtp_ecb_ready(k.enc, key, len(key)) != 1:
            _raise_for(SRTP_ERR_CRYPTO, "keystream")
        _raise_if(srtp_ctr_xor(k.enc, iv, <uint8_t*>PyBytes_AS_STRING(out), length))
    finally:
        srtp_keys_clear(&k)
    return out


cdef int _raise_if(int rc) except -1:
    if rc != SRTP_OK:
        _raise_for(rc, "srtp")
    return 0
