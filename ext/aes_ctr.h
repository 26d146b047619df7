/* AES in counter mode (RFC 3711 section 4.1.1; NIST SP 800-38A section 6.5) from an AES-ECB
 * context keyed once: the relay's (ext/srtp.pxi) and the C ceiling's (bench/ceiling.c).
 *
 * Why not OpenSSL's CTR mode: every SRTP packet starts a keystream at a counter block of its
 * own, and with OpenSSL 3.0 setting a context's IV (EVP_CipherInit_ex with only the IV) goes
 * through the provider's parameters each time: it cost more than the encryption of a 200-byte
 * packet (bench/RESULTS.md, "AES-CM without a per-packet IV"). Here the counter blocks of a
 * packet are written out and encrypted with AES-ECB in one EVP_EncryptUpdate (OpenSSL's AES,
 * AES-NI where the CPU has it), and the result is XORed into the data: the same keystream,
 * block for block, that CTR mode gives: E(K, IV), E(K, IV + 1), ..., the counter block
 * incremented as a 128-bit big-endian number (tests/test_srtp_vectors.py checks it against
 * RFC 3711's vectors and an independent AES-CTR; the rest of tests/test_srtp*.py, libsrtp). */
#ifndef RELAY_AES_CTR_H
#define RELAY_AES_CTR_H

#include <openssl/evp.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#define RELAY_CTR_CHUNK_BLOCKS 96   /* 1,536 bytes: any datagram in one call */

/* The next counter block: `ctr` plus one, as a 128-bit big-endian number. */
static inline void relay_ctr_increment(uint8_t ctr[16])
{
    int i = 15;
    while (i >= 0 && ++ctr[i] == 0)
        i--;
}

/* XOR `n` bytes of `buf` in place with the AES-CTR keystream starting at counter block `iv`,
 * through `ecb`, an AES-ECB encryption context without padding: 0, or -1 if OpenSSL failed. */
static inline int relay_ctr_xor(EVP_CIPHER_CTX *ecb, const uint8_t iv[16], uint8_t *buf,
                                size_t n)
{
    uint8_t counters[RELAY_CTR_CHUNK_BLOCKS * 16], stream[RELAY_CTR_CHUNK_BLOCKS * 16];
    uint8_t ctr[16];
    size_t take, blocks, j;
    int outl;

    memcpy(ctr, iv, 16);
    while (n > 0) {
        take = n < sizeof(counters) ? n : sizeof(counters);
        blocks = (take + 15) / 16;
        for (j = 0; j < blocks; j++) {
            memcpy(counters + 16 * j, ctr, 16);
            relay_ctr_increment(ctr);
        }
        if (EVP_EncryptUpdate(ecb, stream, &outl, counters, (int)(16 * blocks)) != 1
                || (size_t)outl != 16 * blocks)
            return -1;
        for (j = 0; j < take; j++)
            buf[j] ^= stream[j];
        buf += take;
        n -= take;
    }
    return 0;
}

#endif
