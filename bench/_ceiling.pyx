# Python handle on the C ceiling (ceiling.c) for the benchmarks: one call per batch.

from libc.stdint cimport uint8_t, uint32_t


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
