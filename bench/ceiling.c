/* See ceiling.h. Plain C over OpenSSL EVP, keyed once, only the IV changes per packet; AES-CM
 * as AES-ECB over the packet's counter blocks (ext/aes_ctr.h) and HMAC-SHA1 from precomputed
 * inner/outer SHA-1 states, as relay does. */
#define OPENSSL_SUPPRESS_DEPRECATED 1
#include "ceiling.h"
#include "aes_ctr.h"

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/sha.h>
#include <stdlib.h>
#include <string.h>

struct ceiling {
    int aead;
    size_t tag_len;
    uint8_t salt[14];
    EVP_CIPHER_CTX *enc, *dec;
    SHA_CTX inner, outer;
};

ceiling *ceiling_new(int aead, const uint8_t *key, size_t key_len, const uint8_t *salt,
                     const uint8_t *auth_key, size_t tag_len) {
    ceiling *c = calloc(1, sizeof *c);
    if (!c) return NULL;
    c->aead = aead;
    c->tag_len = tag_len;
    memcpy(c->salt, salt, aead ? 12 : 14);
    c->enc = EVP_CIPHER_CTX_new();
    c->dec = EVP_CIPHER_CTX_new();
    if (aead) {
        const EVP_CIPHER *cipher = key_len == 32 ? EVP_aes_256_gcm() : EVP_aes_128_gcm();
        EVP_CipherInit_ex(c->enc, cipher, NULL, key, NULL, 1);
        EVP_CipherInit_ex(c->dec, cipher, NULL, key, NULL, 0);
    } else {
        uint8_t block[64] = {0};
        EVP_CipherInit_ex(c->enc, key_len == 32 ? EVP_aes_256_ecb() : EVP_aes_128_ecb(), NULL,
                          key, NULL, 1);
        EVP_CIPHER_CTX_set_padding(c->enc, 0);
        memcpy(block, auth_key, 20);
        for (int i = 0; i < 64; i++) block[i] ^= 0x36;
        SHA1_Init(&c->inner);
        SHA1_Update(&c->inner, block, 64);
        for (int i = 0; i < 64; i++) block[i] ^= 0x36 ^ 0x5c;
        SHA1_Init(&c->outer);
        SHA1_Update(&c->outer, block, 64);
    }
    return c;
}

void ceiling_free(ceiling *c) {
    if (!c) return;
    EVP_CIPHER_CTX_free(c->enc);
    EVP_CIPHER_CTX_free(c->dec);
    free(c);
}

static size_t header_len(const uint8_t *p) {
    size_t h = 12 + 4 * (p[0] & 0x0f);
    if (p[0] & 0x10) h += 4 + 4 * ((size_t)p[h + 2] << 8 | p[h + 3]);
    return h;
}

static void make_iv(const ceiling *c, const uint8_t *p, uint8_t *iv) {
    /* index = SEQ (ROC 0); AES-CM: salt<<16 ^ ssrc<<64 ^ index<<16; GCM: 00 00 ssrc roc seq ^ salt */
    if (c->aead) {
        memcpy(iv, c->salt, 12);
        for (int i = 0; i < 4; i++) iv[2 + i] ^= p[8 + i];
        iv[10] ^= p[2];
        iv[11] ^= p[3];
    } else {
        memcpy(iv, c->salt, 14);
        iv[14] = iv[15] = 0;
        for (int i = 0; i < 4; i++) iv[4 + i] ^= p[8 + i];
        iv[12] ^= p[2];
        iv[13] ^= p[3];
    }
}

static void hmac(const ceiling *c, const uint8_t *p, size_t n, uint8_t *mac) {
    static const uint8_t roc[4] = {0};
    uint8_t inner[20];
    SHA_CTX s = c->inner;
    SHA1_Update(&s, p, n);
    SHA1_Update(&s, roc, 4);
    SHA1_Final(inner, &s);
    s = c->outer;
    SHA1_Update(&s, inner, 20);
    SHA1_Final(mac, &s);
}

size_t ceiling_protect(ceiling *c, uint8_t *slab, size_t stride, uint32_t *lens, size_t n) {
    size_t done = 0;
    for (size_t i = 0; i < n; i++) {
        uint8_t *p = slab + i * stride, iv[16], mac[20];
        size_t len = lens[i], h = header_len(p);
        int outl;
        make_iv(c, p, iv);
        if (c->aead) {
            EVP_CipherInit_ex(c->enc, NULL, NULL, NULL, iv, 1);
            EVP_CipherUpdate(c->enc, NULL, &outl, p, (int)h);
            EVP_CipherUpdate(c->enc, p + h, &outl, p + h, (int)(len - h));
            EVP_CipherFinal_ex(c->enc, p + len, &outl);
            EVP_CIPHER_CTX_ctrl(c->enc, EVP_CTRL_AEAD_GET_TAG, 16, p + len);
        } else {
            relay_ctr_xor(c->enc, iv, p + h, len - h);
            hmac(c, p, len, mac);
            memcpy(p + len, mac, c->tag_len);
        }
        lens[i] = (uint32_t)(len + c->tag_len);
        done++;
    }
    return done;
}

size_t ceiling_unprotect(ceiling *c, uint8_t *slab, size_t stride, uint32_t *lens, size_t n) {
    size_t done = 0;
    for (size_t i = 0; i < n; i++) {
        uint8_t *p = slab + i * stride, iv[16], mac[20], tail[16];
        size_t len = lens[i] - c->tag_len, h = header_len(p);
        int outl;
        make_iv(c, p, iv);
        if (c->aead) {
            EVP_CipherInit_ex(c->dec, NULL, NULL, NULL, iv, 0);
            EVP_CIPHER_CTX_ctrl(c->dec, EVP_CTRL_AEAD_SET_TAG, 16, p + len);
            EVP_CipherUpdate(c->dec, NULL, &outl, p, (int)h);
            EVP_CipherUpdate(c->dec, p + h, &outl, p + h, (int)(len - h));
            if (EVP_CipherFinal_ex(c->dec, tail, &outl) != 1) continue;
        } else {
            hmac(c, p, len, mac);
            if (CRYPTO_memcmp(mac, p + len, c->tag_len) != 0) continue;
            relay_ctr_xor(c->enc, iv, p + h, len - h);
        }
        lens[i] = (uint32_t)len;
        done++;
    }
    return done;
}
