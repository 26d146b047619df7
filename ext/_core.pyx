# cython: language_level=3, freethreading_compatible=False
# The native core of relay, one compilation unit. The included parts, in the order a reader
# needs them:
#   consts.pxi    limits, suites, SRTP status codes, drop reasons
#   srtp.pxi      SRTP/SRTCP transforms on raw buffers (nogil), packet index and replay window
#   keys.pxi      suites and key derivation
#   session.pxi   relay.srtp.Session: the per-packet Python API and its batch calls
#   rtx.pxi       the retransmission cache a NACK is answered from, and the NACK's format
#   connected.pxi connected per-receiver sockets: made, closed, and read through one epoll set
#   xdp.pxi       the AF_XDP path: a transmit ring past the IP stack (xsk.c), and the hops
#   table.pxi     RouteTable: meetings, participants, keys, addresses (changed between batches)
#   batch.pxi     RecvBatch/SendBatch: recvmmsg, sendmmsg, and frames for the AF_XDP ring
#   demux.pxi     Aside: STUN and DTLS set aside for the worker's Python side (RFC 7983)
#   fanout.pxi    Exports: the packets one worker passes to the others, and their format
#   reports.pxi   receiver reports: loss, jitter and round-trip time per receiver
#   delay.pxi     how long each relayed packet stayed in the relay, as a histogram
#   forward.pxi   Forwarder: a packet from recvmmsg to sendmmsg, without the GIL
# The debug build (RELAY_DEBUG=1, see setup.py) overrides the directives that setup.py passes.

cimport cython
from libc.stdint cimport int32_t, uint8_t, uint16_t, uint32_t

cdef extern from "debug.h":
    const int RELAY_DEBUG

from libcrypto cimport OPENSSL_VERSION_TEXT
from netio cimport *
from xsk cimport *

include "consts.pxi"
include "srtp.pxi"
include "keys.pxi"
include "session.pxi"
include "rtx.pxi"
include "connected.pxi"
include "xdp.pxi"
include "table.pxi"
include "batch.pxi"
include "demux.pxi"
include "fanout.pxi"
include "reports.pxi"
include "delay.pxi"
include "forward.pxi"

DEBUG_BUILD = bool(RELAY_DEBUG)
OPENSSL_VERSION = OPENSSL_VERSION_TEXT.decode()
