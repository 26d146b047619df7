# Limits, suite identifiers and status codes shared by every part of the core.

cdef enum:
    SRTP_MAX_PACKET = 65535     # SRTP travels in UDP: no datagram is larger
    SRTP_MAX_TAG = 16           # GCM; HMAC-SHA1 tags are 10 or 4 bytes
    SRTP_MAX_KEY = 32           # AES-256
    SRTP_MAX_SALT = 14          # AES-CM master and session salt; GCM uses 12
    SRTP_AUTH_KEY_LEN = 20      # HMAC-SHA1 session key (RFC 3711 section 8.2)
    SRTCP_TRAILER = 4           # E flag || 31-bit SRTCP index
    REPLAY_WINDOW_MIN = 64      # RFC 3711 section 3.3.2: "SRTP MUST use a window of at least 64"
    REPLAY_WINDOW_MAX = 1024
    REPLAY_WORDS_MAX = 16       # REPLAY_WINDOW_MAX / 64


cdef enum SrtpSuite:
    SUITE_AES_CM_128_HMAC_SHA1_80 = 1
    SUITE_AES_CM_128_HMAC_SHA1_32 = 2
    SUITE_AEAD_AES_128_GCM = 3
    SUITE_AEAD_AES_256_GCM = 4


# One code per reason a packet is refused. The forwarding loop counts drops under these, and
# Session turns them into exceptions (_raise_for in session.pxi). Zero means success.
cdef enum SrtpStatus:
    SRTP_OK = 0
    SRTP_ERR_MALFORMED = 1      # too short, not RTP/RTCP version 2, header past the end
    SRTP_ERR_AUTH = 2           # the authentication tag does not match
    SRTP_ERR_REPLAY = 3         # this index was seen (or, sending, already used) before
    SRTP_ERR_REPLAY_OLD = 4     # the index lies behind the replay window
    SRTP_ERR_NO_ROOM = 5        # the buffer has no room for the tag and trailer
    SRTP_ERR_INDEX_LIMIT = 6    # 2^48 SRTP or 2^31 SRTCP packets under one key: rekey
    SRTP_ERR_CRYPTO = 7         # OpenSSL refused an operation (not expected)


# The forwarding loop (batch.pxi, table.pxi, forward.pxi).
cdef enum:
    BATCH_MAX = 64          # datagrams per recvmmsg
    SEND_SLOTS = 1024       # datagrams a SendBatch holds (tests without a socket fill it)
    SEND_FLUSH = 256        # datagrams per sendmmsg in the loop
    SLOT_SIZE = 2048        # bytes per datagram slot
    # A receiver's copies of a burst as one message of several segments (batch.pxi, UDP GSO):
    # at most this many, of at most GSO_SEGMENT_MAX bytes each (what a 1,500-byte MTU carries
    # under IPv6 and UDP headers: a larger segment would be refused), GSO_BYTES_MAX in all
    # (an IPv4 datagram's most); GSO_CONTROL: room for the UDP_SEGMENT control message.
    GSO_SEGMENTS_MAX = 64
    GSO_SEGMENT_MAX = 1452
    GSO_BYTES_MAX = 65507
    GSO_CONTROL = 32
    # The most a packet can grow: GCM tag and SRTCP trailer for a receiver, from a sender
    # whose tag is 4 bytes.
    RELAY_OVERHEAD = 36
    MAX_STREAMS = 8         # streams one participant may declare
    MAX_CANDIDATES = 4      # participants sharing one SSRC whose tags one packet may try
    MAX_HOLDERS = 64        # of those, how many it looks at to choose them (table.pxi)
    # Index reservations (table.pxi, "Never the same index twice"): a receiver's stream is
    # sent indexes below a limit that the worker's ledger file holds durably; the loop asks
    # for more RESERVE_RTP beyond the highest sent once half the margin is used.
    RESERVE_RTP = 4096
    RESERVE_RTCP = 1024
    KEYFRAMES_PENDING = 256  # streams whose merged keyframe request waits (forward.pxi)
    PARK_PACKETS = 256      # packets held while their first reservation is made durable
    PARK_ENTRIES_MAX = 1 << 20  # copies waiting for one (a webinar's first packet, say)

# Receiver reports (reports.pxi).
cdef enum:
    SR_KEPT = 4             # sender reports per stream remembered, for round-trip times
    RR_BUCKETS = 8          # histogram buckets of what receiver reports say (and +Inf)
    RTT_UNKNOWN = 0xFFFFFFFF

# How long a packet stays in the relay (delay.pxi).
cdef enum:
    DELAY_BUCKETS = 22      # histogram buckets of the forwarding delay (and +Inf)
    # Room per received datagram for its control messages (batch.pxi): the receive timestamp
    # (SO_TIMESTAMPNS, a timespec: CMSG_SPACE(16) is 32) and slack for any other.
    STAMP_CONTROL = 128

# Seconds between keyframe requests passed to one stream's sender (forward.pxi); `relay serve
# --keyframe-interval` sets it.
cdef double KEYFRAME_INTERVAL = 0.5


cdef enum Role:
    ROLE_HOST = 0
    ROLE_PANELIST = 1
    ROLE_ATTENDEE = 2


# Why a packet (or one copy of it) was not forwarded. One vocabulary for the loop, the
# counters, the metrics (relay_packets_dropped_total{reason=...}) and the logs: DROP_NAMES
# below gives the label of each. A new reason is its code and its name here, and the place
# in the loop that counts it.
cdef enum:   # DropReason
    DROP_MALFORMED = 0      # not RTP/RTCP version 2, truncated, header past the end
    DROP_TOO_LARGE = 1      # larger than a slot can relay
    DROP_UNKNOWN_SOURCE = 2  # no participant declared this SSRC or has this address
    DROP_AUTH = 3           # the tag does not match the participant's uplink key
    DROP_REPLAY = 4         # seen before or older than the replay window
    DROP_NOT_ALLOWED = 5    # an attendee in a webinar may not send media
    DROP_MUTED = 6
    DROP_EJECTED = 7        # from or to an ejected participant
    DROP_ENDED = 8          # the meeting has ended
    DROP_LATE = 9           # sent under a ROC before this receiver's first packet of it
    DROP_NO_ADDRESS = 10    # the receiver's address is not known yet
    DROP_RATE_LIMITED = 11  # a PLI/FIR merged: one went to that stream's sender lately
    DROP_SEND_ERROR = 12    # sendmmsg refused it
    DROP_OVERFLOW = 13      # no send slot (only without a socket, in tests)
    DROP_CRYPTO = 14        # OpenSSL or memory failure (not expected)
    DROP_UNRESERVED = 15    # its index could not be reserved durably (the ledger failed)
    DROP_NO_CONSENT = 16    # the receiver's address has not shown that it wants media
    DROP_SIGNALLING_LIMIT = 17  # STUN or DTLS past the worker's budget for them (demux.pxi)
    DROP_COUNT = 18

DROP_NAMES = ("malformed", "too_large", "unknown_source", "auth", "replay", "not_allowed",
              "muted", "ejected", "ended", "late", "no_address", "rate_limited",
              "send_error", "overflow", "crypto", "unreserved", "no_consent",
              "signalling_limit")
assert len(DROP_NAMES) == DROP_COUNT, "a drop reason without its name (or the other way)"
