/* The one place the native core includes OpenSSL.
 *
 * HMAC-SHA1 for SRTP is computed from two SHA-1 states precomputed per key (the inner and the
 * outer padded key, RFC 2104 section 2). Copying a 96-byte SHA_CTX per packet is what keeps
 * HMAC-SHA1-80 cheap on short packets; OpenSSL 3 marks the low-level SHA1_* calls deprecated
 * (EVP_MAC has no way to clone a keyed state without allocating), so the warning is silenced
 * here, before any OpenSSL header is seen, and nowhere else.
 */
#ifndef RELAY_OPENSSL_H
#define RELAY_OPENSSL_H

#define OPENSSL_SUPPRESS_DEPRECATED 1

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/sha.h>
#include <openssl/opensslv.h>

#endif
