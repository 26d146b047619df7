# Making an SrtpContext: the suite table, the key derivation function, keying the EVP contexts.
# Runs once per session, so clarity wins over speed here.


cdef struct SuiteSpec:
    const char* name
    int suite
    size_t key_len
    size_t salt_len
    size_t rtp_tag_len
    size_t rtcp_tag_len
    bint aead


# AES_CM_128_HMAC_SHA1_32 keeps an 80-bit tag on SRTCP: RFC 4568 section 6.2.1 ("the SRTCP
# authentication tag is 80 bits for both crypto suites") and libsrtp's profile agree.
# A suite of a family the cipher code knows (AES-CM with HMAC-SHA1, AES-GCM; 128 or 256-bit
# keys, srtp.pxi) is one line here, its id in consts.pxi and its name in relay/vocabulary.py.
cdef enum:
    SUITE_COUNT = 4
cdef SuiteSpec SUITE_SPECS[SUITE_COUNT]
SUITE_SPECS[0] = SuiteSpec(b"AES_CM_128_HMAC_SHA1_80", SUITE_AES_CM_128_HMAC_SHA1_80,
                           16, 14, 10, 10, False)
SUITE_SPECS[1] = SuiteSpec(b"AES_CM_128_HMAC_SHA1_32", SUITE_AES_CM_128_HMAC_SHA1_32,
                           16, 14, 4, 10, False)
SUITE_SPECS[2] = SuiteSpec(b"AEAD_AES_128_GCM", SUITE_AEAD_AES_128_GCM, 16, 12, 16, 16, True)
SUITE_SPECS[3] = SuiteSpec(b"AEAD_AES_256_GCM", SUITE_AEAD_AES_256_GCM, 32, 12, 16, 16, True)


# KDF labels (RFC 3711 section 4.3.2).
cdef enum:
    LABEL_RTP_ENCRYPTION = 0
    LABEL_RTP_AUTH = 1
    LABEL_RTP_SALT = 2
    LABEL_RTCP_ENCRYPTION = 3
    LABEL_RTCP_AUTH = 4
    LABEL_RTCP_SALT = 5


cdef int srtp_kdf(const uint8_t* master_key, size_t key_len, const uint8_t* master_salt,
                  size_t salt_len, int label, uint8_t* out, size_t out_len) noexcept nogil:
    """The AES-CM PRF with key_derivation_rate 0 (RFC 3711 section 4.3.1 and 4.3.3).

    x = (label << 48) XOR master salt, the salt taken as 112 bits (a 96-bit GCM salt is padded
    with zeros on the right, RFC 7714 section 11); out = AES-CTR keystream from IV x || 0x0000.
    """
    cdef uint8_t iv[16]
    cdef EVP_CIPHER_CTX* ctx
    cdef int outl, rc = SRTP_ERR_CRYPTO
    memset(iv, 0, 16)
    memcpy(iv, master_salt, salt_len)
    iv[7] ^= <uint8_t>label
    memset(out, 0, out_len)
    ctx = EVP_CIPHER_CTX_new()
    if ctx == NULL:
        return SRTP_ERR_CRYPTO
    if (EVP_CipherInit_ex(ctx, srtp_ctr_cipher(key_len), NULL, master_key, iv, 1) == 1
            and EVP_CipherUpdate(ctx, out, &outl, out, <int>out_len) == 1):
        rc = SRTP_OK
    EVP_CIPHER_CTX_free(ctx)
    return rc


cdef void srtp_keys_set(SrtpKeys* k, const SuiteSpec* spec, const uint8_t* key,
                        const uint8_t* salt, const uint8_t* auth_key) noexcept nogil:
    """Store session keys in k; srtp_keys_ready keys the contexts on first use."""
    memset(k, 0, sizeof(SrtpKeys))
    memcpy(k.key, key, spec.key_len)
    memcpy(k.salt, salt, spec.salt_len)
    if not spec.aead:
        memcpy(k.auth, auth_key, SRTP_AUTH_KEY_LEN)


cdef void srtp_keys_clear(SrtpKeys* k) noexcept nogil:
    srtp_keys_release(k)
    OPENSSL_cleanse(k, sizeof(SrtpKeys))


cdef void srtp_context_setup(SrtpContext* c, const SuiteSpec* spec, uint32_t window) noexcept nogil:
    c.suite = spec.suite
    c.aead = spec.aead
    c.key_len = spec.key_len
    c.salt_len = spec.salt_len
    c.rtp_tag_len = spec.rtp_tag_len
    c.rtcp_tag_len = spec.rtcp_tag_len
    c.window = window
    c.window_words = (window + 63) // 64


cdef int srtp_context_from_master(SrtpContext* c, const SuiteSpec* spec,
                                  const uint8_t* master_key, const uint8_t* master_salt,
                                  uint32_t window) noexcept nogil:
    """Derive the six session keys from one master key and salt (keyed on first use)."""
    cdef uint8_t key[SRTP_MAX_KEY]
    cdef uint8_t salt[SRTP_MAX_SALT]
    cdef uint8_t auth[SRTP_AUTH_KEY_LEN]
    cdef int rc = SRTP_OK
    cdef int labels[2][3]
    cdef SrtpKeys* targets[2]
    cdef int i
    labels[0][:] = [LABEL_RTP_ENCRYPTION, LABEL_RTP_SALT, LABEL_RTP_AUTH]
    labels[1][:] = [LABEL_RTCP_ENCRYPTION, LABEL_RTCP_SALT, LABEL_RTCP_AUTH]
    targets[0] = &c.rtp
    targets[1] = &c.rtcp
    srtp_context_setup(c, spec, window)
    for i in range(2):
        rc = srtp_kdf(master_key, spec.key_len, master_salt, spec.salt_len, labels[i][0],
                      key, spec.key_len)
        if rc == SRTP_OK:
            rc = srtp_kdf(master_key, spec.key_len, master_salt, spec.salt_len, labels[i][1],
                          salt, spec.salt_len)
        if rc == SRTP_OK and not spec.aead:
            rc = srtp_kdf(master_key, spec.key_len, master_salt, spec.salt_len, labels[i][2],
                          auth, SRTP_AUTH_KEY_LEN)
        if rc != SRTP_OK:
            break
        srtp_keys_set(targets[i], spec, key, salt, auth)
    OPENSSL_cleanse(key, sizeof(key))
    OPENSSL_cleanse(salt, sizeof(salt))
    OPENSSL_cleanse(auth, sizeof(auth))
    return rc


cdef void srtp_context_clear(SrtpContext* c) noexcept nogil:
    srtp_keys_clear(&c.rtp)
    srtp_keys_clear(&c.rtcp)
