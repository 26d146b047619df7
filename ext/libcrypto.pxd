# OpenSSL libcrypto: only what the SRTP core uses. Every call here is made without the GIL.

from libc.stdint cimport uint8_t

cdef extern from "relay_openssl.h" nogil:
    const char* OPENSSL_VERSION_TEXT

    ctypedef struct EVP_CIPHER
    ctypedef struct EVP_CIPHER_CTX
    ctypedef struct ENGINE

    const EVP_CIPHER* EVP_aes_128_ctr()
    const EVP_CIPHER* EVP_aes_256_ctr()
    const EVP_CIPHER* EVP_aes_128_ecb()
    const EVP_CIPHER* EVP_aes_256_ecb()
    const EVP_CIPHER* EVP_aes_128_gcm()
    const EVP_CIPHER* EVP_aes_256_gcm()

    EVP_CIPHER_CTX* EVP_CIPHER_CTX_new()
    void EVP_CIPHER_CTX_free(EVP_CIPHER_CTX* ctx)
    int EVP_CipherInit_ex(EVP_CIPHER_CTX* ctx, const EVP_CIPHER* cipher, ENGINE* impl,
                          const unsigned char* key, const unsigned char* iv, int enc)
    int EVP_CipherUpdate(EVP_CIPHER_CTX* ctx, unsigned char* out, int* outl,
                         const unsigned char* inp, int inl)
    int EVP_CipherFinal_ex(EVP_CIPHER_CTX* ctx, unsigned char* out, int* outl)
    int EVP_CIPHER_CTX_ctrl(EVP_CIPHER_CTX* ctx, int type, int arg, void* ptr)
    int EVP_CIPHER_CTX_set_padding(EVP_CIPHER_CTX* ctx, int pad)

    enum:
        EVP_CTRL_AEAD_GET_TAG
        EVP_CTRL_AEAD_SET_TAG

    int CRYPTO_memcmp(const void* a, const void* b, size_t n)
    void OPENSSL_cleanse(void* ptr, size_t n)

    ctypedef struct SHA_CTX:
        pass
    int SHA1_Init(SHA_CTX* c)
    int SHA1_Update(SHA_CTX* c, const void* data, size_t n)
    int SHA1_Final(unsigned char* md, SHA_CTX* c)


cdef extern from "aes_ctr.h" nogil:
    int relay_ctr_xor(EVP_CIPHER_CTX* ecb, const uint8_t* iv, uint8_t* buf, size_t n)
