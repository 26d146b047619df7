# The routing table of one worker: meetings, participants, their keys, addresses and streams.
#
# Changes (join, leave, eject, mute, end) arrive from the control plane and are applied by
# RouteTable's Python methods between batches, with the GIL held. The forwarding loop
# (forward.pxi) reads the table without the GIL and changes only what packets may change:
# a participant's latched address, the SRTP state of its streams, and the reservations it
# asks for. Nothing else touches the table, so no locks.
#
# Never the same index twice. SRTP's keystream (AES-CM) and nonce (AES-GCM) are functions of
# (key, SSRC, index): two different packets protected at one such triple leak their XOR, and
# with GCM the authentication key too (RFC 3711 section 9.1, RFC 7714 section 14). The relay
# protects with each receiver's own downlink key, so the invariant is per receiver and SSRC:
#
#   1. A receiver has one OutStream per SSRC of its meeting (`Meeting.slot_ssrcs`: a sender
#      that declares an SSRC the meeting had before gets that SSRC's old slot), and it lives
#      as long as the receiver's key: a new source for the SSRC (an expelled presenter's
#      successor, a rejoin, a role change) does not start it again.
#   2. An OutStream maps the sender's index to the receiver's: out = index + delta. The first
#      source of a fresh stream keeps its sequence numbers (delta = minus its ROC bits: the
#      receiver's ROC starts at 0, as RFC 3711 section 3.3.1 expects of a new stream); any
#      later source continues right after `next`, the lowest index never sent, and the
#      sequence number is rewritten to match (SFUs that switch sources do the same), so the
#      receiver's own ROC estimate follows. `tx` refuses a repeated or too old index: the
#      last guard.
#   3. What outlives the table goes to the ledger: a participant that leaves (a role change
#      leaves and joins again) leaves its streams' `next`, reservation and SRTCP index in
#      `self.ledger`, keyed by its id and a fingerprint of its key, and a join takes them
#      back. A snapshot applied again closes and rebuilds every meeting the same way.
#   4. Across a crash (durable tables: the worker's): an index at or above `limit` is never
#      used. Limits rise only through ledger_commit(), after the records ledger_pending()
#      returned are on disk (relay/worker.py appends and fdatasyncs them), and only to the
#      values those records hold (`writing`): a stream that asks for more while they are
#      written, which its packets do when the worker writes them beside the media, asks
#      again in the next round (one round at a time; ledger_abort if the write failed). A
#      restarted worker loads them, and each stream continues at its limit: above anything
#      sent before, at most
#      RESERVE_RTP past the receiver's last index, which its ROC estimate follows (< 2^15).
#      A packet that would need more than the limit is parked (forward.pxi) until its
#      reservation is durable, so a stream's first packet waits for one fdatasync, not lost.
#
# SRTCP indexes, one counter per receiver across all SSRCs, follow the same ledger (kind 'C');
# they are explicit in every packet, so a jump costs nothing. So does consent (kind 'A'): an
# address given at join that asked for media (its own caller, or an authenticated packet from
# it) stays confirmed across a control plane's restart, whose snapshots cannot tell.

from libc.stdlib cimport calloc, free, malloc, realloc

import hashlib as _hashlib
import struct as _struct

# Ledger and stream-state records (`ledger_pending`, `ledger_records`, `stream_state`,
# `ledger_load`): kind, meeting, participant, key fingerprint, SSRC, value; little-endian.
#   b"O": the receiver's stream of that SSRC may use indexes below value
#   b"C": the receiver's SRTCP indexes below value may be used
#   b"S": the sender's stream of that SSRC was received up to index value (uplink key)
#   b"A": the participant's address (fingerprint: `_address_fingerprint`) consented
_RECORD = _struct.Struct("<c3xIIQIQ")
LEDGER_RECORD_SIZE = _RECORD.size
cdef enum:
    RECORD_BYTES = 32           # _RECORD.size
cdef uint64_t UNLIMITED_INDEX = 0xFFFFFFFFFFFFFFFF   # _UNLIMITED: a stream not reserved at all
INDEX_RESERVE = RESERVE_RTP     # how far past its highest index a receiver's stream is reserved
_UNLIMITED = 0xFFFFFFFFFFFFFFFF


def key_fingerprint(key):
    """A 64-bit name for a master key, so that ledger records of one participant id under
    an earlier key (a promotion issues new keys) are not applied to the new one."""
    return int.from_bytes(_hashlib.blake2b(bytes(key), digest_size=8,
                                           person=b"relay-ledger").digest(), "little")


cdef inline void _record_at(uint8_t* at, uint8_t kind, uint32_t meeting, uint32_t pid,
                            uint64_t fp, uint32_t ssrc, uint64_t value) noexcept nogil:
    """One record as _RECORD packs it, written in C: a thousand receivers' reservations fall
    due together, and packing each through struct held the forwarding loop for milliseconds
    (docs/ARCHITECTURE.md, "How long a packet stays in the relay")."""
    cdef int i
    at[0] = kind
    at[1] = at[2] = at[3] = 0
    for i in range(4):
        at[4 + i] = <uint8_t>(meeting >> (8 * i))
        at[8 + i] = <uint8_t>(pid >> (8 * i))
        at[20 + i] = <uint8_t>(ssrc >> (8 * i))
    for i in range(8):
        at[12 + i] = <uint8_t>(fp >> (8 * i))
        at[24 + i] = <uint8_t>(value >> (8 * i))


cdef uint32_t _reservations(const Meeting* m, Participant* p, bint asked,
                            uint8_t* out) noexcept nogil:
    """p's index reservations as O and C records at out (or only counted, if out is NULL):
    those it asked for since the last round (asked), or those already durable. How many.
    Asked ones written at out are what the round commits: each stream keeps the value its
    record holds as `writing` (ledger_commit), from this one place."""
    cdef uint32_t s, n = 0
    cdef uint64_t value
    for s in range(min(p.out_cap, m.nstreams)):
        if asked:
            value = p.out[s].wanted if p.out[s].wanted > p.out[s].limit else 0
        else:
            value = p.out[s].limit if p.out[s].limit < UNLIMITED_INDEX else 0
        if value:
            if out != NULL:
                _record_at(out + RECORD_BYTES * n, c'O', m.id, p.id, p.down_fp,
                           m.slot_ssrcs[s], value)
                if asked:
                    p.out[s].writing = value
            n += 1
    if asked:
        value = p.rtcp_wanted if p.rtcp_wanted > p.rtcp_limit else 0
    else:
        value = p.rtcp_limit if p.rtcp_limit < <uint32_t>0xFFFFFFFF else 0
    if value:
        if out != NULL:
            _record_at(out + RECORD_BYTES * n, c'C', m.id, p.id, p.down_fp, 0, value)
            if asked:
                p.rtcp_writing = <uint32_t>value
        n += 1
    return n


cdef inline void _index_restore(SrtpIndex* t, uint64_t highest) noexcept:
    """Resume an index as of `highest`, every index at or below it taken as seen."""
    t.started = True
    t.highest = highest
    memset(t.seen, 0xFF, sizeof(t.seen))


# PF_HAS_ADDRESS: where it receives is known and wanted: latched from an authenticated packet,
# or given at join by a caller at that address (consent). PF_ADDRESS_PENDING: given at join by
# a caller elsewhere; nothing is sent there until an authenticated packet from that IP shows it
# wants it (RFC 7675's consent, for clients without ICE).
cdef enum:
    PF_MUTED = 1
    PF_EJECTED = 2
    PF_HAS_ADDRESS = 4
    PF_REMOTE = 8           # homed on another worker: that worker sends to it, not this one
    PF_ADDRESS_PENDING = 16
    PF_QUEUED = 32          # in the reservation queue
    PF_CONSENT_NEW = 64     # its address consented since the ledger last heard of it
    PF_GIVEN = 128          # its address is the one given at join (not moved by a packet)


ctypedef struct SenderStream:
    uint32_t ssrc
    uint32_t slot           # the meeting's stream slot of this SSRC: index into each out[]
    SrtpIndex rtp_rx        # ROC and replay window of what the participant sends
    SrtpIndex rtcp_rx       # SRTCP sent from this SSRC
    double feedback_at      # when a PLI/FIR for this stream last went to the sender (now units)
    bint feedback_pending   # one was merged since: a keyframe request follows (forward.pxi)
    bint video              # a video stream: a receiver's first packet of it asks a keyframe
    # The sender reports of this stream lately forwarded: the middle 32 bits of each one's NTP
    # timestamp (what a receiver's report block names as LSR) and when (reports.pxi).
    uint32_t sr_ntp[SR_KEPT]
    double sr_at[SR_KEPT]
    uint8_t sr_next
    RtxCache* cache         # what was forwarded, for NACKs (rtx.pxi); NULL until one names it


ctypedef struct OutStream:
    uint8_t route           # ROUTE_*: where this stream goes (resolved at its first packet)
    uint8_t pt              # the payload type the receiver knows it by, or PT_KEEP (with route)
    bint bound              # delta maps `source`'s indexes
    uint16_t port           # network order, with ROUTE_PORT
    uint32_t source         # participant id whose packets delta maps,
    uint32_t source_key     # under that uplink key (low bits of its fingerprint)
    uint64_t delta          # out index = sender index + delta (modulo 2^64)
    uint64_t next           # the lowest index not sent yet (0: a fresh stream)
    uint64_t limit          # indexes at or above it are not reserved durably
    uint64_t wanted         # the limit asked of the ledger, not yet durable
    uint64_t writing        # the limit the ledger round in flight writes (0: none)
    uint64_t resend_from    # the first index of the present mapping: retransmissions (rtx.pxi)
    SrtpIndex tx            # indexes sent to this receiver: a repeat is refused


ctypedef struct RecvPort:
    uint32_t ssrc
    uint16_t port           # host order; 0: the receiver's address (a WebRTC peer's, bundled)
    uint8_t pt              # the payload type its SDP gave the stream's codec, or PT_KEEP


cdef enum:
    ROUTE_UNKNOWN = 0
    ROUTE_ADDRESS = 1       # to the receiver's address
    ROUTE_PORT = 2          # to its host, on the port its SDP gave this stream
    ROUTE_SKIP = 3          # a stream its SDP does not describe: it could not play it
    MAX_RECV_PORTS = 16
    PT_KEEP = 0xFF          # send a stream with the payload type its sender used


ctypedef struct Participant:
    uint32_t id             # the control plane's participant number
    int32_t meeting         # meeting slot; -1 when this slot is free
    uint8_t role            # Role
    uint8_t flags           # PF_*
    uint8_t nstreams
    bint has_hint
    SenderStream* streams   # what it declared it sends (NULL for a listener)
    SrtpIndex rtcp_rx_other  # SRTCP from an SSRC it did not declare (receiver reports)
    uint32_t rtcp_tx_next   # SRTCP index of the next RTCP we send it
    uint32_t rtcp_limit     # SRTCP indexes at or above it are not reserved durably
    uint32_t rtcp_wanted
    uint32_t rtcp_writing   # as OutStream.writing
    uint64_t down_fp        # key_fingerprint of the downlink and uplink master keys
    uint64_t up_fp
    SrtpContext* up         # unprotects what it sends; derived on its first packet
    SrtpContext* down       # protects what it receives
    const SuiteSpec* spec
    uint8_t up_master[SRTP_MAX_KEY + SRTP_MAX_SALT]
    uint8_t hint[16]        # the IP it joined from, IPv4-mapped (table_candidates)
    sockaddr_in6 addr       # where it receives (sockaddr_in in the first bytes for IPv4)
    socklen_t addr_len
    int conn_fd             # a socket connected to addr (connected.pxi); -1: none
    bint conn_tried         # one was tried for this addr: none is tried again until it moves
    relay_xsk_hop* hop      # its frames' header on the AF_XDP path (xdp.pxi); NULL: none
    OutStream* out          # per stream slot of the meeting
    uint32_t out_cap
    uint32_t out_init       # slots of out[] set up (_init_out) so far
    RecvPort* recv_ports    # per stream, for receivers whose SDP puts each on its own port
    uint8_t nrecv_ports
    bint filtered           # it gets only the streams recv_ports lists (maybe none)
    uint64_t packets_in, bytes_in, packets_out, bytes_out
    # Its retransmission budget (rtx.pxi): the second it counts from, what it was sent by
    # then, what it was sent again since.
    double rtx_window_at
    uint64_t rtx_window_out
    uint32_t rtx_window_sent
    # What its latest receiver report said of a stream it gets (reports.pxi): fraction lost
    # (of 256), interarrival jitter and round-trip time in microseconds (RTT_UNKNOWN: none);
    # `rr_fresh` until the worker has reported it.
    uint8_t rr_fraction
    bint rr_fresh
    uint32_t rr_jitter_us
    uint32_t rr_rtt_us


ctypedef struct Meeting:
    uint32_t id
    bint used
    bint webinar            # attendees may not send
    bint ended
    uint32_t* members       # participant slots
    uint32_t nmembers
    uint32_t members_cap
    uint32_t* slot_ssrcs    # the SSRC of each stream slot, never reused for another SSRC
    uint32_t nstreams       # stream slots handed out
    uint32_t slots_cap
    uint32_t nremote        # members homed on other workers: packets go to them too (fanout.pxi)
    bint recording          # the host records it: its packets go to the worker's recorder too


ctypedef struct Counters:
    uint64_t packets_in, bytes_in, packets_out, bytes_out
    uint64_t rtcp_terminated    # receiver reports and other RTCP that ends at the relay
    uint64_t latched            # addresses learnt or moved by authenticated packets
    uint64_t exported           # packets passed on to the other workers (fanout.pxi)
    uint64_t imported           # packets taken from the other workers for local receivers
    uint64_t parked             # copies held until their index reservation was durable
    uint64_t gso_segments       # copies sent as segments of a message of several (batch.pxi)
    uint64_t gso_refused        # such messages the kernel refused: grouping was turned off
    uint64_t nacks              # generic NACKs received (RFC 4585 section 6.2.1)
    uint64_t rtx[RTX_OUTCOMES]  # what became of each packet they named (rtx.pxi)
    # Receiver report blocks by what they say (reports.pxi): a histogram each of the fraction
    # lost, the jitter and the round-trip time (cumulative at the edges RR_*_EDGES; the last
    # bucket is +Inf), the sums in millionths and microseconds.
    uint64_t rr_loss[RR_BUCKETS + 1]
    uint64_t rr_jitter[RR_BUCKETS + 1]
    uint64_t rr_rtt[RR_BUCKETS + 1]
    uint64_t rr_loss_sum_ppm, rr_jitter_sum_us, rr_rtt_sum_us
    # Relayed packets by how long each stayed in the relay (delay.pxi): the same form, at the
    # edges DELAY_EDGES, with the sum in microseconds.
    uint64_t delay[DELAY_BUCKETS + 1]
    uint64_t delay_sum_us
    uint64_t dropped[DROP_COUNT]


ctypedef struct Queued:
    uint32_t slot           # participant slot waiting for a reservation
    uint32_t id             # its id then: a slot freed and taken again is not confused
    bint consent            # the round in flight writes its address's consent record


ROLE_NAMES = ("host", "panelist", "attendee")


# --- addresses as hash keys: 16 bytes of IPv6 (IPv4 mapped) and the port ---------------------

ctypedef struct AddrKey:
    uint8_t b[18]


cdef inline bint addr_key(const void* sa, socklen_t n, AddrKey* key) noexcept nogil:
    cdef const sockaddr_in* v4 = <const sockaddr_in*>sa
    cdef const sockaddr_in6* v6 = <const sockaddr_in6*>sa
    cdef const uint8_t* ip
    memset(key.b, 0, 18)
    if v4.sin_family == AF_INET and n >= sizeof(sockaddr_in):
        key.b[10] = 0xFF
        key.b[11] = 0xFF
        memcpy(&key.b[12], &v4.sin_addr, 4)
        memcpy(&key.b[16], &v4.sin_port, 2)
        return True
    if v6.sin6_family == AF_INET6 and n >= sizeof(sockaddr_in6):
        memcpy(key.b, &v6.sin6_addr, 16)
        memcpy(&key.b[16], &v6.sin6_port, 2)
        return True
    return False


cdef inline uint32_t addr_hash(const AddrKey* key) noexcept nogil:
    cdef uint32_t h = 2166136261u   # FNV-1a
    cdef int i
    for i in range(18):
        h = (h ^ key.b[i]) * 16777619u
    return h


ctypedef struct AddrEntry:
    AddrKey key
    int32_t slot            # participant slot; -1 empty, -2 deleted


ctypedef struct SsrcEntry:
    uint32_t ssrc
    int32_t slot            # participant slot; -1 empty
    uint32_t stream         # index into that participant's streams


@cython.final
cdef class RouteTable:
    """The routing state of one worker. Python methods change it between batches.

    Args:
        durable: reserve indexes through the ledger (a worker with a ledger file). Without,
            limits are unbounded and continuity holds only as long as the table lives.
    """

    cdef Participant* parts
    cdef uint32_t parts_cap
    cdef uint32_t* free_parts
    cdef uint32_t nfree_parts
    cdef Meeting* meetings
    cdef uint32_t meetings_cap
    cdef SsrcEntry* ssrcs       # every declared SSRC; rebuilt when senders change
    cdef uint32_t ssrcs_cap     # power of two
    cdef AddrEntry* addrs       # every known address; the loop inserts and deletes in place
    cdef uint32_t addrs_cap     # power of two, at least twice the participants
    cdef uint32_t addrs_deleted
    cdef Counters stats
    cdef Connections conns          # the receivers' connected sockets (connected.pxi)
    cdef XdpPath xdp                # the AF_XDP socket and the receivers' hops (xdp.pxi)
    cdef dict participant_slots     # participant id -> slot
    cdef dict meeting_slots         # meeting id -> slot
    cdef readonly bint durable
    cdef uint32_t probe_turn        # rotates the order of candidates for a shared SSRC
    cdef Queued* queue              # participants whose reservations wait for the ledger
    cdef uint32_t nqueue
    cdef uint32_t queue_cap
    cdef uint32_t round_len         # queue[:round_len]: the ledger round in flight (its records)
    cdef bint round_given           # ledger_pending gave a round not yet committed or aborted
    cdef uint32_t* newly_latched    # ids whose address became known since take_latched()
    cdef uint32_t nlatched
    cdef uint32_t latched_cap
    # What outlives a participant's place in the table (see the top of this file):
    # (kind, participant, fingerprint, ssrc) -> [next or highest, limit, meeting]
    cdef public dict ledger

    def __cinit__(self, bint durable=False):
        memset(&self.stats, 0, sizeof(Counters))
        conn_init(&self.conns)
        xdp_init(&self.xdp)
        self.participant_slots = {}
        self.meeting_slots = {}
        self.durable = durable
        self.ledger = {}

    def __dealloc__(self):
        cdef uint32_t i
        for i in range(self.parts_cap):
            if self.parts[i].meeting >= 0:
                self._free_participant(&self.parts[i])
        for i in range(self.meetings_cap):
            free(self.meetings[i].members)
            free(self.meetings[i].slot_ssrcs)
        free(self.parts)
        free(self.free_parts)
        free(self.meetings)
        free(self.ssrcs)
        free(self.addrs)
        free(self.queue)
        free(self.newly_latched)
        conn_stop(&self.conns)
        xdp_stop(&self.xdp)

    def __len__(self):
        return len(self.participant_slots)

    # -- meetings ----------------------------------------------------------------------------

    def open_meeting(self, uint32_t meeting_id, mode="meeting"):
        """Open a meeting ("meeting": everyone may send; "webinar": attendees only listen)."""
        cdef uint32_t slot
        cdef Meeting* m
        if mode not in ("meeting", "webinar"):
            raise ValueError(f"mode must be 'meeting' or 'webinar', got {mode!r}")
        if meeting_id in self.meeting_slots:
            m = &self.meetings[<uint32_t>self.meeting_slots[meeting_id]]
            m.webinar = mode == "webinar"
            return
        cdef uint32_t i
        slot = self.meetings_cap
        for i in range(self.meetings_cap):
            if not self.meetings[i].used:
                slot = i
                break
        if slot == self.meetings_cap:
            self._grow_meetings()
        m = &self.meetings[slot]
        memset(m, 0, sizeof(Meeting))
        m.id = meeting_id
        m.used = True
        m.webinar = mode == "webinar"
        self.meeting_slots[meeting_id] = slot

    def set_recording(self, uint32_t meeting_id, bint on):
        """While on, the meeting's packets are also handed out as records (take_exports),
        which the worker writes to the meeting's recording (relay/recording.py)."""
        self.meetings[self._meeting_slot(meeting_id)].recording = on

    def end_meeting(self, uint32_t meeting_id):
        """Stop all media of a meeting at once; its participants stay until they leave."""
        self.meetings[self._meeting_slot(meeting_id)].ended = True

    def close_meeting(self, uint32_t meeting_id):
        """Take a meeting and everyone in it out of the table. What its receivers were sent
        stays in the ledger (a snapshot applied again rebuilds the meeting from it);
        `ledger_prune` forgets meetings that do not come back."""
        cdef uint32_t slot = self._meeting_slot(meeting_id)
        cdef Meeting* m = &self.meetings[slot]
        while m.nmembers:
            self.leave(self.parts[m.members[m.nmembers - 1]].id)
        free(m.members)
        free(m.slot_ssrcs)
        memset(m, 0, sizeof(Meeting))
        del self.meeting_slots[meeting_id]

    # -- participants ------------------------------------------------------------------------

    def join(self, uint32_t participant_id, uint32_t meeting_id, role, suite,
             uplink, downlink, ssrcs=(), address=None, bint local=True, receive_ports=(),
             bint address_confirmed=True, source_hint=None, payload_types=None,
             video_ssrcs=()):
        """Add a participant.

        Args:
            role: "host", "panelist" or "attendee".
            suite: its SRTP suite; uplink/downlink: master key || salt for what it sends and
                what it receives.
            ssrcs: the SSRCs it will send (at most MAX_STREAMS).
            address: (ip, port) where it receives, for clients that only listen; otherwise
                learnt from its first authenticated packet.
            address_confirmed: whether that address asked for media (the caller of the join
                was there). If not, nothing is sent to it until an authenticated packet from
                its IP confirms it (RFC 7675's consent, for clients without ICE).
            receive_ports: [(ssrc, port)] for a receiver whose SDP describes each stream on a
                port of its own (ffmpeg reads one stream per m= line): stream `ssrc` goes to
                that port of its address, its RTCP to port + 1, and streams not listed (it
                could not play them) are not sent to it at all.
            payload_types: [(ssrc, pt)] for a receiver whose SDP answer placed each stream it
                can play under a payload type of its own (a WebRTC viewer: RFC 3264 section
                6.1, the answerer sends with the offerer's numbers): stream `ssrc` goes to its
                address with that payload type, and streams not listed not at all (an empty
                list: nothing at all, as for a WHIP publisher). None: every stream, as sent.
                Not with receive_ports.
            video_ssrcs: those of `ssrcs` that are video: a receiver's first packet of one
                asks its sender for a keyframe, so it need not wait for the next (forward.pxi).
            local: whether it is homed on this worker. Another worker sends to a participant
                that is not; this one only knows its keys and SSRCs (its packets may still
                arrive here) and passes its meeting's media on (fanout.pxi).
            source_hint: the IP it joined from; among several participants that declared
                one SSRC, those whose hint matches a packet's source are tried first.
        """
        cdef uint32_t mslot = self._meeting_slot(meeting_id)
        cdef const SuiteSpec* spec = _suite_spec(suite)
        cdef const uint8_t[::1] up = bytes(uplink)
        cdef const uint8_t[::1] down = bytes(downlink)
        cdef list ssrc_list = [int(s) for s in ssrcs]
        cdef uint32_t slot, i, nstreams_before
        cdef Participant* p
        cdef Meeting* m
        cdef bytes sockaddr = None
        cdef bytes hint = None
        cdef size_t need = spec.key_len + spec.salt_len
        if participant_id in self.participant_slots:
            raise ValueError(f"participant {participant_id} has already joined")
        if role not in ROLE_NAMES:
            raise ValueError(f"role must be one of {ROLE_NAMES}, got {role!r}")
        if <size_t>up.shape[0] != need or <size_t>down.shape[0] != need:
            raise ValueError(f"{suite} keys are {need} bytes (master key || salt)")
        cdef list ports = [(int(x), int(y), PT_KEEP) for x, y in receive_ports]
        if len(ports) > MAX_RECV_PORTS or any(not 0 < y < 65536 for _, y, _ in ports):
            raise ValueError(f"at most {MAX_RECV_PORTS} receive ports, each 1..65535")
        cdef list types = [(int(x), 0, int(y)) for x, y in (payload_types or ())]
        if len(types) > MAX_RECV_PORTS or any(not 0 <= y <= 127 for _, _, y in types):
            raise ValueError(f"at most {MAX_RECV_PORTS} payload types, each 0..127")
        if ports and payload_types is not None:
            raise ValueError("receive_ports or payload_types, not both")
        ports = ports or types
        if len(ssrc_list) > MAX_STREAMS or len(set(ssrc_list)) != len(ssrc_list):
            raise ValueError(f"at most {MAX_STREAMS} distinct SSRCs per participant")
        for s in ssrc_list:
            if not 0 <= s <= 0xFFFFFFFF:
                raise ValueError(f"SSRC {s} is not a 32-bit number")
        if address is not None:
            sockaddr = _sockaddr_bytes(address)
        if source_hint is not None:
            hint = _ip16(source_hint)
        m = &self.meetings[mslot]
        # Every SSRC gets its meeting's slot: the one it had, or a new one. Room first, so
        # that adding them below cannot fail.
        self._ssrc_room(m, len(ssrc_list))
        slot = self._take_participant_slot()
        p = &self.parts[slot]
        memset(p, 0, sizeof(Participant))
        p.conn_fd = -1
        p.id = participant_id
        p.rr_rtt_us = RTT_UNKNOWN
        p.meeting = <int32_t>mslot
        p.role = ROLE_NAMES.index(role)
        if not local:
            p.flags |= PF_REMOTE
        p.spec = spec
        p.filtered = bool(ports) or payload_types is not None
        p.down_fp = key_fingerprint(downlink)
        p.up_fp = key_fingerprint(uplink)
        if hint is not None:
            memcpy(p.hint, <const char*>hint, 16)
            p.has_hint = True
        memcpy(p.up_master, &up[0], need)
        p.down = srtp_context_new(spec, &down[0], <uint32_t>128)
        if p.down == NULL:
            self._release_slot(slot)
            raise MemoryError()
        if ports:
            p.recv_ports = <RecvPort*>calloc(len(ports), sizeof(RecvPort))
            if p.recv_ports == NULL:
                self._free_participant(p)
                self._release_slot(slot)
                raise MemoryError()
            for i in range(len(ports)):
                p.recv_ports[i].ssrc = ports[i][0]
                p.recv_ports[i].port = ports[i][1]
                p.recv_ports[i].pt = ports[i][2]
            p.nrecv_ports = len(ports)
        if ssrc_list:
            p.streams = <SenderStream*>calloc(len(ssrc_list), sizeof(SenderStream))
            if p.streams == NULL:
                self._free_participant(p)
                self._release_slot(slot)
                raise MemoryError()
            for i in range(len(ssrc_list)):
                p.streams[i].ssrc = ssrc_list[i]
                p.streams[i].feedback_at = -1e18
                p.streams[i].video = ssrc_list[i] in video_ssrcs
                held = self.ledger.pop((b"S", participant_id, p.up_fp, ssrc_list[i]), None)
                if held is not None:    # it sent this stream before (a role change)
                    _index_restore(&p.streams[i].rtp_rx, held[0])
            p.nstreams = len(ssrc_list)
        nstreams_before = m.nstreams
        for i in range(p.nstreams):
            p.streams[i].slot = self._add_ssrc_slot(m, p.streams[i].ssrc)
        if not local:
            m.nremote += 1
        self._add_member(m, slot)
        self.participant_slots[participant_id] = slot
        # Every member (the newcomer too) needs an OutStream per stream slot; only a sender
        # with a new SSRC adds slots, so a listener joining touches no one else.
        if m.nstreams > nstreams_before:
            for i in range(m.nmembers):
                self._fit_out(&self.parts[m.members[i]], m.nstreams)
        else:
            self._fit_out(p, m.nstreams)
        self._take_rtcp_ledger(p)
        self._fit_addrs()
        if sockaddr is not None:
            memcpy(&p.addr, <const char*>sockaddr, len(sockaddr))
            p.addr_len = <socklen_t>len(sockaddr)
            consented = (b"A", participant_id, _address_fingerprint(&p.addr, p.addr_len), 0)
            p.flags |= PF_GIVEN
            if self.ledger.pop(consented, None) is not None:
                p.flags |= PF_HAS_ADDRESS
            elif address_confirmed:
                p.flags |= PF_HAS_ADDRESS | PF_CONSENT_NEW
                table_queue(self, slot)
            else:
                p.flags |= PF_ADDRESS_PENDING
            table_addr_insert(self, slot)
            if p.flags & PF_HAS_ADDRESS and not p.flags & PF_REMOTE:
                table_note_latched(self, participant_id, False)
        if p.nstreams:
            self._rebuild_ssrcs()

    def leave(self, uint32_t participant_id):
        """Remove a participant: nothing more to or from it. What it was sent and what it
        sent stay in the ledger, in case it comes back (a role change)."""
        cdef uint32_t slot = self._participant_slot(participant_id)
        cdef Participant* p = &self.parts[slot]
        cdef Meeting* m = &self.meetings[p.meeting]
        cdef uint32_t i
        cdef bint sender = p.nstreams > 0
        self._keep_in_ledger(p, m)
        if p.flags & (PF_HAS_ADDRESS | PF_ADDRESS_PENDING):
            table_addr_delete(self, slot)
        if p.flags & PF_REMOTE:
            m.nremote -= 1
        for i in range(m.nmembers):
            if m.members[i] == slot:
                m.members[i] = m.members[m.nmembers - 1]
                m.nmembers -= 1
                break
        self._free_participant(p)
        self._release_slot(slot)
        del self.participant_slots[participant_id]
        if sender:
            self._rebuild_ssrcs()

    def rekey(self, uint32_t participant_id, uplink, downlink, payload_types=None):
        """Give a participant new SRTP keys, everything else kept (meeting, role, streams,
        address, mute, eject): a WebRTC peer's, once its DTLS handshake derived them (RFC
        5764 section 4.2; the keys it joined with were placeholders nobody knows). It is a
        leave and a join again, so the invariant holds as for a role change: what went out
        under the old keys stays in the ledger, and streams under the new ones start afresh
        or, for keys it had before (a snapshot applied again), where they left off.
        payload_types, if given, replace the receiver's (join's payload_types)."""
        cdef uint32_t slot = self._participant_slot(participant_id)
        cdef Participant* p = &self.parts[slot]
        cdef size_t need = p.spec.key_len + p.spec.salt_len
        cdef uint32_t i
        if len(uplink) != need or len(downlink) != need:
            raise ValueError(f"{p.spec.name.decode()} keys are {need} bytes (master key || salt)")
        import ipaddress
        suite = p.spec.name.decode()
        ssrcs = [p.streams[i].ssrc for i in range(p.nstreams)]
        address = None
        if p.flags & PF_HAS_ADDRESS:
            address = _sockaddr_tuple(&p.addr, p.addr_len)
        by_port = [(p.recv_ports[i].ssrc, p.recv_ports[i].port)
                   for i in range(p.nrecv_ports) if p.recv_ports[i].port]
        by_type = [(p.recv_ports[i].ssrc, p.recv_ports[i].pt)
                   for i in range(p.nrecv_ports) if not p.recv_ports[i].port]
        if payload_types is None and p.filtered and not by_port:
            payload_types = by_type
        hint = None
        if p.has_hint:
            ip = ipaddress.IPv6Address(bytes(p.hint[:16]))
            hint = str(ip.ipv4_mapped or ip)
        kept = p.flags & (PF_MUTED | PF_EJECTED)
        args = (self.meetings[p.meeting].id, ROLE_NAMES[p.role], suite)
        local = not p.flags & PF_REMOTE
        self.leave(participant_id)
        self.join(participant_id, *args, uplink, downlink, ssrcs, address, local,
                  by_port, True, hint, payload_types)
        self.parts[self.participant_slots[participant_id]].flags |= kept

    def select_address(self, uint32_t participant_id, address):
        """Where a WebRTC peer receives: the address ICE selected for it (an authenticated
        connectivity check that nominated it, RFC 8445 section 7.3.1.5, relay/ice.py). Media
        goes there from now on, as to an address latched from an authenticated packet."""
        cdef uint32_t slot = self._participant_slot(participant_id)
        cdef bytes sockaddr = _sockaddr_bytes(address)
        table_latch(self, slot, <const char*>sockaddr, <socklen_t>len(sockaddr))

    def forget_address(self, uint32_t participant_id):
        """Send nothing more to a participant until it shows an address again: a WebRTC
        peer's consent expired (RFC 7675 section 5.1). Its own packets still authenticate,
        and ICE or its next authenticated packet gives it an address back."""
        cdef uint32_t slot = self._participant_slot(participant_id)
        cdef Participant* p = &self.parts[slot]
        if p.flags & (PF_HAS_ADDRESS | PF_ADDRESS_PENDING):
            table_addr_delete(self, slot)
        p.flags &= ~(PF_HAS_ADDRESS | PF_ADDRESS_PENDING | PF_GIVEN)
        memset(&p.addr, 0, sizeof(sockaddr_in6))
        p.addr_len = 0
        conn_close(&self.conns, &p.conn_fd)
        p.conn_tried = False
        xdp_forget(&self.xdp, &p.hop)

    def eject(self, uint32_t participant_id):
        """Stop media to and from a participant at once. Its packets count as 'ejected'."""
        self.parts[self._participant_slot(participant_id)].flags |= PF_EJECTED

    def mute(self, uint32_t participant_id, bint muted=True):
        cdef Participant* p = &self.parts[self._participant_slot(participant_id)]
        if muted:
            p.flags |= PF_MUTED
        else:
            p.flags &= ~PF_MUTED

    def address_of(self, uint32_t participant_id):
        """(ip, port) where the participant receives, or None while unknown (or given at
        join and not confirmed yet)."""
        cdef Participant* p = &self.parts[self._participant_slot(participant_id)]
        if not p.flags & PF_HAS_ADDRESS:
            return None
        return _sockaddr_tuple(&p.addr, p.addr_len)

    def counters(self):
        """Totals since start: packets and bytes in and out, drops by reason, and more."""
        cdef Counters* c = &self.stats
        return {
            "packets_in": c.packets_in, "bytes_in": c.bytes_in,
            "packets_out": c.packets_out, "bytes_out": c.bytes_out,
            "rtcp_terminated": c.rtcp_terminated, "latched": c.latched,
            "exported": c.exported, "imported": c.imported, "parked": c.parked,
            "nacks": c.nacks,
            "rtx": {RTX_NAMES[i]: c.rtx[i] for i in range(RTX_OUTCOMES)},
            **report_histograms(c),
            **delay_histogram(c),
            "dropped": {DROP_NAMES[i]: c.dropped[i] for i in range(DROP_COUNT)},
            "gso": {"segments": c.gso_segments, "refused": c.gso_refused},
            "connected_sockets": self.conns.open,
            "connect": {"made": self.conns.made, "failed": self.conns.failed,
                        "over_limit": self.conns.over_limit},
            "xdp": self._xdp_counters(),
            "xdp_on": self.xdp.xsk != NULL,
            "xdp_routed": self.xdp.routed,
        }

    cdef dict _xdp_counters(self):
        """What the AF_XDP path did (xdp.pxi): copies put on its ring as frames, copies that
        found it full, the kernel woken and how often it refused, frames it refused as
        malformed, and copies of receivers with a hop that went from the media socket instead
        (the ring full)."""
        cdef relay_xsk_stats none
        cdef const relay_xsk_stats* s = &none
        memset(&none, 0, sizeof(none))
        if self.xdp.xsk != NULL:
            s = relay_xsk_counters(self.xdp.xsk)
        return {"frames": s.frames, "ring_full": s.ring_full, "wakeups": s.wakeups,
                "wakeup_errors": s.wakeup_errors, "invalid": s.invalid,
                "fallbacks": self.xdp.fallbacks}

    # -- connected sockets (connected.pxi) ---------------------------------------------------

    def connect_receivers(self, local, uint32_t limit):
        """Send each receiver's copies from a socket connected to it, bound to `local` (the
        media socket's (ip, port), bound with SO_REUSEPORT), at most `limit` at once. The
        epoll set of those sockets, to poll beside the media socket, is connected_fd."""
        cdef bytes sockaddr = _sockaddr_bytes(local)
        if conn_start(&self.conns, <const sockaddr_in6*><const char*>sockaddr,
                      <socklen_t>len(sockaddr), limit) != 0:
            raise OSError(errno, "epoll_create1 failed")

    @property
    def connected_fd(self):
        """The epoll set of the receivers' connected sockets; -1 while they are off."""
        return self.conns.epoll_fd

    # -- the AF_XDP path (xdp.pxi) -----------------------------------------------------------

    def xdp_open(self, unsigned ifindex, unsigned queue, unsigned frames=4096,
                 str checksum="offload"):
        """Send through an AF_XDP socket on queue `queue` of interface `ifindex` (copy mode)
        the copies of every receiver given a hop (xdp_route), their UDP checksums computed by
        `checksum`: "offload" (the device; the relay where the kernel has no AF_XDP TX
        metadata), "relay" or "kernel" (xsk.h, enum relay_xsk_checksum). OSError if the
        kernel refuses (no AF_XDP, no such queue, another socket on it, not allowed, no TX
        metadata for "kernel"): its message names the step."""
        cdef const char* stage = NULL
        import os
        if self.xdp.xsk != NULL:
            raise ValueError("the AF_XDP path is already open")
        if checksum not in XSK_CHECKSUMS:
            raise ValueError(f"checksum: one of {', '.join(XSK_CHECKSUMS)}, not {checksum!r}")
        self.xdp.xsk = relay_xsk_open(ifindex, queue, frames, XSK_CHECKSUMS.index(checksum),
                                      &stage)
        if self.xdp.xsk == NULL:
            code = errno
            raise OSError(code, f"AF_XDP {stage.decode()}: {os.strerror(code)}")

    @property
    def xdp_on(self):
        return self.xdp.xsk != NULL

    @property
    def xdp_checksum(self):
        """Who computes the AF_XDP frames' UDP checksums ("offload", "relay" or "kernel");
        None while the path is off."""
        if self.xdp.xsk == NULL:
            return None
        return XSK_CHECKSUMS[relay_xsk_checksum(self.xdp.xsk)]

    def xdp_unrouted(self):
        """[(participant id, its address as a raw sockaddr)]: the receivers with a known
        address and no hop. Raw, as relay/nexthop.py asks the kernel about it and xdp_route
        takes it back: a thousand receivers' addresses are not worth parsing into text."""
        cdef uint32_t i
        cdef Participant* p
        out = []
        if self.xdp.xsk == NULL:
            return out
        for i in range(self.parts_cap):
            p = &self.parts[i]
            if p.meeting >= 0 and p.flags & PF_HAS_ADDRESS and p.hop == NULL:
                out.append((p.id, (<const char*>&p.addr)[:p.addr_len]))
        return out

    def xdp_routed(self):
        """[(participant id, its address as a raw sockaddr)]: the receivers with a hop."""
        cdef uint32_t i
        cdef Participant* p
        out = []
        for i in range(self.parts_cap):
            p = &self.parts[i]
            if p.meeting >= 0 and p.hop != NULL:
                out.append((p.id, (<const char*>&p.addr)[:p.addr_len]))
        return out

    def xdp_route(self, uint32_t participant_id, bytes sockaddr not None,
                  bytes dst_mac not None, bytes src_mac not None, bytes source not None,
                  uint16_t src_port):
        """Send the participant's copies as frames to `dst_mac` from `src_mac`, the address
        `source` (packed: 4 bytes, or 16 for IPv6) and `src_port` (the media socket's), if it
        still receives at `sockaddr` (as xdp_unrouted gave it): False, and nothing changed, if
        its address moved meanwhile (or went)."""
        cdef uint32_t slot = self._participant_slot(participant_id)
        cdef Participant* p = &self.parts[slot]
        cdef relay_xsk_hop* hop
        cdef int family
        if self.xdp.xsk == NULL:
            raise ValueError("the AF_XDP path is not open")
        if len(dst_mac) != 6 or len(src_mac) != 6:
            raise ValueError("a MAC address is 6 bytes")
        if len(source) not in (4, 16):
            raise ValueError("a source address is 4 or 16 bytes")
        family = AF_INET if len(source) == 4 else AF_INET6
        if not (p.flags & PF_HAS_ADDRESS and len(sockaddr) <= sizeof(sockaddr_in6)
                and table_same_address(p, <const char*>sockaddr, <socklen_t>len(sockaddr))):
            return False
        hop = <relay_xsk_hop*>malloc(sizeof(relay_xsk_hop))
        if hop == NULL:
            raise MemoryError()
        relay_xsk_hop_init(hop, family, <const uint8_t*><const char*>dst_mac,
                           <const uint8_t*><const char*>src_mac,
                           <const uint8_t*><const char*>source, htons(src_port))
        xdp_forget(&self.xdp, &p.hop)
        p.hop = hop
        self.xdp.routed += 1
        # One way out per receiver: its frames, not a connected socket too (what it sends
        # back then reaches the media socket again).
        conn_close(&self.conns, &p.conn_fd)
        p.conn_tried = True
        return True

    def xdp_unroute(self, uint32_t participant_id):
        """Send the participant's copies from the media socket again (or a connected socket,
        where those are on)."""
        cdef Participant* p = &self.parts[self._participant_slot(participant_id)]
        if p.hop != NULL:
            xdp_forget(&self.xdp, &p.hop)
            p.conn_tried = False

    # -- the ledger: reservations and what outlives the table ------------------------------

    def reservations_waiting(self):
        """Whether ledger_pending() has records to give beyond the round in flight (cheap:
        once per batch)."""
        return self.nqueue > self.round_len

    @property
    def ledger_round_open(self):
        """Whether a round's records were given (ledger_pending) and neither committed nor
        aborted yet."""
        return self.round_given

    def ledger_pending(self):
        """The records of every reservation asked for since the last round, which opens a
        round: the worker makes them durable, then calls ledger_commit(), or ledger_abort()
        if they could not be written. Until then the fast path goes on within the durable
        limits, and what it asks for meanwhile waits for the next round. RuntimeError while
        a round is open: one at a time."""
        cdef uint32_t i, n = 0
        cdef Participant* p
        cdef bytes out
        cdef uint8_t* at
        cdef uint8_t* end
        if self.round_given:
            raise RuntimeError("a ledger round is open: commit or abort it first")
        # Counted, then written (each stream keeping the value written as its `writing`), with
        # no Python in between: nothing can change the table meanwhile, so the writing fills
        # exactly what the counting sized, and the commit applies exactly what was written.
        for i in range(self.nqueue):
            p = self._queued(i)
            if p != NULL:
                n += _reservations(&self.meetings[p.meeting], p, True, NULL)
        out = PyBytes_FromStringAndSize(NULL, <Py_ssize_t>n * RECORD_BYTES)
        at = <uint8_t*>PyBytes_AS_STRING(out)
        end = at + <size_t>n * RECORD_BYTES
        for i in range(self.nqueue):
            p = self._queued(i)
            if p != NULL:
                at += RECORD_BYTES * _reservations(&self.meetings[p.meeting], p, True, at)
        if at != end:
            raise RuntimeError("ledger records: counted and written differ")
        self.round_len = self.nqueue
        self.round_given = True
        consents = []   # rare: once per address that consents
        for i in range(self.round_len):
            p = self._queued(i)
            self.queue[i].consent = False
            if p != NULL and p.flags & PF_CONSENT_NEW:
                consents.append(_RECORD.pack(b"A", self.meetings[p.meeting].id, p.id,
                                             _address_fingerprint(&p.addr, p.addr_len), 0, 1))
                p.flags &= ~PF_CONSENT_NEW
                self.queue[i].consent = True
        return out + b"".join(consents) if consents else out

    def ledger_commit(self):
        """The records ledger_pending() gave are durable: the limits they hold apply. The
        round's participants that asked for more meanwhile stay queued, ahead of those
        queued since."""
        cdef uint32_t i, s, kept = 0
        cdef Participant* p
        if not self.round_given:
            raise RuntimeError("no ledger round is open")
        for i in range(self.round_len):
            p = self._queued(i)
            if p == NULL:
                continue
            for s in range(p.out_cap):
                if p.out[s].writing > p.out[s].limit:
                    p.out[s].limit = p.out[s].writing
                p.out[s].writing = 0
            if p.rtcp_writing > p.rtcp_limit:
                p.rtcp_limit = p.rtcp_writing
            p.rtcp_writing = 0
            if _wants_more(&self.meetings[p.meeting], p):
                self.queue[kept] = self.queue[i]
                self.queue[kept].consent = False
                kept += 1
            else:
                p.flags &= ~PF_QUEUED
        self._close_round(kept)

    def ledger_abort(self):
        """The records ledger_pending() gave could not be made durable: no limit rises, and
        the round's participants stay queued for the next round, their consent with them."""
        cdef uint32_t i, s
        cdef Participant* p
        if not self.round_given:
            raise RuntimeError("no ledger round is open")
        for i in range(self.round_len):
            p = self._queued(i)
            if p == NULL:
                continue
            for s in range(p.out_cap):
                p.out[s].writing = 0
            p.rtcp_writing = 0
            if self.queue[i].consent:
                p.flags |= PF_CONSENT_NEW
                self.queue[i].consent = False
        self.round_len = 0
        self.round_given = False

    cdef void _close_round(self, uint32_t kept):
        """After a commit: queue[:kept] (the round's that still want more) and those queued
        since, moved up behind them, are the queue."""
        cdef uint32_t i
        for i in range(self.round_len, self.nqueue):
            self.queue[kept] = self.queue[i]
            kept += 1
        self.nqueue = kept
        self.round_len = 0
        self.round_given = False

    cdef Participant* _queued(self, uint32_t i):
        cdef Queued* q = &self.queue[i]
        if q.slot >= self.parts_cap or self.parts[q.slot].meeting < 0:
            return NULL
        if self.parts[q.slot].id != q.id:
            return NULL
        return &self.parts[q.slot]

    def ledger_records(self):
        """Every durable reservation this table knows (its participants' and the ledger's):
        what a compacted ledger file holds."""
        cdef uint32_t i, n = 0
        cdef Participant* p
        cdef bytes out
        cdef uint8_t* at
        cdef uint8_t* end
        # Counted, then written, with no Python in between (as in ledger_pending).
        for i in range(self.parts_cap):
            p = &self.parts[i]
            if p.meeting >= 0 and not p.flags & PF_REMOTE:
                n += _reservations(&self.meetings[p.meeting], p, False, NULL)
        out = PyBytes_FromStringAndSize(NULL, <Py_ssize_t>n * RECORD_BYTES)
        at = <uint8_t*>PyBytes_AS_STRING(out)
        end = at + <size_t>n * RECORD_BYTES
        for i in range(self.parts_cap):
            p = &self.parts[i]
            if p.meeting >= 0 and not p.flags & PF_REMOTE:
                at += RECORD_BYTES * _reservations(&self.meetings[p.meeting], p, False, at)
        if at != end:
            raise RuntimeError("ledger records: counted and written differ")
        others = []
        for i in range(self.parts_cap):
            p = &self.parts[i]
            if p.meeting >= 0 and not p.flags & PF_REMOTE and _consented_given(p):
                others.append(_RECORD.pack(b"A", self.meetings[p.meeting].id, p.id,
                                           _address_fingerprint(&p.addr, p.addr_len), 0, 1))
        for (kind, pid, fp, ssrc), (_, limit, meeting) in self.ledger.items():
            if kind != b"S" and 0 < limit < _UNLIMITED:
                others.append(_RECORD.pack(kind, meeting, pid, fp, ssrc, limit))
        return out + b"".join(others) if others else out

    def ledger_live_bytes(self):
        """The size ledger_records() would have, counted without building it (the worker asks
        every second whether the ledger file is worth compacting)."""
        cdef uint32_t i
        cdef uint64_t n = 0
        cdef Participant* p
        for i in range(self.parts_cap):
            p = &self.parts[i]
            if p.meeting >= 0 and not p.flags & PF_REMOTE:
                n += _reservations(&self.meetings[p.meeting], p, False, NULL)
                n += _consented_given(p)
        for (kind, _, _, _), (_, limit, _) in self.ledger.items():
            if kind != b"S" and 0 < limit < _UNLIMITED:
                n += 1
        return n * RECORD_BYTES

    def stream_state(self):
        """Records (kind S) of the highest index received from each sender's stream, so that
        senders past a sequence wrap keep authenticating after a restart (relay/worker.py
        saves them every second). Not a safety matter, unlike the reservations."""
        cdef bytearray out = bytearray()
        cdef uint32_t i, j
        cdef Participant* p
        for i in range(self.parts_cap):
            p = &self.parts[i]
            if p.meeting < 0:
                continue
            for j in range(p.nstreams):
                if p.streams[j].rtp_rx.started:
                    out += _RECORD.pack(b"S", self.meetings[p.meeting].id, p.id, p.up_fp,
                                        p.streams[j].ssrc, p.streams[j].rtp_rx.highest)
        for (kind, pid, fp, ssrc), (highest, _, meeting) in self.ledger.items():
            if kind == b"S":
                out += _RECORD.pack(kind, meeting, pid, fp, ssrc, highest)
        return bytes(out)

    def ledger_load(self, const uint8_t[::1] blob not None):
        """Take records from files written by an earlier run of the worker (ledger records,
        stream state), before the routing snapshot: its joins take them up. A reserved
        stream continues at its limit, since anything below it may have been sent; of
        several records for one stream the highest counts. Returns the records read;
        ValueError if the blob is not whole records."""
        cdef bytes data = bytes(blob)
        cdef size_t off
        if len(data) % _RECORD.size:
            raise ValueError(f"ledger records are {_RECORD.size} bytes each; "
                             f"{len(data)} bytes is not a whole number of them")
        for off in range(0, len(data), _RECORD.size):
            kind, meeting, pid, fp, ssrc, value = _RECORD.unpack_from(data, off)
            if kind not in (b"O", b"C", b"S", b"A"):
                raise ValueError(f"unknown ledger record kind at byte {off}")
            if kind == b"C":
                value = min(value, 0x80000000)  # the SRTCP index is 31 bits
            key = (kind, pid, fp, ssrc)
            held = self.ledger.get(key)
            if held is None or held[0] < value:
                # A reservation continues at its limit: next = limit.
                self.ledger[key] = [value, 0 if kind == b"S" else value, meeting]
        return len(data) // _RECORD.size

    def ledger_prune(self):
        """Forget what the ledger holds for meetings this table no longer has (after a
        snapshot: those meetings are over, nobody in them receives again)."""
        gone = [k for k, v in self.ledger.items() if v[2] not in self.meeting_slots]
        for k in gone:
            del self.ledger[k]
        return len(gone)

    cdef int _keep_in_ledger(self, Participant* p, Meeting* m) except -1:
        """Before a participant leaves the table: its streams' state, for its return."""
        cdef uint32_t s, j
        cdef OutStream* o
        if not p.flags & PF_REMOTE:
            for s in range(min(p.out_cap, m.nstreams)):
                o = &p.out[s]
                if o.next or o.limit:
                    self.ledger[(b"O", p.id, p.down_fp, m.slot_ssrcs[s])] = [
                        o.next, o.limit, m.id]
            if p.rtcp_tx_next or p.rtcp_limit:
                self.ledger[(b"C", p.id, p.down_fp, 0)] = [p.rtcp_tx_next, p.rtcp_limit, m.id]
            if _consented_given(p):
                self.ledger[(b"A", p.id, _address_fingerprint(&p.addr, p.addr_len), 0)] = [
                    1, 1, m.id]
        for j in range(p.nstreams):
            if p.streams[j].rtp_rx.started:
                self.ledger[(b"S", p.id, p.up_fp, p.streams[j].ssrc)] = [
                    p.streams[j].rtp_rx.highest, 0, m.id]
        return 0

    cdef int _init_out(self, Participant* p, Meeting* m, uint32_t s) except -1:
        """A receiver's new OutStream for slot s: continued from the ledger if it was sent
        that SSRC under this key before, fresh otherwise."""
        cdef OutStream* o = &p.out[s]
        memset(o, 0, sizeof(OutStream))
        if p.flags & PF_REMOTE:
            return 0
        held = self.ledger.pop((b"O", p.id, p.down_fp, m.slot_ssrcs[s]), None)
        if held is not None:
            o.next = held[0]
            o.limit = o.wanted = held[1]
        if not self.durable:
            o.limit = o.wanted = _UNLIMITED
        return 0

    cdef int _take_rtcp_ledger(self, Participant* p) except -1:
        """The newcomer's SRTCP index: continued from the ledger, and reserved at once (its
        jumps cost a receiver nothing: the index travels in every packet)."""
        held = self.ledger.pop((b"C", p.id, p.down_fp, 0), None)
        if held is not None:
            p.rtcp_tx_next = held[0]
            p.rtcp_limit = p.rtcp_wanted = held[1]
        if not self.durable:
            p.rtcp_limit = p.rtcp_wanted = 0xFFFFFFFF
        elif not p.flags & PF_REMOTE:
            p.rtcp_wanted = <uint32_t>min(<uint64_t>p.rtcp_tx_next + RESERVE_RTCP, 0x80000000)
            if table_queue(self, <uint32_t>self.participant_slots[p.id]) != 0:
                raise MemoryError()
        return 0

    def participant_counters_blob(self):
        """Every participant's counters as one buffer, for a report that costs the same per
        participant however many there are: a record of 40 bytes each, little-endian, u32
        id, u32 zero, u64 packets in, bytes in, packets out, bytes out (the worker's report,
        docs/wire.md). In no particular order."""
        cdef Py_ssize_t n = len(self.participant_slots)
        cdef bytearray out = bytearray(n * 40)
        cdef uint8_t* o = out
        cdef uint32_t i
        cdef Py_ssize_t k = 0
        cdef Participant* p
        cdef uint64_t values[4]
        for i in range(self.parts_cap):
            p = &self.parts[i]
            if p.meeting < 0 or k == n:
                continue
            memset(o + k * 40, 0, 8)
            memcpy(o + k * 40, &p.id, 4)
            values[0], values[1] = p.packets_in, p.bytes_in
            values[2], values[3] = p.packets_out, p.bytes_out
            memcpy(o + k * 40 + 8, values, 32)
            k += 1
        return bytes(out[:k * 40])

    def take_reception(self):
        """The receivers whose reports said something new since the last call, as one buffer
        of 16-byte records, little-endian: u32 id, u32 jitter (us), u32 round-trip time (us,
        0xFFFFFFFF: unknown), u8 fraction lost (of 256), three zero bytes (docs/wire.md)."""
        cdef bytearray out = bytearray()
        cdef uint32_t i
        cdef Participant* p
        for i in range(self.parts_cap):
            p = &self.parts[i]
            if p.meeting < 0 or not p.rr_fresh:
                continue
            p.rr_fresh = False
            out += _struct.pack("<IIIB3x", p.id, p.rr_jitter_us, p.rr_rtt_us, p.rr_fraction)
        return bytes(out)

    def take_latched(self):
        """The participants whose address became known (latched, or confirmed) since the
        last call: ids only."""
        cdef list ids = [self.newly_latched[i] for i in range(self.nlatched)]
        self.nlatched = 0
        return ids

    def participant_counters(self):
        """{participant id: (packets in, bytes in, packets out, bytes out)}."""
        cdef Participant* p
        out = {}
        for pid, slot in self.participant_slots.items():
            p = &self.parts[<uint32_t>slot]
            out[pid] = (p.packets_in, p.bytes_in, p.packets_out, p.bytes_out)
        return out

    # -- internals (GIL held) -----------------------------------------------------------------

    cdef uint32_t _meeting_slot(self, uint32_t meeting_id) except? 0xFFFFFFFF:
        try:
            return self.meeting_slots[meeting_id]
        except KeyError:
            raise KeyError(f"no meeting {meeting_id}") from None

    cdef uint32_t _participant_slot(self, uint32_t participant_id) except? 0xFFFFFFFF:
        try:
            return self.participant_slots[participant_id]
        except KeyError:
            raise KeyError(f"no participant {participant_id}") from None

    cdef int _grow_meetings(self) except -1:
        cdef uint32_t cap = self.meetings_cap * 2 if self.meetings_cap else 16
        cdef Meeting* grown = <Meeting*>realloc(self.meetings, cap * sizeof(Meeting))
        if grown == NULL:
            raise MemoryError()
        memset(&grown[self.meetings_cap], 0, (cap - self.meetings_cap) * sizeof(Meeting))
        self.meetings = grown
        self.meetings_cap = cap
        return 0

    cdef int _ssrc_room(self, Meeting* m, uint32_t extra) except -1:
        """Room in the meeting's slot table for `extra` more SSRCs."""
        cdef uint32_t cap = m.slots_cap
        cdef uint32_t* grown
        while m.nstreams + extra > cap:
            cap = cap * 2 if cap else 8
        if cap != m.slots_cap:
            grown = <uint32_t*>realloc(m.slot_ssrcs, cap * sizeof(uint32_t))
            if grown == NULL:
                raise MemoryError()
            m.slot_ssrcs = grown
            m.slots_cap = cap
        return 0

    cdef uint32_t _add_ssrc_slot(self, Meeting* m, uint32_t ssrc):
        """The meeting's stream slot of ssrc: the one it had, else a new one (_ssrc_room
        made room for it)."""
        cdef uint32_t i
        for i in range(m.nstreams):
            if m.slot_ssrcs[i] == ssrc:
                return i
        m.slot_ssrcs[m.nstreams] = ssrc
        m.nstreams += 1
        return m.nstreams - 1

    cdef uint32_t _take_participant_slot(self) except? 0xFFFFFFFF:
        cdef uint32_t cap, i
        cdef Participant* grown
        cdef uint32_t* free_grown
        if self.nfree_parts == 0:
            cap = self.parts_cap * 2 if self.parts_cap else 64
            grown = <Participant*>realloc(self.parts, cap * sizeof(Participant))
            if grown == NULL:
                raise MemoryError()
            self.parts = grown
            free_grown = <uint32_t*>realloc(self.free_parts, cap * sizeof(uint32_t))
            if free_grown == NULL:
                raise MemoryError()
            self.free_parts = free_grown
            i = cap     # hand out low slots first: push the new ones highest first
            while i > self.parts_cap:
                i -= 1
                self.parts[i].meeting = -1
                self.free_parts[self.nfree_parts] = i
                self.nfree_parts += 1
            self.parts_cap = cap
        self.nfree_parts -= 1
        return self.free_parts[self.nfree_parts]

    cdef void _release_slot(self, uint32_t slot):
        self.parts[slot].meeting = -1
        self.free_parts[self.nfree_parts] = slot
        self.nfree_parts += 1

    cdef void _free_participant(self, Participant* p):
        cdef uint32_t i
        srtp_context_free(p.up)
        srtp_context_free(p.down)
        conn_close(&self.conns, &p.conn_fd)
        xdp_forget(&self.xdp, &p.hop)
        if p.streams != NULL:
            for i in range(p.nstreams):
                free(p.streams[i].cache)
        free(p.streams)
        free(p.out)
        free(p.recv_ports)
        OPENSSL_cleanse(p.up_master, sizeof(p.up_master))
        p.up = p.down = NULL
        p.streams = NULL
        p.out = NULL
        p.recv_ports = NULL

    cdef int _add_member(self, Meeting* m, uint32_t slot) except -1:
        cdef uint32_t cap
        cdef uint32_t* grown
        if m.nmembers == m.members_cap:
            cap = m.members_cap * 2 if m.members_cap else 8
            grown = <uint32_t*>realloc(m.members, cap * sizeof(uint32_t))
            if grown == NULL:
                raise MemoryError()
            m.members = grown
            m.members_cap = cap
        m.members[m.nmembers] = slot
        m.nmembers += 1
        return 0

    cdef int _fit_out(self, Participant* p, uint32_t nstreams) except -1:
        """Give p an OutStream for every stream slot of its meeting."""
        cdef uint32_t cap, s
        cdef OutStream* grown
        if nstreams > p.out_cap:
            cap = nstreams if nstreams > p.out_cap * 2 else p.out_cap * 2
            grown = <OutStream*>realloc(p.out, cap * sizeof(OutStream))
            if grown == NULL:
                raise MemoryError()
            memset(&grown[p.out_cap], 0, (cap - p.out_cap) * sizeof(OutStream))
            p.out = grown
            p.out_cap = cap
        for s in range(p.out_init, nstreams):  # the slots handed out since p last fitted
            self._init_out(p, &self.meetings[p.meeting], s)
        if nstreams > p.out_init:
            p.out_init = nstreams
        return 0

    cdef int _rebuild_ssrcs(self) except -1:
        """Index every declared SSRC (senders join rarely; attendees declare none)."""
        cdef uint32_t total = 0, cap = 16, i, j, h
        cdef Participant* p
        for i in range(self.parts_cap):
            if self.parts[i].meeting >= 0:
                total += self.parts[i].nstreams
        while cap < total * 2:
            cap *= 2
        free(self.ssrcs)
        self.ssrcs = <SsrcEntry*>malloc(cap * sizeof(SsrcEntry))
        if self.ssrcs == NULL:
            self.ssrcs_cap = 0
            raise MemoryError()
        for i in range(cap):
            self.ssrcs[i].slot = -1
        self.ssrcs_cap = cap
        for i in range(self.parts_cap):
            p = &self.parts[i]
            if p.meeting < 0:
                continue
            for j in range(p.nstreams):
                h = _slot_hash(p.streams[j].ssrc) & (cap - 1)
                while self.ssrcs[h].slot >= 0:
                    h = (h + 1) & (cap - 1)
                self.ssrcs[h].ssrc = p.streams[j].ssrc
                self.ssrcs[h].slot = <int32_t>i
                self.ssrcs[h].stream = j
        return 0

    cdef int _fit_addrs(self) except -1:
        """Keep the address index at most half full, so the loop never has to grow it."""
        if self.addrs != NULL and (len(self.participant_slots) + 1) * 2 <= self.addrs_cap:
            return 0
        if table_addrs_rebuild(self, len(self.participant_slots) + 1) != 0:
            raise MemoryError()
        return 0

    def maintain(self):
        """Between batches: rebuild the address index if deleted entries pile up."""
        if self.addrs_deleted * 4 > self.addrs_cap:
            table_addrs_rebuild(self, len(self.participant_slots) + 1)


# --- lookups and the changes packets may make (nogil) -------------------------------------------

cdef int table_addrs_rebuild(RouteTable t, uint32_t participants) noexcept nogil:
    """Rebuild the address index without deleted entries, at least four times as large as
    the participants: 0, or -1 (and the old index kept) when out of memory."""
    cdef uint32_t cap = 64, i
    cdef AddrEntry* grown
    while cap < participants * 4:
        cap *= 2
    grown = <AddrEntry*>malloc(cap * sizeof(AddrEntry))
    if grown == NULL:
        return -1
    for i in range(cap):
        grown[i].slot = -1
    free(t.addrs)
    t.addrs = grown
    t.addrs_cap = cap
    t.addrs_deleted = 0
    for i in range(t.parts_cap):
        if t.parts[i].meeting >= 0 and t.parts[i].flags & (PF_HAS_ADDRESS | PF_ADDRESS_PENDING):
            table_addr_insert(t, i)
    return 0


cdef void table_addr_insert(RouteTable t, uint32_t slot) noexcept nogil:
    cdef AddrKey key
    cdef uint32_t mask = t.addrs_cap - 1
    cdef uint32_t h
    cdef Participant* p = &t.parts[slot]
    if not addr_key(&p.addr, p.addr_len, &key):
        return
    h = addr_hash(&key) & mask
    while t.addrs[h].slot >= 0:
        h = (h + 1) & mask
    if t.addrs[h].slot == -2:
        t.addrs_deleted -= 1
    t.addrs[h].key = key
    t.addrs[h].slot = <int32_t>slot


cdef void table_addr_delete(RouteTable t, uint32_t slot) noexcept nogil:
    cdef AddrKey key
    cdef uint32_t mask = t.addrs_cap - 1
    cdef uint32_t h
    cdef Participant* p = &t.parts[slot]
    if not addr_key(&p.addr, p.addr_len, &key):
        return
    h = addr_hash(&key) & mask
    while t.addrs[h].slot != -1:
        if t.addrs[h].slot == <int32_t>slot and memcmp(t.addrs[h].key.b, key.b, 18) == 0:
            t.addrs[h].slot = -2
            t.addrs_deleted += 1
            return
        h = (h + 1) & mask


cdef int32_t table_find_by_address(RouteTable t, const void* sa,
                                   socklen_t n) noexcept nogil:
    """The participant that has this address, or -1."""
    cdef AddrKey key
    cdef uint32_t mask = t.addrs_cap - 1
    cdef uint32_t h
    if t.addrs_cap == 0 or not addr_key(sa, n, &key):
        return -1
    h = addr_hash(&key) & mask
    while t.addrs[h].slot != -1:
        if t.addrs[h].slot >= 0 and memcmp(t.addrs[h].key.b, key.b, 18) == 0:
            return t.addrs[h].slot
        h = (h + 1) & mask
    return -1


cdef int32_t table_find_rtcp_source(RouteTable t, const void* sa,
                                    socklen_t n) noexcept nogil:
    """The participant whose RTCP comes from this address: its own address, or the port
    below it (clients without rtcp-mux, ffmpeg among them, send RTCP from RTP port + 1)."""
    cdef int32_t slot = table_find_by_address(t, sa, n)
    cdef sockaddr_in6 below
    cdef uint16_t port
    if slot >= 0 or n > sizeof(sockaddr_in6):
        return slot
    memcpy(&below, sa, n)
    port = ntohs(below.sin6_port)        # sin_port sits at the same offset in sockaddr_in
    if port <= 1:
        return -1
    below.sin6_port = htons(port - 1)
    return table_find_by_address(t, &below, n)


cdef int table_find_senders(RouteTable t, uint32_t ssrc, const SsrcEntry** found,
                            int max_found) noexcept nogil:
    """The participants that declared this SSRC: more than one when participants of other
    meetings declare it too (SSRCs are only unique within a meeting), by chance or to squat."""
    cdef uint32_t mask, h
    cdef int count = 0
    if t.ssrcs_cap == 0:
        return 0
    mask = t.ssrcs_cap - 1
    h = _slot_hash(ssrc) & mask
    while t.ssrcs[h].slot >= 0 and count < max_found:
        if t.ssrcs[h].ssrc == ssrc:
            found[count] = &t.ssrcs[h]
            count += 1
        h = (h + 1) & mask
    return count


cdef inline uint8_t table_route(const Participant* p, uint32_t ssrc,
                                uint16_t* port_be, uint8_t* pt) noexcept nogil:
    """Where stream `ssrc` goes to receiver p: ROUTE_ADDRESS, ROUTE_PORT (port_be set) or
    ROUTE_SKIP; and under which payload type (pt: PT_KEEP, or the receiver's own)."""
    cdef uint8_t i
    pt[0] = PT_KEEP
    if not p.filtered:
        return ROUTE_ADDRESS
    for i in range(p.nrecv_ports):
        if p.recv_ports[i].ssrc == ssrc:
            pt[0] = p.recv_ports[i].pt
            if p.recv_ports[i].port == 0:
                return ROUTE_ADDRESS
            port_be[0] = htons(p.recv_ports[i].port)
            return ROUTE_PORT
    return ROUTE_SKIP


cdef inline bint out_bound_to(const OutStream* out, const Participant* sender) noexcept nogil:
    """Whether out's mapping is of this sender's stream, under its present key (a sender
    given new keys starts its indexes afresh: a new source)."""
    return (out.bound and out.source == sender.id
            and out.source_key == <uint32_t>sender.up_fp)


cdef inline void out_bind(OutStream* out, uint64_t index,
                          const Participant* sender) noexcept nogil:
    """Map the sender's indexes onto a receiver's stream (rule 2 at the top of this file): a
    fresh stream takes the source's sequence numbers with ROC 0; any other continues at
    `next`, right after everything the receiver was sent on it."""
    if out.next == 0 and not out.tx.started:
        out.delta = <uint64_t>0 - (index & ~(<uint64_t>0xFFFF))
    else:
        out.delta = out.next - index
    out.resend_from = index + out.delta
    out.bound = True
    out.source = sender.id
    out.source_key = <uint32_t>sender.up_fp


cdef bint table_same_address(const Participant* p, const void* sa,
                             socklen_t n) noexcept nogil:
    cdef AddrKey a, b
    if not p.flags & PF_HAS_ADDRESS:
        return False
    return (addr_key(&p.addr, p.addr_len, &a) and addr_key(sa, n, &b)
            and memcmp(a.b, b.b, 18) == 0)


cdef bint table_same_ip(const void* a, socklen_t an, const void* b, socklen_t bn) noexcept nogil:
    cdef AddrKey x, y
    return addr_key(a, an, &x) and addr_key(b, bn, &y) and memcmp(x.b, y.b, 16) == 0


cdef bint table_hint_matches(const Participant* p, const void* sa, socklen_t n) noexcept nogil:
    cdef AddrKey key
    return p.has_hint and addr_key(sa, n, &key) and memcmp(p.hint, key.b, 16) == 0


cdef inline int _candidate_group(const Participant* p, const void* src,
                                 socklen_t n) noexcept nogil:
    """0: latched at the packet's source; 1: no address yet, joined from the packet's IP;
    2: no address yet, joined from elsewhere; 3: latched elsewhere (an address that moved)."""
    if p.flags & PF_HAS_ADDRESS:
        return 0 if table_same_address(p, src, n) else 3
    return 1 if table_hint_matches(p, src, n) else 2


cdef int table_candidates(RouteTable t, const SsrcEntry** found, int k, const void* src,
                          socklen_t srclen, const SsrcEntry** order) noexcept nogil:
    """Which of the k holders of a packet's SSRC to try, in order, at most MAX_CANDIDATES:
    by _candidate_group. Groups 1 to 3 start at a place that turns with every packet that
    needs them, so that no number of participants declaring someone's SSRC in other
    meetings (squatters, latched or not) can keep that someone's packets from being tried:
    each is tried within k / MAX_CANDIDATES packets at worst, and at once when it sends from
    the IP it joined from and the squatters did not join from there too. A packet from a
    latched address costs one tag check, as before."""
    cdef int groups[MAX_HOLDERS]
    cdef int i, g, n = 0, size, turn, seen
    for i in range(k):
        groups[i] = _candidate_group(&t.parts[found[i].slot], src, srclen)
    for g in range(4):
        size = 0
        for i in range(k):
            size += groups[i] == g
        turn = <int>(t.probe_turn % <uint32_t>size) if g >= 1 and size > 1 else 0
        seen = 0
        for i in range(k):          # the group's members from its turn on, then the first
            if groups[i] != g:
                continue
            if seen >= turn and n < MAX_CANDIDATES:
                order[n] = found[i]
                n += 1
            seen += 1
        seen = 0
        for i in range(k):
            if groups[i] != g:
                continue
            if seen < turn and n < MAX_CANDIDATES:
                order[n] = found[i]
                n += 1
            seen += 1
    if k > 1:
        t.probe_turn += MAX_CANDIDATES  # the next packet tries the next ones
    return n


cdef inline bint _wants_more(const Meeting* m, Participant* p) noexcept nogil:
    """Whether p asks the ledger for more than is durable, or for its consent."""
    return _reservations(m, p, True, NULL) > 0 or p.flags & PF_CONSENT_NEW


cdef int table_queue(RouteTable t, uint32_t slot) noexcept nogil:
    """Put a participant in the reservation queue (ledger_pending reads it); 0, or -1 when
    out of memory (the reservation then waits for the next packet that asks)."""
    cdef Participant* p = &t.parts[slot]
    cdef uint32_t cap
    cdef Queued* grown
    if p.flags & PF_QUEUED:
        return 0
    if t.nqueue == t.queue_cap:
        cap = t.queue_cap * 2 if t.queue_cap else 64
        grown = <Queued*>realloc(t.queue, cap * sizeof(Queued))
        if grown == NULL:
            return -1
        t.queue = grown
        t.queue_cap = cap
    t.queue[t.nqueue].slot = slot
    t.queue[t.nqueue].id = p.id
    t.queue[t.nqueue].consent = False
    t.nqueue += 1
    p.flags |= PF_QUEUED
    return 0


cdef void table_note_latched(RouteTable t, uint32_t participant_id,
                             bint by_packet=True) noexcept nogil:
    """Keep a participant whose address became known for take_latched(), and count it if
    a packet taught it (without room for the id, the event is lost; the count is not)."""
    cdef uint32_t cap
    cdef uint32_t* grown
    if by_packet:
        t.stats.latched += 1
    if t.nlatched == t.latched_cap:
        cap = t.latched_cap * 2 if t.latched_cap else 64
        grown = <uint32_t*>realloc(t.newly_latched, cap * sizeof(uint32_t))
        if grown == NULL:
            return
        t.newly_latched = grown
        t.latched_cap = cap
    t.newly_latched[t.nlatched] = participant_id
    t.nlatched += 1


cdef void table_latch(RouteTable t, uint32_t slot, const void* sa, socklen_t n) noexcept nogil:
    """Learn or move a participant's address: only after its packet authenticated. An
    address given at join that waits for consent is confirmed, as it is, by a packet from
    its IP (a client sends RTCP from another port than it receives on: ffmpeg from + 1)."""
    cdef Participant* p = &t.parts[slot]
    if table_same_address(p, sa, n) or n > sizeof(sockaddr_in6):
        return
    if p.flags & PF_ADDRESS_PENDING and table_same_ip(&p.addr, p.addr_len, sa, n):
        p.flags = (p.flags & ~PF_ADDRESS_PENDING) | PF_HAS_ADDRESS | PF_CONSENT_NEW
        table_queue(t, slot)    # the ledger remembers it (ledger_pending)
        table_note_latched(t, p.id)
        return
    if p.flags & (PF_HAS_ADDRESS | PF_ADDRESS_PENDING):
        p.flags &= ~(PF_ADDRESS_PENDING | PF_GIVEN)
        table_addr_delete(t, slot)
        if t.addrs_deleted * 4 > t.addrs_cap:
            # Deleted entries end no probe: rebuild before they crowd out the empty ones.
            # On failure the old index stays; it still has room, as _fit_addrs keeps it.
            p.flags &= ~PF_HAS_ADDRESS
            table_addrs_rebuild(t, t.parts_cap)
    memset(&p.addr, 0, sizeof(sockaddr_in6))
    memcpy(&p.addr, sa, n)
    p.addr_len = n
    p.flags |= PF_HAS_ADDRESS
    conn_close(&t.conns, &p.conn_fd)    # connected to where it was
    p.conn_tried = False
    xdp_forget(&t.xdp, &p.hop)          # framed for where it was
    table_addr_insert(t, slot)
    table_note_latched(t, p.id)


cdef inline int table_receiver_socket(RouteTable t, Participant* p) noexcept nogil:
    """The socket connected to p's address, made at its first copy there (connected.pxi);
    -1: none, its copies go out from the media socket (or, with a hop, as AF_XDP frames:
    that path wins where both are on, xdp.pxi)."""
    if p.hop != NULL:
        return -1
    if p.conn_fd >= 0 or p.conn_tried or t.conns.epoll_fd < 0:
        return p.conn_fd
    p.conn_tried = True
    p.conn_fd = conn_open(&t.conns, &p.addr, p.addr_len)
    return p.conn_fd


cdef SrtpContext* table_uplink(Participant* p) noexcept nogil:
    """The participant's uplink context, derived from its master key on first use."""
    if p.up == NULL:
        p.up = srtp_context_new(p.spec, p.up_master, 128)
    return p.up


# --- helpers -------------------------------------------------------------------------------------

cdef SrtpContext* srtp_context_new(const SuiteSpec* spec, const uint8_t* master,
                                   uint32_t window) noexcept nogil:
    cdef SrtpContext* c = <SrtpContext*>calloc(1, sizeof(SrtpContext))
    if c == NULL:
        return NULL
    if srtp_context_from_master(c, spec, master, master + spec.key_len, window) != SRTP_OK:
        srtp_context_free(c)
        return NULL
    return c


cdef void srtp_context_free(SrtpContext* c) noexcept nogil:
    if c != NULL:
        srtp_context_clear(c)
        free(c)


cdef bytes _sockaddr_bytes(object address):
    """(ip, port) -> the bytes of a sockaddr_in or sockaddr_in6."""
    import ipaddress
    import socket
    import struct
    host, port = address
    ip = ipaddress.ip_address(host)
    if not 0 < int(port) < 65536:
        raise ValueError(f"port out of range: {port}")
    if ip.version == 4:
        return struct.pack("=H", socket.AF_INET) + struct.pack("!H", port) + ip.packed + bytes(8)
    return (struct.pack("=H", socket.AF_INET6) + struct.pack("!HI", port, 0) + ip.packed
            + bytes(4))


cdef inline bint _consented_given(const Participant* p) noexcept:
    """Its address is the one given at join, and it consented (rule 'A' of the ledger)."""
    return (p.flags & (PF_GIVEN | PF_HAS_ADDRESS)) == (PF_GIVEN | PF_HAS_ADDRESS)


cdef object _address_fingerprint(const void* sa, socklen_t n):
    """A 64-bit name for an address and port (not the address itself: the ledger needs to
    know that one consented, not where it is)."""
    cdef AddrKey key
    if not addr_key(sa, n, &key):
        return 0
    return int.from_bytes(_hashlib.blake2b((<char*>key.b)[:18], digest_size=8,
                                           person=b"relay-consent").digest(), "little")


cdef bytes _ip16(object host):
    """An IP address as the 16 bytes addr_key compares (IPv4 as IPv4-mapped IPv6)."""
    import ipaddress
    ip = ipaddress.ip_address(host)
    if ip.version == 4:
        return bytes(10) + b"\xff\xff" + ip.packed
    return ip.packed


cdef object _sockaddr_tuple(const void* sa, socklen_t n):
    import ipaddress
    cdef const sockaddr_in* v4 = <const sockaddr_in*>sa
    cdef const sockaddr_in6* v6 = <const sockaddr_in6*>sa
    if v4.sin_family == AF_INET:
        return (str(ipaddress.IPv4Address((<const uint8_t*>&v4.sin_addr)[:4])),
                ntohs(v4.sin_port))
    return (str(ipaddress.IPv6Address((<const uint8_t*>&v6.sin6_addr)[:16])),
            ntohs(v6.sin6_port))
