# SRTP and SRTCP packet transforms: RFC 3711 (AES-CM with HMAC-SHA1) and RFC 7714 (AES-GCM).
#
# The split between what is keyed and what is counted:
#
#   SrtpKeys      the session keys for RTP or for RTCP. The EVP contexts are keyed and the HMAC
#                 pads hashed on first use and then kept: per packet only the IV changes. Keys
#                 used rarely (a receiver's SRTCP) can be released after use to save memory.
#   SrtpContext   one master key: the suite, tag lengths, replay window, RTP and RTCP SrtpKeys.
#   SrtpIndex     the packet-index state of one direction of one SSRC: the highest index (so
#                 the ROC, RFC 3711 section 3.3.1) and a replay bitmap (section 3.3.2).
#
# A Session (session.pxi) is one SrtpContext and an SSRC -> streams map; the forwarding loop
# keeps an SrtpIndex per receiver stream itself. Every function below is noexcept nogil, works
# in place on a caller's buffer and returns an SrtpStatus. State changes only after a packet
# authenticates; on failure a buffer's contents are unspecified (GCM decrypts before it can
# check), so callers drop it.

from libc.stdint cimport int64_t, uint64_t
from libc.stdlib cimport free, malloc
from libc.string cimport memcpy, memset

from libcrypto cimport *
from rtp cimport load_be16, load_be32, store_be16, store_be32, rtp_header_len, rtcp_header_ok


ctypedef struct SrtpHmacPads:
    SHA_CTX inner           # SHA-1 after absorbing (auth key XOR ipad), RFC 2104
    SHA_CTX outer           # SHA-1 after absorbing (auth key XOR opad)


ctypedef struct SrtpKeys:
    EVP_CIPHER_CTX* enc     # AES-CM: AES-ECB, both directions (aes_ctr.h); GCM: encrypt
    EVP_CIPHER_CTX* dec     # AES-GCM decrypt; NULL until used, never for AES-CM
    SrtpHmacPads* pads      # AES-CM only; NULL until used
    uint8_t key[SRTP_MAX_KEY]       # session cipher key (key_len bytes)
    uint8_t salt[SRTP_MAX_SALT]     # session salt: 14 bytes for AES-CM, 12 for GCM
    uint8_t auth[SRTP_AUTH_KEY_LEN]  # HMAC-SHA1 session key; AES-CM only


ctypedef struct SrtpContext:
    int suite               # SrtpSuite
    bint aead               # GCM: the tag comes from the cipher, there is no auth key
    size_t key_len          # master and session cipher key length
    size_t salt_len         # master and session salt length
    size_t rtp_tag_len
    size_t rtcp_tag_len     # 10 even for ..._SHA1_32: RFC 3711 section 5.2, RFC 4568 6.2.1
    uint32_t window         # replay window in packets (64..1024)
    uint32_t window_words   # 64-bit words of bitmap the window uses
    SrtpKeys rtp
    SrtpKeys rtcp


ctypedef struct SrtpIndex:
    uint64_t highest        # highest index accepted: ROC << 16 | SEQ for SRTP, the SRTCP index
    bint started            # false until the first packet: then ROC = 0 and s_l = that SEQ
    uint64_t seen[REPLAY_WORDS_MAX]  # bit k of the bitmap: index (highest - k) was accepted


# ---------------------------------------------------------------------------------------------
# Packet index: ROC estimation and the replay window

cdef inline int64_t srtp_index_estimate(const SrtpIndex* t, uint16_t seq) noexcept nogil:
    """The 48-bit index a packet with this SEQ most likely has (RFC 3711 section 3.3.1).

    The guess is the one of ROC-1, ROC, ROC+1 that puts the packet nearest the highest index
    seen. Returns -1 when the guess would be ROC-1 at ROC 0: a packet from before the stream
    began, which the replay check refuses as too old.
    """
    cdef uint64_t roc, s_l, v
    if not t.started:
        return seq
    roc = t.highest >> 16
    s_l = t.highest & 0xFFFF
    v = roc
    if s_l < 32768:
        if seq > s_l + 32768:
            if roc == 0:
                return -1
            v = roc - 1
    elif s_l - 32768 > seq:
        v = roc + 1
    return <int64_t>((v << 16) | seq)


cdef inline int srtp_index_check(const SrtpIndex* t, uint64_t index,
                                 uint32_t window) noexcept nogil:
    """May this index be accepted? SRTP_OK, SRTP_ERR_REPLAY or SRTP_ERR_REPLAY_OLD."""
    cdef uint64_t back
    if not t.started or index > t.highest:
        return SRTP_OK
    back = t.highest - index
    if back >= window:
        return SRTP_ERR_REPLAY_OLD
    if (t.seen[back >> 6] >> (back & 63)) & 1:
        return SRTP_ERR_REPLAY
    return SRTP_OK


cdef inline void srtp_index_accept(SrtpIndex* t, uint64_t index, uint32_t words) noexcept nogil:
    """Record an index that passed srtp_index_check and authenticated."""
    cdef uint64_t shift, back
    cdef uint32_t i, word_shift, bit_shift
    if not t.started:
        t.started = True
        t.highest = index
        memset(t.seen, 0, sizeof(t.seen))
        t.seen[0] = 1
        return
    if index > t.highest:
        shift = index - t.highest
        t.highest = index
        if shift >= <uint64_t>words * 64:
            memset(t.seen, 0, sizeof(t.seen))
        else:
            # Shift the multi-word bitmap left by `shift` bits, most significant word first.
            word_shift = <uint32_t>(shift >> 6)
            bit_shift = <uint32_t>(shift & 63)
            i = words
            while i > 0:
                i -= 1
                if i < word_shift:
                    t.seen[i] = 0
                elif bit_shift == 0:
                    t.seen[i] = t.seen[i - word_shift]
                elif i > word_shift:
                    t.seen[i] = ((t.seen[i - word_shift] << bit_shift)
                                 | (t.seen[i - word_shift - 1] >> (64 - bit_shift)))
                else:
                    t.seen[i] = t.seen[0] << bit_shift
        t.seen[0] |= 1
    else:
        back = t.highest - index
        t.seen[back >> 6] |= (<uint64_t>1) << (back & 63)


# ---------------------------------------------------------------------------------------------
# The primitives: AES in counter or GCM mode with a fresh IV, HMAC from the precomputed pads

cdef inline void srtp_hmac_sha1(const SrtpKeys* k, const uint8_t* data, size_t n,
                                const uint8_t* extra, size_t extra_len,
                                uint8_t* mac) noexcept nogil:
    """HMAC-SHA1(auth key, data || extra) into mac[20] (RFC 2104)."""
    cdef SHA_CTX c
    cdef uint8_t inner[20]
    memcpy(&c, &k.pads.inner, sizeof(SHA_CTX))
    SHA1_Update(&c, data, n)
    if extra_len:
        SHA1_Update(&c, extra, extra_len)
    SHA1_Final(inner, &c)
    memcpy(&c, &k.pads.outer, sizeof(SHA_CTX))
    SHA1_Update(&c, inner, 20)
    SHA1_Final(mac, &c)


cdef inline int srtp_ctr_xor(EVP_CIPHER_CTX* ecb, const uint8_t* iv,
                             uint8_t* buf, size_t n) noexcept nogil:
    """XOR n bytes in place with the AES-CTR keystream that starts at counter block iv,
    through `ecb`, the key's AES-ECB context (srtp_ecb_ready; why ECB: ext/aes_ctr.h)."""
    if relay_ctr_xor(ecb, iv, buf, n) != 0:
        return SRTP_ERR_CRYPTO
    return SRTP_OK


cdef inline int srtp_gcm_seal(EVP_CIPHER_CTX* ctx, const uint8_t* iv,
                              const uint8_t* aad, size_t aad_len, const uint8_t* aad2,
                              size_t aad2_len, uint8_t* buf, size_t n,
                              uint8_t* tag) noexcept nogil:
    """Encrypt buf in place under AES-GCM with AAD = aad || aad2, write the 16-byte tag."""
    cdef int outl
    if EVP_CipherInit_ex(ctx, NULL, NULL, NULL, iv, 1) != 1:
        return SRTP_ERR_CRYPTO
    if EVP_CipherUpdate(ctx, NULL, &outl, aad, <int>aad_len) != 1:
        return SRTP_ERR_CRYPTO
    if aad2_len and EVP_CipherUpdate(ctx, NULL, &outl, aad2, <int>aad2_len) != 1:
        return SRTP_ERR_CRYPTO
    if n and EVP_CipherUpdate(ctx, buf, &outl, buf, <int>n) != 1:
        return SRTP_ERR_CRYPTO
    if EVP_CipherFinal_ex(ctx, buf + n, &outl) != 1:
        return SRTP_ERR_CRYPTO
    if EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_AEAD_GET_TAG, 16, tag) != 1:
        return SRTP_ERR_CRYPTO
    return SRTP_OK


cdef inline int srtp_gcm_open(EVP_CIPHER_CTX* ctx, const uint8_t* iv,
                              const uint8_t* aad, size_t aad_len, const uint8_t* aad2,
                              size_t aad2_len, uint8_t* buf, size_t n,
                              const uint8_t* tag) noexcept nogil:
    """Decrypt buf in place under AES-GCM and check the tag: SRTP_OK or SRTP_ERR_AUTH."""
    cdef int outl
    cdef uint8_t tail[16]
    if EVP_CipherInit_ex(ctx, NULL, NULL, NULL, iv, 0) != 1:
        return SRTP_ERR_CRYPTO
    if EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_AEAD_SET_TAG, 16, <void*>tag) != 1:
        return SRTP_ERR_CRYPTO
    if EVP_CipherUpdate(ctx, NULL, &outl, aad, <int>aad_len) != 1:
        return SRTP_ERR_CRYPTO
    if aad2_len and EVP_CipherUpdate(ctx, NULL, &outl, aad2, <int>aad2_len) != 1:
        return SRTP_ERR_CRYPTO
    if n and EVP_CipherUpdate(ctx, buf, &outl, buf, <int>n) != 1:
        return SRTP_ERR_CRYPTO
    if EVP_CipherFinal_ex(ctx, tail, &outl) != 1:
        return SRTP_ERR_AUTH
    return SRTP_OK


# ---------------------------------------------------------------------------------------------
# Keying on first use

cdef const EVP_CIPHER* srtp_ctr_cipher(size_t key_len) noexcept nogil:
    """OpenSSL's own CTR mode: the key derivation's (keys.pxi), one keystream per key."""
    return EVP_aes_256_ctr() if key_len == 32 else EVP_aes_128_ctr()


cdef int srtp_ecb_ready(EVP_CIPHER_CTX* ctx, const uint8_t* key, size_t key_len) noexcept nogil:
    """Key ctx for AES-ECB encryption without padding: what srtp_ctr_xor encrypts counter
    blocks with. 1 on success, as OpenSSL's calls."""
    cdef const EVP_CIPHER* cipher = EVP_aes_256_ecb() if key_len == 32 else EVP_aes_128_ecb()
    if EVP_CipherInit_ex(ctx, cipher, NULL, key, NULL, 1) != 1:
        return 0
    return EVP_CIPHER_CTX_set_padding(ctx, 0)


cdef int srtp_keys_ready(const SrtpContext* c, SrtpKeys* k, bint decrypt) noexcept nogil:
    """Key what the next transform with k needs, once: the AES-ECB context and HMAC pads
    (AES-CM), or the GCM context for this direction."""
    cdef const EVP_CIPHER* cipher
    cdef EVP_CIPHER_CTX** slot
    cdef uint8_t block[64]
    cdef size_t i
    if c.aead:
        slot = &k.dec if decrypt else &k.enc
        if slot[0] != NULL:
            return SRTP_OK
        cipher = EVP_aes_256_gcm() if c.key_len == 32 else EVP_aes_128_gcm()
        slot[0] = EVP_CIPHER_CTX_new()
        if slot[0] == NULL:
            return SRTP_ERR_CRYPTO
        if EVP_CipherInit_ex(slot[0], cipher, NULL, k.key, NULL, 0 if decrypt else 1) != 1:
            EVP_CIPHER_CTX_free(slot[0])
            slot[0] = NULL
            return SRTP_ERR_CRYPTO
        return SRTP_OK
    if k.enc != NULL:
        return SRTP_OK
    k.pads = <SrtpHmacPads*>malloc(sizeof(SrtpHmacPads))
    k.enc = EVP_CIPHER_CTX_new()
    if k.pads == NULL or k.enc == NULL or srtp_ecb_ready(k.enc, k.key, c.key_len) != 1:
        srtp_keys_release(k)
        return SRTP_ERR_CRYPTO
    # HMAC pads (RFC 2104): the auth key is shorter than SHA-1's 64-byte block.
    memset(block, 0, 64)
    memcpy(block, k.auth, SRTP_AUTH_KEY_LEN)
    for i in range(64):
        block[i] ^= 0x36
    SHA1_Init(&k.pads.inner)
    SHA1_Update(&k.pads.inner, block, 64)
    for i in range(64):
        block[i] ^= 0x36 ^ 0x5C
    SHA1_Init(&k.pads.outer)
    SHA1_Update(&k.pads.outer, block, 64)
    OPENSSL_cleanse(block, 64)
    return SRTP_OK


cdef void srtp_keys_release(SrtpKeys* k) noexcept nogil:
    """Free what srtp_keys_ready made; the raw keys stay, so it can key again later."""
    if k.enc != NULL:
        EVP_CIPHER_CTX_free(k.enc)
        k.enc = NULL
    if k.dec != NULL:
        EVP_CIPHER_CTX_free(k.dec)
        k.dec = NULL
    if k.pads != NULL:
        OPENSSL_cleanse(k.pads, sizeof(SrtpHmacPads))
        free(k.pads)
        k.pads = NULL


# ---------------------------------------------------------------------------------------------
# IVs

cdef inline void srtp_cm_iv(const SrtpKeys* k, uint32_t ssrc, uint64_t index,
                            uint8_t* iv) noexcept nogil:
    """AES-CM IV = (salt << 16) XOR (SSRC << 64) XOR (index << 16)  (RFC 3711 section 4.1.1).

    As bytes: salt in 0..13, SSRC over 4..7, the 48-bit index over 8..13, 14..15 zero (the
    block counter, which AES-CTR increments from there).
    """
    memcpy(iv, k.salt, 14)
    iv[14] = 0
    iv[15] = 0
    iv[4] ^= <uint8_t>(ssrc >> 24)
    iv[5] ^= <uint8_t>(ssrc >> 16)
    iv[6] ^= <uint8_t>(ssrc >> 8)
    iv[7] ^= <uint8_t>ssrc
    iv[8] ^= <uint8_t>(index >> 40)
    iv[9] ^= <uint8_t>(index >> 32)
    iv[10] ^= <uint8_t>(index >> 24)
    iv[11] ^= <uint8_t>(index >> 16)
    iv[12] ^= <uint8_t>(index >> 8)
    iv[13] ^= <uint8_t>index


cdef inline void srtp_gcm_iv(const SrtpKeys* k, uint32_t ssrc, uint64_t index,
                             uint8_t* iv) noexcept nogil:
    """GCM IV = (0x0000 || SSRC || ROC || SEQ) XOR salt  (RFC 7714 section 8.1).

    For SRTCP (section 9.1) the last six bytes are 0x0000 || 0 || 31-bit index, which is the
    same arithmetic with the SRTCP index in place of ROC || SEQ.
    """
    memcpy(iv, k.salt, 12)
    iv[2] ^= <uint8_t>(ssrc >> 24)
    iv[3] ^= <uint8_t>(ssrc >> 16)
    iv[4] ^= <uint8_t>(ssrc >> 8)
    iv[5] ^= <uint8_t>ssrc
    iv[6] ^= <uint8_t>(index >> 40)
    iv[7] ^= <uint8_t>(index >> 32)
    iv[8] ^= <uint8_t>(index >> 24)
    iv[9] ^= <uint8_t>(index >> 16)
    iv[10] ^= <uint8_t>(index >> 8)
    iv[11] ^= <uint8_t>index


# ---------------------------------------------------------------------------------------------
# SRTP (RFC 3711 section 3.1 packet format; RFC 7714 section 7 for GCM)

cdef int srtp_protect(SrtpContext* c, SrtpIndex* tx, uint8_t* pkt, size_t n,
                      size_t cap, size_t* out_len) noexcept nogil:
    """RTP -> SRTP in place: encrypt the payload, append the tag.

    The index is estimated from the sequence number against what tx has sent (the same rule
    a receiver applies, section 3.3.1). cap is the buffer size; it must hold n + the tag.
    """
    cdef int64_t guess
    if n < 12:
        return SRTP_ERR_MALFORMED
    guess = srtp_index_estimate(tx, load_be16(pkt + 2))
    if guess < 0:
        return SRTP_ERR_REPLAY_OLD
    return srtp_protect_at(c, tx, pkt, n, cap, <uint64_t>guess, out_len)


cdef int srtp_protect_at(SrtpContext* c, SrtpIndex* tx, uint8_t* pkt, size_t n, size_t cap,
                         uint64_t index, size_t* out_len) noexcept nogil:
    """srtp_protect with the 48-bit index given: the forwarding loop knows it exactly.

    The low 16 bits of index must be the packet's sequence number. An index tx has already
    used is refused (SRTP_ERR_REPLAY): a repeated index reuses keystream.
    """
    cdef int rc
    if index >> 48:
        return SRTP_ERR_INDEX_LIMIT
    rc = srtp_index_check(tx, index, c.window)
    if rc != SRTP_OK:
        return rc
    rc = _srtp_seal_at(c, pkt, n, cap, index, out_len)
    if rc == SRTP_OK:
        srtp_index_accept(tx, index, c.window_words)
    return rc


cdef int srtp_protect_again(SrtpContext* c, uint8_t* pkt, size_t n, size_t cap,
                            uint64_t index, size_t* out_len) noexcept nogil:
    """srtp_protect_at for a retransmission (rtx.pxi): `pkt` must be, byte for byte, the RTP
    packet already protected at `index` under this key (or one never sent at it). The index
    is neither checked nor recorded: the output is the same SRTP packet as before, so no
    keystream covers other bytes. Nothing else may call it."""
    if index >> 48:
        return SRTP_ERR_INDEX_LIMIT
    return _srtp_seal_at(c, pkt, n, cap, index, out_len)


cdef int _srtp_seal_at(SrtpContext* c, uint8_t* pkt, size_t n, size_t cap, uint64_t index,
                       size_t* out_len) noexcept nogil:
    """The transform itself: encrypt the payload and append the tag, at `index`."""
    cdef Py_ssize_t hlen = rtp_header_len(pkt, n)
    cdef uint32_t ssrc
    cdef int rc
    cdef uint8_t iv[16]
    cdef uint8_t mac[20]
    cdef uint8_t roc_be[4]
    if hlen < 0:
        return SRTP_ERR_MALFORMED
    if n + c.rtp_tag_len > cap:
        return SRTP_ERR_NO_ROOM
    rc = srtp_keys_ready(c, &c.rtp, False)
    if rc != SRTP_OK:
        return rc
    ssrc = load_be32(pkt + 8)
    if c.aead:
        srtp_gcm_iv(&c.rtp, ssrc, index, iv)
        rc = srtp_gcm_seal(c.rtp.enc, iv, pkt, <size_t>hlen, NULL, 0,
                           pkt + hlen, n - <size_t>hlen, pkt + n)
        if rc != SRTP_OK:
            return rc
    else:
        srtp_cm_iv(&c.rtp, ssrc, index, iv)
        rc = srtp_ctr_xor(c.rtp.enc, iv, pkt + hlen, n - <size_t>hlen)
        if rc != SRTP_OK:
            return rc
        # The tag covers the packet and the ROC, which is not sent (section 4.2).
        store_be32(roc_be, <uint32_t>(index >> 16))
        srtp_hmac_sha1(&c.rtp, pkt, n, roc_be, 4, mac)
        memcpy(pkt + n, mac, c.rtp_tag_len)
    out_len[0] = n + c.rtp_tag_len
    return SRTP_OK


cdef int srtp_unprotect(SrtpContext* c, SrtpIndex* rx, uint8_t* pkt, size_t n,
                        size_t* out_len, uint64_t* index_out) noexcept nogil:
    """SRTP -> RTP in place: check the tag and the replay window, decrypt, drop the tag.

    The index is estimated from the sequence number against what rx has accepted (section
    3.3.1). rx changes only when the packet authenticates and is new (section 3.3). On
    success *index_out (if not NULL) is the packet's 48-bit index.
    """
    cdef int64_t guess
    if n < c.rtp_tag_len + 12:
        return SRTP_ERR_MALFORMED
    guess = srtp_index_estimate(rx, load_be16(pkt + 2))
    if guess < 0:
        return SRTP_ERR_REPLAY_OLD
    return srtp_unprotect_at(c, rx, pkt, n, <uint64_t>guess, out_len, index_out)


cdef int srtp_unprotect_at(SrtpContext* c, SrtpIndex* rx, uint8_t* pkt, size_t n,
                           uint64_t index, size_t* out_len,
                           uint64_t* index_out) noexcept nogil:
    """srtp_unprotect with the 48-bit index given (its low 16 bits must be the packet's
    sequence number): for a receiver that knows the ROC from elsewhere."""
    cdef Py_ssize_t hlen
    cdef size_t body
    cdef uint32_t ssrc
    cdef int rc
    cdef uint8_t iv[16]
    cdef uint8_t mac[20]
    cdef uint8_t roc_be[4]
    if n < c.rtp_tag_len:
        return SRTP_ERR_MALFORMED
    body = n - c.rtp_tag_len
    hlen = rtp_header_len(pkt, body)
    if hlen < 0 or (index & 0xFFFF) != load_be16(pkt + 2):
        return SRTP_ERR_MALFORMED
    if index >> 48:
        return SRTP_ERR_INDEX_LIMIT
    rc = srtp_index_check(rx, index, c.window)
    if rc != SRTP_OK:
        return rc
    rc = srtp_keys_ready(c, &c.rtp, True)
    if rc != SRTP_OK:
        return rc
    ssrc = load_be32(pkt + 8)
    if c.aead:
        srtp_gcm_iv(&c.rtp, ssrc, index, iv)
        rc = srtp_gcm_open(c.rtp.dec, iv, pkt, <size_t>hlen, NULL, 0,
                           pkt + hlen, body - <size_t>hlen, pkt + body)
        if rc != SRTP_OK:
            return rc
    else:
        store_be32(roc_be, <uint32_t>(index >> 16))
        srtp_hmac_sha1(&c.rtp, pkt, body, roc_be, 4, mac)
        if CRYPTO_memcmp(mac, pkt + body, c.rtp_tag_len) != 0:
            return SRTP_ERR_AUTH
        srtp_cm_iv(&c.rtp, ssrc, index, iv)
        rc = srtp_ctr_xor(c.rtp.enc, iv, pkt + hlen, body - <size_t>hlen)
        if rc != SRTP_OK:
            return rc
    srtp_index_accept(rx, index, c.window_words)
    out_len[0] = body
    if index_out != NULL:
        index_out[0] = index
    return SRTP_OK


# ---------------------------------------------------------------------------------------------
# SRTCP (RFC 3711 section 3.4; RFC 7714 section 9 for GCM)
#
#   AES-CM:  header(8) || encrypted rest || E|index(4) || tag   (tag over all that precedes it)
#   GCM:     header(8) || encrypted rest || tag(16) || E|index(4)   (AAD = header || E|index)

cdef int srtcp_protect(SrtpContext* c, uint32_t* next_index, uint8_t* pkt, size_t n,
                       size_t cap, size_t* out_len) noexcept nogil:
    """RTCP -> SRTCP in place, encrypted (E = 1), with the next index from *next_index."""
    cdef uint32_t index = next_index[0]
    cdef uint32_t ssrc
    cdef int rc
    cdef uint8_t iv[16]
    cdef uint8_t mac[20]
    cdef uint8_t trailer[4]
    if not rtcp_header_ok(pkt, n):
        return SRTP_ERR_MALFORMED
    if n + SRTCP_TRAILER + c.rtcp_tag_len > cap:
        return SRTP_ERR_NO_ROOM
    if index > 0x7FFFFFFF:
        return SRTP_ERR_INDEX_LIMIT
    rc = srtp_keys_ready(c, &c.rtcp, False)
    if rc != SRTP_OK:
        return rc
    ssrc = load_be32(pkt + 4)
    store_be32(trailer, <uint32_t>0x80000000u | index)
    if c.aead:
        srtp_gcm_iv(&c.rtcp, ssrc, index, iv)
        rc = srtp_gcm_seal(c.rtcp.enc, iv, pkt, 8, trailer, 4, pkt + 8, n - 8, pkt + n)
        if rc != SRTP_OK:
            return rc
        memcpy(pkt + n + 16, trailer, 4)
    else:
        srtp_cm_iv(&c.rtcp, ssrc, index, iv)
        rc = srtp_ctr_xor(c.rtcp.enc, iv, pkt + 8, n - 8)
        if rc != SRTP_OK:
            return rc
        memcpy(pkt + n, trailer, 4)
        srtp_hmac_sha1(&c.rtcp, pkt, n + 4, NULL, 0, mac)
        memcpy(pkt + n + 4, mac, c.rtcp_tag_len)
    next_index[0] = index + 1
    out_len[0] = n + SRTCP_TRAILER + c.rtcp_tag_len
    return SRTP_OK


cdef int srtcp_unprotect(SrtpContext* c, SrtpIndex* rx, uint8_t* pkt, size_t n,
                         size_t* out_len) noexcept nogil:
    """SRTCP -> RTCP in place. Accepts E = 0 (authenticated, not encrypted) as well.

    AES_CM_128_HMAC_SHA1_32 puts an 80-bit tag on SRTCP (RFC 4568 section 6.2.1; libsrtp),
    but ffmpeg, asked for the suite by that SDES name, puts the 32-bit tag on SRTCP too: such
    a packet is tried with the short tag when the long one fails. This is no weaker than the
    suite's RTP, which a forger would attack instead."""
    cdef int rc = _srtcp_unprotect(c, rx, pkt, n, c.rtcp_tag_len, out_len)
    if rc != SRTP_OK and not c.aead and c.rtp_tag_len < c.rtcp_tag_len:
        # Read with the long tag, the index came from the wrong bytes: any failure may be
        # that. What the short tag does not fix is reported as the long tag found it.
        if _srtcp_unprotect(c, rx, pkt, n, c.rtp_tag_len, out_len) == SRTP_OK:
            return SRTP_OK
    return rc


cdef int _srtcp_unprotect(SrtpContext* c, SrtpIndex* rx, uint8_t* pkt, size_t n, size_t tag,
                          size_t* out_len) noexcept nogil:
    cdef size_t body
    cdef const uint8_t* trailer
    cdef uint32_t word, ssrc
    cdef uint64_t index
    cdef bint encrypted
    cdef int rc
    cdef uint8_t iv[16]
    cdef uint8_t mac[20]
    if n < 8 + SRTCP_TRAILER + tag:
        return SRTP_ERR_MALFORMED
    body = n - SRTCP_TRAILER - tag
    if not rtcp_header_ok(pkt, body):
        return SRTP_ERR_MALFORMED
    trailer = pkt + n - SRTCP_TRAILER if c.aead else pkt + body
    word = load_be32(trailer)
    encrypted = (word >> 31) != 0
    index = word & 0x7FFFFFFF
    rc = srtp_index_check(rx, index, c.window)
    if rc != SRTP_OK:
        return rc
    rc = srtp_keys_ready(c, &c.rtcp, True)
    if rc != SRTP_OK:
        return rc
    ssrc = load_be32(pkt + 4)
    if c.aead:
        srtp_gcm_iv(&c.rtcp, ssrc, index, iv)
        if encrypted:
            rc = srtp_gcm_open(c.rtcp.dec, iv, pkt, 8, trailer, 4, pkt + 8, body - 8,
                               pkt + body)
        else:
            # E = 0: the whole packet is AAD and the plaintext is empty (section 9.2).
            rc = srtp_gcm_open(c.rtcp.dec, iv, pkt, body, trailer, 4, NULL, 0, pkt + body)
        if rc != SRTP_OK:
            return rc
    else:
        srtp_hmac_sha1(&c.rtcp, pkt, body + SRTCP_TRAILER, NULL, 0, mac)
        if CRYPTO_memcmp(mac, pkt + body + SRTCP_TRAILER, tag) != 0:
            return SRTP_ERR_AUTH
        if encrypted:
            srtp_cm_iv(&c.rtcp, ssrc, index, iv)
            rc = srtp_ctr_xor(c.rtcp.enc, iv, pkt + 8, body - 8)
            if rc != SRTP_OK:
                return rc
    srtp_index_accept(rx, index, c.window_words)
    out_len[0] = body
    return SRTP_OK
