# cython: language_level=3, freethreading_compatible=False
# The native core of relay, one compilation unit. The included parts follow a packet:
# constants, then SRTP (key setup, transforms), then the Python face of SRTP sessions.
# The debug build (RELAY_DEBUG=1, see setup.py) overrides the directives that setup.py passes.

cimport cython
from libc.stdint cimport int32_t, uint8_t, uint16_t, uint32_t

cdef extern from "debug.h":
    const int RELAY_DEBUG

from libcrypto cimport OPENSSL_VERSION_TEXT

include "consts.pxi"
include "srtp.pxi"
include "keys.pxi"
include "session.pxi"

DEBUG_BUILD = bool(RELAY_DEBUG)
OPENSSL_VERSION = OPENSSL_VERSION_TEXT.decode()
