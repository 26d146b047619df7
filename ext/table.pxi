# The routing table of one worker: meetings, participants, their keys, addresses and streams.
#
# Changes (join, leave, eject, mute, end) arrive from the control plane and are applied by
# RouteTable's Python methods between batches, with the GIL held. The forwarding loop
# (forward.pxi) reads the table without the GIL and changes only what packets may change:
# a participant's latched address and the SRTP state of its streams. Nothing else touches the
# table, so no locks.
#
# Sequence numbers and the ROC per receiver: each receiver keeps, per stream of the meeting,
# an OutStream whose `base` is the sender's ROC (as index bits) when the receiver got its first
# packet of that stream. The receiver is sent index (sender index - base): the same SSRC and
# sequence numbers as the sender's, with a ROC that starts at 0 when the receiver joins, even
# hours into a meeting, and then follows every 16-bit wrap of the sender's.

from libc.stdlib cimport calloc, free, malloc, realloc

import struct as _struct

_STATE_S = _struct.Struct("<cIIQ")
_STATE_O = _struct.Struct("<cIIIQQ")
_STATE_R = _struct.Struct("<cII")


cdef inline void _index_restore(SrtpIndex* t, uint64_t highest) noexcept:
    """Resume an index as of `highest`, every index at or below it taken as seen."""
    t.started = True
    t.highest = highest
    memset(t.seen, 0xFF, sizeof(t.seen))


cdef enum:
    PF_MUTED = 1
    PF_EJECTED = 2
    PF_HAS_ADDRESS = 4      # latched from an authenticated packet, or given at join
    PF_REMOTE = 8           # homed on another worker: that worker sends to it, not this one


ctypedef struct SenderStream:
    uint32_t ssrc
    uint32_t slot           # the meeting's stream number: index into each receiver's out[]
    SrtpIndex rtp_rx        # ROC and replay window of what the participant sends
    SrtpIndex rtcp_rx       # SRTCP sent from this SSRC
    double feedback_at      # when a PLI/FIR for this stream last went to the sender (now units)


ctypedef struct OutStream:
    bint started
    uint8_t route           # ROUTE_*: where this stream goes (resolved at its first packet)
    uint16_t port           # network order, with ROUTE_PORT
    uint64_t base           # sender index bits (ROC << 16) at this receiver's first packet
    SrtpIndex tx            # indexes sent to this receiver: a repeat is refused


ctypedef struct RecvPort:
    uint32_t ssrc
    uint16_t port           # host order


cdef enum:
    ROUTE_UNKNOWN = 0
    ROUTE_ADDRESS = 1       # to the receiver's address
    ROUTE_PORT = 2          # to its host, on the port its SDP gave this stream
    ROUTE_SKIP = 3          # a stream its SDP does not describe: it could not play it
    MAX_RECV_PORTS = 16


ctypedef struct Participant:
    uint32_t id             # the control plane's participant number
    int32_t meeting         # meeting slot; -1 when this slot is free
    uint8_t role            # Role
    uint8_t flags           # PF_*
    uint8_t nstreams
    SenderStream* streams   # what it declared it sends (NULL for a listener)
    SrtpIndex rtcp_rx_other  # SRTCP from an SSRC it did not declare (receiver reports)
    uint32_t rtcp_tx_next   # SRTCP index of the next RTCP we send it
    SrtpContext* up         # unprotects what it sends; derived on its first packet
    SrtpContext* down       # protects what it receives
    const SuiteSpec* spec
    uint8_t up_master[SRTP_MAX_KEY + SRTP_MAX_SALT]
    sockaddr_in6 addr       # where it receives (sockaddr_in in the first bytes for IPv4)
    socklen_t addr_len
    OutStream* out          # per stream slot of the meeting
    uint32_t out_cap
    RecvPort* recv_ports    # per stream, for receivers whose SDP puts each on its own port
    uint8_t nrecv_ports
    uint64_t packets_in, bytes_in, packets_out, bytes_out


ctypedef struct Meeting:
    uint32_t id
    bint used
    bint webinar            # attendees may not send
    bint ended
    uint32_t* members       # participant slots
    uint32_t nmembers
    uint32_t members_cap
    uint32_t nstreams       # stream slots handed out (never reused within a meeting)
    uint32_t nremote        # members homed on other workers: packets go to them too (fanout.pxi)
    bint recording          # the host records it: its packets go to the worker's recorder too


ctypedef struct Counters:
    uint64_t packets_in, bytes_in, packets_out, bytes_out
    uint64_t rtcp_terminated    # receiver reports and other RTCP that ends at the relay
    uint64_t latched            # addresses learnt or moved by authenticated packets
    uint64_t exported           # packets passed on to the other workers (fanout.pxi)
    uint64_t imported           # packets taken from the other workers for local receivers
    uint64_t dropped[DROP_COUNT]


DROP_NAMES = ("malformed", "too_large", "unknown_source", "auth", "replay", "not_allowed",
              "muted", "ejected", "ended", "late", "no_address", "rate_limited",
              "send_error", "overflow", "crypto")
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
    """The routing state of one worker. Python methods change it between batches."""

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
    cdef dict participant_slots     # participant id -> slot
    cdef dict meeting_slots         # meeting id -> slot

    def __cinit__(self):
        memset(&self.stats, 0, sizeof(Counters))
        self.participant_slots = {}
        self.meeting_slots = {}

    def __dealloc__(self):
        cdef uint32_t i
        for i in range(self.parts_cap):
            if self.parts[i].meeting >= 0:
                self._free_participant(&self.parts[i])
        for i in range(self.meetings_cap):
            free(self.meetings[i].members)
        free(self.parts)
        free(self.free_parts)
        free(self.meetings)
        free(self.ssrcs)
        free(self.addrs)

    def __len__(self):
        return len(self.participant_slots)

    # -- meetings ----------------------------------------------------------------------------

    def open_meeting(self, uint32_t meeting_id, str mode="meeting"):
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
        """Forget an ended meeting and everyone in it."""
        cdef uint32_t slot = self._meeting_slot(meeting_id)
        cdef Meeting* m = &self.meetings[slot]
        while m.nmembers:
            self.leave(self.parts[m.members[m.nmembers - 1]].id)
        free(m.members)
        memset(m, 0, sizeof(Meeting))
        del self.meeting_slots[meeting_id]

    # -- participants ------------------------------------------------------------------------

    def join(self, uint32_t participant_id, uint32_t meeting_id, str role, str suite,
             uplink, downlink, ssrcs=(), address=None, bint local=True, receive_ports=()):
        """Add a participant.

        Args:
            role: "host", "panelist" or "attendee".
            suite: its SRTP suite; uplink/downlink: master key || salt for what it sends and
                what it receives.
            ssrcs: the SSRCs it will send (at most MAX_STREAMS).
            address: (ip, port) where it receives, for clients that only listen; otherwise
                learnt from its first authenticated packet.
            receive_ports: [(ssrc, port)] for a receiver whose SDP describes each stream on a
                port of its own (ffmpeg reads one stream per m= line): stream `ssrc` goes to
                that port of its address, its RTCP to port + 1, and streams not listed (it
                could not play them) are not sent to it at all.
            local: whether it is homed on this worker. Another worker sends to a participant
                that is not; this one only knows its keys and SSRCs (its packets may still
                arrive here) and passes its meeting's media on (fanout.pxi).
        """
        cdef uint32_t mslot = self._meeting_slot(meeting_id)
        cdef const SuiteSpec* spec = _suite_spec(suite)
        cdef const uint8_t[::1] up = bytes(uplink)
        cdef const uint8_t[::1] down = bytes(downlink)
        cdef list ssrc_list = [int(s) for s in ssrcs]
        cdef uint32_t slot, i
        cdef Participant* p
        cdef Meeting* m
        cdef bytes sockaddr = None
        cdef size_t need = spec.key_len + spec.salt_len
        if participant_id in self.participant_slots:
            raise ValueError(f"participant {participant_id} has already joined")
        if role not in ROLE_NAMES:
            raise ValueError(f"role must be one of {ROLE_NAMES}, got {role!r}")
        if <size_t>up.shape[0] != need or <size_t>down.shape[0] != need:
            raise ValueError(f"{suite} keys are {need} bytes (master key || salt)")
        cdef list ports = [(int(x), int(y)) for x, y in receive_ports]
        if len(ports) > MAX_RECV_PORTS or any(not 0 < y < 65536 for _, y in ports):
            raise ValueError(f"at most {MAX_RECV_PORTS} receive ports, each 1..65535")
        if len(ssrc_list) > MAX_STREAMS or len(set(ssrc_list)) != len(ssrc_list):
            raise ValueError(f"at most {MAX_STREAMS} distinct SSRCs per participant")
        for s in ssrc_list:
            if not 0 <= s <= 0xFFFFFFFF:
                raise ValueError(f"SSRC {s} is not a 32-bit number")
        if address is not None:
            sockaddr = _sockaddr_bytes(address)
        m = &self.meetings[mslot]
        slot = self._take_participant_slot()
        p = &self.parts[slot]
        memset(p, 0, sizeof(Participant))
        p.id = participant_id
        p.meeting = <int32_t>mslot
        p.role = ROLE_NAMES.index(role)
        if not local:
            p.flags |= PF_REMOTE
        p.spec = spec
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
            p.nrecv_ports = len(ports)
        if ssrc_list:
            p.streams = <SenderStream*>calloc(len(ssrc_list), sizeof(SenderStream))
            if p.streams == NULL:
                self._free_participant(p)
                self._release_slot(slot)
                raise MemoryError()
            for i in range(len(ssrc_list)):
                p.streams[i].ssrc = ssrc_list[i]
                p.streams[i].slot = m.nstreams + i
                p.streams[i].feedback_at = -1e18
            p.nstreams = len(ssrc_list)
        # Every member (the newcomer too) needs an OutStream per stream of the meeting; only
        # a sender adds streams, so a listener joining touches no one else.
        m.nstreams += p.nstreams
        if not local:
            m.nremote += 1
        self._add_member(m, slot)
        if p.nstreams:
            for i in range(m.nmembers):
                self._fit_out(&self.parts[m.members[i]], m.nstreams)
        else:
            self._fit_out(p, m.nstreams)
        self.participant_slots[participant_id] = slot
        self._fit_addrs()
        if sockaddr is not None:
            memcpy(&p.addr, <const char*>sockaddr, len(sockaddr))
            p.addr_len = <socklen_t>len(sockaddr)
            p.flags |= PF_HAS_ADDRESS
            table_addr_insert(self, slot)
        if p.nstreams:
            self._rebuild_ssrcs()

    def leave(self, uint32_t participant_id):
        """Remove a participant: nothing more to or from it."""
        cdef uint32_t slot = self._participant_slot(participant_id)
        cdef Participant* p = &self.parts[slot]
        cdef Meeting* m = &self.meetings[p.meeting]
        cdef uint32_t i
        cdef bint sender = p.nstreams > 0
        if p.flags & PF_HAS_ADDRESS:
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
        """(ip, port) where the participant receives, or None while unknown."""
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
            "exported": c.exported, "imported": c.imported,
            "dropped": {DROP_NAMES[i]: c.dropped[i] for i in range(DROP_COUNT)},
        }

    # -- stream state across a restart ----------------------------------------------------

    def stream_state(self):
        """The SRTP index state a restarted worker needs so that senders keep authenticating
        and receivers keep decrypting (relay/worker.py saves it every second): records of

          b"S" u32 participant, u32 ssrc, u64 highest index received from that stream
          b"O" u32 receiver, u32 sender, u32 ssrc, u64 base, u64 highest index sent to it
          b"R" u32 receiver, u32 next SRTCP index to send it

        little-endian, keyed by ids and SSRCs (stream slots are renumbered by a restart)."""
        cdef bytearray out = bytearray()
        cdef uint32_t i, j, k, r
        cdef Participant* p
        cdef Participant* q
        cdef Meeting* m
        for i in range(self.parts_cap):
            p = &self.parts[i]
            if p.meeting < 0:
                continue
            for j in range(p.nstreams):
                if p.streams[j].rtp_rx.started:
                    out += _STATE_S.pack(b"S", p.id, p.streams[j].ssrc,
                                         p.streams[j].rtp_rx.highest)
            if p.flags & PF_REMOTE:
                continue
            if p.rtcp_tx_next:
                out += _STATE_R.pack(b"R", p.id, p.rtcp_tx_next)
            m = &self.meetings[p.meeting]
            for k in range(m.nmembers):     # the meeting's senders: whose streams p receives
                r = m.members[k]
                q = &self.parts[r]
                for j in range(q.nstreams):
                    if q.streams[j].slot < p.out_cap and p.out[q.streams[j].slot].started:
                        out += _STATE_O.pack(b"O", p.id, q.id, q.streams[j].ssrc,
                                             p.out[q.streams[j].slot].base,
                                             p.out[q.streams[j].slot].tx.highest)
        return bytes(out)

    def restore_stream_state(self, const uint8_t[::1] state not None):
        """Take back what stream_state() saved, for the participants this table holds;
        records of others are skipped. Every index at or below a saved one counts as seen:
        a packet replayed from before the restart is refused, and nothing is sent to a
        receiver at an index it may already have had. Returns the records used."""
        cdef bytes blob = bytes(state)
        cdef size_t off = 0
        cdef int used = 0
        cdef Participant* p
        cdef Participant* q
        cdef SrtpIndex* t
        cdef uint32_t j
        while off < len(blob):
            kind = blob[off:off + 1]
            if kind == b"S" and off + _STATE_S.size <= len(blob):
                _, pid, ssrc, highest = _STATE_S.unpack_from(blob, off)
                off += _STATE_S.size
                p = self._find(pid)
                if p == NULL:
                    continue
                for j in range(p.nstreams):
                    if p.streams[j].ssrc == ssrc:
                        _index_restore(&p.streams[j].rtp_rx, highest)
                        used += 1
            elif kind == b"O" and off + _STATE_O.size <= len(blob):
                _, pid, sender, ssrc, base, highest = _STATE_O.unpack_from(blob, off)
                off += _STATE_O.size
                p = self._find(pid)
                q = self._find(sender)
                if p == NULL or q == NULL or p.meeting != q.meeting:
                    continue
                for j in range(q.nstreams):
                    if q.streams[j].ssrc == ssrc and q.streams[j].slot < p.out_cap:
                        p.out[q.streams[j].slot].started = True
                        p.out[q.streams[j].slot].base = base
                        _index_restore(&p.out[q.streams[j].slot].tx, highest)
                        used += 1
            elif kind == b"R" and off + _STATE_R.size <= len(blob):
                _, pid, next_index = _STATE_R.unpack_from(blob, off)
                off += _STATE_R.size
                p = self._find(pid)
                if p != NULL:
                    p.rtcp_tx_next = next_index
                    used += 1
            else:
                raise ValueError(f"stream state is malformed at byte {off}")
        return used

    cdef Participant* _find(self, uint32_t participant_id):
        slot = self.participant_slots.get(participant_id)
        return NULL if slot is None else &self.parts[<uint32_t>slot]

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
        srtp_context_free(p.up)
        srtp_context_free(p.down)
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
        cdef uint32_t cap
        cdef OutStream* grown
        if nstreams <= p.out_cap:
            return 0
        cap = nstreams if nstreams > p.out_cap * 2 else p.out_cap * 2
        grown = <OutStream*>realloc(p.out, cap * sizeof(OutStream))
        if grown == NULL:
            raise MemoryError()
        memset(&grown[p.out_cap], 0, (cap - p.out_cap) * sizeof(OutStream))
        p.out = grown
        p.out_cap = cap
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
        if t.parts[i].meeting >= 0 and t.parts[i].flags & PF_HAS_ADDRESS:
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
    """The participants that declared this SSRC (more than one only if SSRCs collide)."""
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
                                uint16_t* port_be) noexcept nogil:
    """Where stream `ssrc` goes to receiver p: ROUTE_ADDRESS, ROUTE_PORT (port_be set) or
    ROUTE_SKIP."""
    cdef uint8_t i
    if p.nrecv_ports == 0:
        return ROUTE_ADDRESS
    for i in range(p.nrecv_ports):
        if p.recv_ports[i].ssrc == ssrc:
            port_be[0] = htons(p.recv_ports[i].port)
            return ROUTE_PORT
    return ROUTE_SKIP


cdef bint table_same_address(const Participant* p, const void* sa,
                             socklen_t n) noexcept nogil:
    cdef AddrKey a, b
    if not p.flags & PF_HAS_ADDRESS:
        return False
    return (addr_key(&p.addr, p.addr_len, &a) and addr_key(sa, n, &b)
            and memcmp(a.b, b.b, 18) == 0)


cdef void table_latch(RouteTable t, uint32_t slot, const void* sa, socklen_t n) noexcept nogil:
    """Learn or move a participant's address: only after its packet authenticated."""
    cdef Participant* p = &t.parts[slot]
    if table_same_address(p, sa, n) or n > sizeof(sockaddr_in6):
        return
    if p.flags & PF_HAS_ADDRESS:
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
    table_addr_insert(t, slot)
    t.stats.latched += 1


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


cdef object _sockaddr_tuple(const void* sa, socklen_t n):
    import ipaddress
    cdef const sockaddr_in* v4 = <const sockaddr_in*>sa
    cdef const sockaddr_in6* v6 = <const sockaddr_in6*>sa
    if v4.sin_family == AF_INET:
        return (str(ipaddress.IPv4Address((<const uint8_t*>&v4.sin_addr)[:4])),
                ntohs(v4.sin_port))
    return (str(ipaddress.IPv6Address((<const uint8_t*>&v6.sin6_addr)[:16])),
            ntohs(v6.sin6_port))
