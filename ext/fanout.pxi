# Fan-out across workers (docs/ARCHITECTURE.md, "The processes"; docs/wire.md): the records
# one worker passes to the others.
#
# A participant is homed on one worker, which alone receives from it and sends to it. When a
# packet arrives for a meeting that also has members homed on other workers (Meeting.nremote),
# the receiving worker serves its own members, then appends the packet's plaintext, once, to
# its Exports. Between batches the worker publishes each meeting's records as one ZeroMQ
# message (topic: the meeting id) and every worker with members in that meeting protects and
# sends the copies for its own (Forwarder.run_import).
#
# A meeting the host records also gets its records handed out, to the worker's recorder
# (records_to_pcap below, relay/recording.py).
#
# A record is a 24-byte header and the plaintext:
#
#   offset  size  field
#   0       1     kind: EXPORT_RTP, EXPORT_RTCP (a sender report), EXPORT_FEEDBACK or EXPORT_NACK
#   1       1     0
#   2       2     plaintext length, little-endian (workers are processes on one host)
#   4       4     meeting id
#   8       4     sender's participant id (FEEDBACK, NACK: the sender it is for)
#   12      4     SSRC the sender declared (RTP) or sent the report from (RTCP); FEEDBACK, NACK:
#                 the stream it is about
#   16      8     the packet's SRTP index, as the sender's home worker estimated it (RTP)
#   24      len   plaintext RTP or RTCP
#
# The importing worker finds the sender by SSRC and checks its id, and applies its own view of
# mute, eject and end, so a change that reaches the workers at slightly different moments never
# lets media through where the local table says no.
#
# A FEEDBACK record is a keyframe request (PLI or FIR) from a receiver on one worker for a
# sender homed on another: only the sender's home worker may protect RTCP for it (its SRTCP
# index is that worker's), so it is passed there, and merged there with every other request
# for that stream (forward.pxi, "Keyframe requests"). A NACK record is the relay's own NACK
# (rtx.pxi) for packets no cache on the receiver's worker held, for the sender's home worker
# to pass on. Recordings leave both out.

from libc.stdint cimport uint64_t
from libc.string cimport memset

cdef enum:
    EXPORT_RTP = 0
    EXPORT_RTCP = 1
    EXPORT_FEEDBACK = 2
    EXPORT_NACK = 3
    EXPORT_HEADER = 24
    EXPORT_CAPACITY = BATCH_MAX * (SLOT_SIZE + EXPORT_HEADER)


ctypedef struct ExportRecord:
    uint8_t kind
    uint16_t length
    uint32_t meeting
    uint32_t sender
    uint32_t ssrc
    uint64_t index
    const uint8_t* plain


@cython.final
cdef class Exports:
    """The records of one receive batch, grouped in runs of one meeting (a segment each)."""

    cdef uint8_t* buf
    cdef size_t length
    cdef int nsegments
    cdef uint32_t seg_meeting[BATCH_MAX * 2]
    cdef size_t seg_start[BATCH_MAX * 2 + 1]

    def __cinit__(self):
        self.buf = <uint8_t*>malloc(EXPORT_CAPACITY)
        if self.buf == NULL:
            raise MemoryError()

    def __dealloc__(self):
        free(self.buf)

    cdef bint add(self, uint8_t kind, uint32_t meeting, uint32_t sender, uint32_t ssrc,
                  uint64_t index, const uint8_t* plain, size_t plain_len) noexcept nogil:
        """Append a record; False if this batch's buffer is full (the caller counts a drop)."""
        cdef uint8_t* r
        if (self.length + EXPORT_HEADER + plain_len > EXPORT_CAPACITY
                or plain_len > 0xFFFF):
            return False
        if self.nsegments == 0 or self.seg_meeting[self.nsegments - 1] != meeting:
            if self.nsegments == BATCH_MAX * 2:
                return False
            self.seg_meeting[self.nsegments] = meeting
            self.seg_start[self.nsegments] = self.length
            self.nsegments += 1
        r = self.buf + self.length
        r[0] = kind
        r[1] = 0
        r[2] = <uint8_t>(plain_len & 0xFF)
        r[3] = <uint8_t>(plain_len >> 8)
        memcpy(r + 4, &meeting, 4)
        memcpy(r + 8, &sender, 4)
        memcpy(r + 12, &ssrc, 4)
        memcpy(r + 16, &index, 8)
        memcpy(r + EXPORT_HEADER, plain, plain_len)
        self.length += EXPORT_HEADER + plain_len
        return True

    def take(self):
        """[(meeting id, records)] of the batch, one item per run of one meeting; empties it."""
        cdef int i
        cdef size_t end
        out = []
        for i in range(self.nsegments):
            end = self.seg_start[i + 1] if i + 1 < self.nsegments else self.length
            out.append((self.seg_meeting[i],
                        (<char*>self.buf)[self.seg_start[i]:end]))
        self.nsegments = 0
        self.length = 0
        return out

    def __len__(self):
        return self.nsegments


cdef inline size_t export_next(const uint8_t* data, size_t size, size_t off,
                               ExportRecord* rec) noexcept nogil:
    """Decode the record at `off`; the offset of the next one, or 0 if it is malformed."""
    cdef size_t plain_len
    if off + EXPORT_HEADER > size:
        return 0
    plain_len = <size_t>data[off + 2] | (<size_t>data[off + 3] << 8)
    if off + EXPORT_HEADER + plain_len > size or data[off] > EXPORT_NACK:
        return 0
    rec.kind = data[off]
    rec.length = <uint16_t>plain_len
    memcpy(&rec.meeting, data + off + 4, 4)
    memcpy(&rec.sender, data + off + 8, 4)
    memcpy(&rec.ssrc, data + off + 12, 4)
    memcpy(&rec.index, data + off + 16, 8)
    rec.plain = data + off + EXPORT_HEADER
    return off + EXPORT_HEADER + plain_len


# --- recording: records as pcap -------------------------------------------------------------
#
# A recorded meeting's records (the same ones passed between workers) become pcap packet
# records (LINKTYPE_RAW: an IPv4 header, a UDP header, the plaintext), which Wireshark opens
# and plays: RTP to UDP port 5004, RTCP to 5005 (the ports RFC 3551 suggests; "Decode As"
# RTP, or its RTP heuristic). Addresses are synthetic: the sender appears as
# 10.a.b.c from its participant id, never as the address it really sent from.

cdef enum:
    PCAP_RECORD = 16
    PCAP_IP = 20
    PCAP_UDP = 8
    PCAP_PORT_RTP = 5004


PCAP_HEADER = (b"\xd4\xc3\xb2\xa1"      # magic, little-endian, microseconds
               b"\x02\x00\x04\x00"       # version 2.4
               b"\x00\x00\x00\x00\x00\x00\x00\x00"
               b"\xff\xff\x00\x00"       # snaplen 65535
               b"\x65\x00\x00\x00")      # LINKTYPE_RAW (101)


cdef inline void _store_be16(uint8_t* p, uint16_t v) noexcept nogil:
    p[0] = <uint8_t>(v >> 8)
    p[1] = <uint8_t>(v & 0xFF)


def records_to_pcap(const uint8_t[::1] records not None, double when):
    """The pcap packet records of a batch of export records, all stamped `when` (seconds
    since the epoch). Malformed input ends the conversion (what came before is kept)."""
    cdef size_t size = records.shape[0], off = 0, nxt, total = 0, at = 0
    cdef ExportRecord rec
    cdef uint8_t* o
    cdef uint32_t sec = <uint32_t>when, usec = <uint32_t>((when - <double>sec) * 1e6)
    cdef uint32_t length, checksum, i
    cdef uint16_t port
    if size == 0:
        return b""
    while off < size:
        nxt = export_next(&records[0], size, off, &rec)
        if nxt == 0:
            break
        if rec.kind < EXPORT_FEEDBACK:      # requests for a sender are not the meeting's media
            total += PCAP_RECORD + PCAP_IP + PCAP_UDP + rec.length
        off = nxt
    out = bytearray(total)
    o = <uint8_t*><char*>out
    off = 0
    while off < size and at < total:
        nxt = export_next(&records[0], size, off, &rec)
        off = nxt
        if rec.kind >= EXPORT_FEEDBACK:
            continue
        length = PCAP_IP + PCAP_UDP + rec.length
        memcpy(o + at, &sec, 4)
        memcpy(o + at + 4, &usec, 4)
        memcpy(o + at + 8, &length, 4)
        memcpy(o + at + 12, &length, 4)
        at += PCAP_RECORD
        memset(o + at, 0, PCAP_IP + PCAP_UDP)
        o[at] = 0x45                            # IPv4, 20-byte header
        _store_be16(o + at + 2, <uint16_t>length)
        o[at + 8] = 64                          # TTL
        o[at + 9] = 17                          # UDP
        o[at + 12] = 10
        o[at + 13] = <uint8_t>(rec.sender >> 16)
        o[at + 14] = <uint8_t>(rec.sender >> 8)
        o[at + 15] = <uint8_t>rec.sender
        o[at + 16] = 10
        o[at + 17] = 255
        o[at + 18] = 255
        o[at + 19] = 254
        checksum = 0
        for i in range(0, PCAP_IP, 2):
            checksum += (<uint32_t>o[at + i] << 8) | o[at + i + 1]
        while checksum >> 16:
            checksum = (checksum & 0xFFFF) + (checksum >> 16)
        _store_be16(o + at + 10, <uint16_t>(~checksum & 0xFFFF))
        port = PCAP_PORT_RTP + (1 if rec.kind == EXPORT_RTCP else 0)
        _store_be16(o + at + PCAP_IP, port)
        _store_be16(o + at + PCAP_IP + 2, port)
        _store_be16(o + at + PCAP_IP + 4, <uint16_t>(PCAP_UDP + rec.length))
        at += PCAP_IP + PCAP_UDP
        memcpy(o + at, rec.plain, rec.length)
        at += rec.length
    return bytes(out)
