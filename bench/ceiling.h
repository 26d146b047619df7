/* The C ceiling for SRTP: the least work that protects or unprotects a batch of packets with
 * OpenSSL, for comparison with relay._core in the same run. No ROC tracking, no replay window,
 * no SSRC lookup, no checks beyond what keeps memory safe: what relay adds on top of this is
 * its overhead. */
#ifndef RELAY_BENCH_CEILING_H
#define RELAY_BENCH_CEILING_H

#include <stddef.h>
#include <stdint.h>

typedef struct ceiling ceiling;

/* key/salt/auth_key are session keys (no KDF); aead selects AES-GCM (auth_key unused). */
ceiling *ceiling_new(int aead, const uint8_t *key, size_t key_len, const uint8_t *salt,
                     const uint8_t *auth_key, size_t tag_len);
void ceiling_free(ceiling *c);

/* Packets are rows of `stride` bytes; lens[i] is updated. Returns packets done. */
size_t ceiling_protect(ceiling *c, uint8_t *slab, size_t stride, uint32_t *lens, size_t n);
size_t ceiling_unprotect(ceiling *c, uint8_t *slab, size_t stride, uint32_t *lens, size_t n);

#endif
