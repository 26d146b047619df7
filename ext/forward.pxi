# The forwarding loop: for each received datagram, find the sender, unprotect once, decide
# whether it may send, then protect a copy for every receiver in its meeting.
#
#   recvmmsg -> RTP or RTCP (RFC 5761 section 4) -> sender by SSRC (and address) -> unprotect
#   -> may it send? -> per receiver: copy, protect with its key at its own index -> sendmmsg
#
# Nothing here holds the GIL or creates a Python object; every datagram that is not forwarded
# is counted under a DropReason. process() is the whole loop without sockets, for tests;
# run_once() adds the two system calls. A meeting with members homed on other workers also
# gets each packet's plaintext appended to `exports` (fanout.pxi), which the worker publishes
# between batches; run_import() serves this worker's members from what the others published.
#
# Each copy goes out at the receiver's own index (table.pxi, "Never the same index twice"):
# a copy whose index is not reserved durably yet (a stream's first packet to a receiver, or
# its first after a restart) is parked with its plaintext; the worker makes the reservation
# durable and then release() sends what waited, so nothing is lost for it.
#
# Packets of one stream that arrive one after another in a batch (a video frame's, mostly) are
# a burst: their copies go out receiver by receiver, so that each receiver's copies of it are
# consecutive in the SendBatch and leave as one message of several segments (batch.pxi, UDP
# GSO). A burst is only what one batch already holds: no packet waits for another.

from libc.string cimport memcmp


ctypedef struct ParkedCopy:
    uint32_t receiver       # participant slot, and its id: checked again at release
    uint32_t receiver_id
    uint32_t stream_slot
    uint32_t sender         # participant slot of the sender, and its id
    uint32_t sender_id
    uint32_t packet         # index into the parked plaintexts
    uint64_t index          # the sender's SRTP index of the packet


cdef inline int drop_for(int status) noexcept nogil:
    """The drop reason for an SRTP status code."""
    if status == SRTP_ERR_AUTH:
        return DROP_AUTH
    if status == SRTP_ERR_REPLAY or status == SRTP_ERR_REPLAY_OLD:
        return DROP_REPLAY
    if status == SRTP_ERR_MALFORMED:
        return DROP_MALFORMED
    if status == SRTP_ERR_NO_ROOM:
        return DROP_TOO_LARGE
    return DROP_CRYPTO


cdef inline void keep_for_nacks(SenderStream* st, uint32_t key, uint64_t index,
                                const uint8_t* plain, size_t n, double now) noexcept nogil:
    """A packet about to be forwarded, into its stream's retransmission cache (rtx.pxi): a
    video stream's is opened now, any other's by a NACK first."""
    if st.cache == NULL:
        if not st.video:
            return
        st.cache = rtx_cache_new()
        if st.cache == NULL:
            return
    rtx_cache_put(st.cache, index, key, plain, n, now)


cdef inline bint is_rtcp(const uint8_t* pkt) noexcept nogil:
    """RFC 5761 section 4: with rtcp-mux, RTCP packet types 192..223 occupy what would be RTP
    payload types 64..95, which RTP must therefore not use."""
    return 192 <= pkt[1] <= 223


@cython.final
cdef class Forwarder:
    """The media path of one worker over one RouteTable."""

    cdef RouteTable table
    cdef Counters* stats        # the table's counters
    cdef RecvBatch rx
    cdef SendBatch tx
    cdef Exports exports        # this batch's packets for members homed on other workers
    cdef Aside aside            # this batch's STUN and DTLS, for the worker's Python side
    cdef public bint set_aside  # whether to keep them (the worker serves WebRTC peers)
    cdef public uint32_t budget  # how many more to keep (demux.pxi): the worker refills it
    cdef uint8_t* scratch       # a copy of the packet while several candidates are tried
    cdef uint8_t* parked_plain  # PARK_PACKETS plaintexts whose copies wait for reservations
    cdef uint32_t parked_lens[PARK_PACKETS]
    cdef uint32_t nparked_plain
    cdef ParkedCopy* parked     # the copies waiting
    cdef uint32_t nparked
    cdef uint32_t parked_cap
    cdef double now             # the clock of the batch being forwarded (rtx.pxi's ages)
    cdef public double keyframe_interval  # seconds between keyframe requests to a stream
    cdef uint32_t pending_slot[KEYFRAMES_PENDING]   # streams with a merged keyframe request
    cdef uint32_t pending_id[KEYFRAMES_PENDING]
    cdef uint32_t pending_stream[KEYFRAMES_PENDING]
    cdef uint32_t npending
    # The burst being gathered: consecutive packets of one sender's stream, decrypted (in the
    # receive batch, or the records being imported), fanned out together by _burst_send().
    cdef uint32_t burst_sender
    cdef uint32_t burst_stream
    cdef uint32_t nburst
    cdef const uint8_t* burst_plain[BATCH_MAX]
    cdef uint32_t burst_len[BATCH_MAX]
    cdef uint64_t burst_index[BATCH_MAX]
    # When the kernel received the packet being forwarded, and each RTP packet of this batch
    # that was relayed (delay.pxi): observed once the batch's copies have left.
    cdef double stamp
    cdef double relayed_at[BATCH_MAX]
    cdef uint32_t nrelayed

    def __cinit__(self, RouteTable table not None, int send_slots=SEND_SLOTS):
        self.table = table
        self.stats = &table.stats
        self.keyframe_interval = KEYFRAME_INTERVAL
        self.rx = RecvBatch()
        self.tx = SendBatch(send_slots)
        self.exports = Exports()
        self.aside = Aside()
        self.scratch = <uint8_t*>malloc(SLOT_SIZE)
        self.parked_plain = <uint8_t*>malloc(<size_t>PARK_PACKETS * SLOT_SIZE)
        if self.scratch == NULL or self.parked_plain == NULL:
            raise MemoryError()

    def __dealloc__(self):
        free(self.scratch)
        free(self.parked_plain)
        free(self.parked)

    @property
    def gso(self):
        """Whether a receiver's copies of a burst leave as one message (batch.pxi); off after
        the kernel refused such a message once."""
        return self.tx.gso

    @gso.setter
    def gso(self, bint on):
        self.tx.gso = on

    @property
    def waiting(self):
        """Copies parked until their reservations are durable (release() sends them)."""
        return self.nparked

    def release(self, int fd):
        """Send the parked copies whose reservations are now durable (after the worker's
        ledger_commit); those still without one are dropped as unreserved. Returns the
        copies sent."""
        cdef int n
        with nogil:
            n = self._release(self.tx, fd)
            self.tx.flush(fd, self.table)
        return n

    def process_release(self, SendBatch tx not None):
        """release() without a socket, for tests: the copies land in tx."""
        cdef int n
        with nogil:
            n = self._release(tx, -1)
        return n

    def run_once(self, int fd, double now):
        """Receive one batch from fd, forward it, send. Returns datagrams received (0: none
        waiting), or -errno if recvmmsg failed."""
        cdef int n
        with nogil:
            n = self.rx.recv(fd)
            if n > 0:
                self._forward_batch(self.rx, self.tx, fd, now)
                self.tx.flush(fd, self.table)
                self._observe_delays()
        return n

    cdef void _observe_delays(self) noexcept nogil:
        """How long each packet of the batch just sent stayed in the relay (delay.pxi)."""
        cdef uint32_t i
        cdef double sent_at
        if self.nrelayed == 0:
            return
        sent_at = wall_clock()
        for i in range(self.nrelayed):
            delay_observe(self.stats, sent_at - self.relayed_at[i])
        self.nrelayed = 0

    def run_connected(self, int fd, double now):
        """Receive what the receivers' connected sockets hold (connected.pxi: their reports,
        a WebRTC peer's STUN and DTLS), a batch from each that is ready, forward it, send
        (fd: the media socket, for what goes out unconnected). Returns datagrams received."""
        cdef epoll_event ready[BATCH_MAX]
        cdef int i, n, k, total = 0
        if self.table.conns.epoll_fd < 0:
            return 0
        with nogil:
            n = epoll_wait(self.table.conns.epoll_fd, ready, BATCH_MAX, 0)
            for i in range(n):
                # An error the socket holds (an ICMP port unreachable from the receiver's
                # host) comes back as one failed receive: it consumes the error, nothing more.
                k = self.rx.recv(ready[i].data.fd)
                if k > 0:
                    total += k
                    self._forward_batch(self.rx, self.tx, fd, now)
            self.tx.flush(fd, self.table)
        return total

    def take_aside(self):
        """The STUN and DTLS datagrams of the batches since the last call, with their sources:
        [(datagram, (ip, port))] (demux.pxi). Only while set_aside is on."""
        return self.aside.take()

    def take_exports(self):
        """What the last batches passed on: [(meeting id, records)], one item per meeting run
        (fanout.pxi); the worker publishes each, topic = meeting id."""
        return self.exports.take()

    def run_import(self, int fd, const uint8_t[::1] records not None, double now):
        """Serve this worker's members from another worker's records, then send. Returns the
        records used, or -1 if the message was malformed (counted as a drop)."""
        cdef int n
        if records.shape[0] == 0:
            return 0
        with nogil:
            self.now = now
            n = self._import(&records[0], <size_t>records.shape[0], self.tx, fd)
            self.tx.flush(fd, self.table)
        return n

    def process_import(self, const uint8_t[::1] records not None, SendBatch tx not None,
                       double now=0.0):
        """run_import without a socket, for tests: the copies land in tx."""
        cdef int n
        if records.shape[0] == 0:
            return 0
        with nogil:
            self.now = now
            n = self._import(&records[0], <size_t>records.shape[0], tx, -1)
        return n

    def keyframes_due(self, int fd, double now):
        """Send the keyframe requests that follow merged ones whose interval has ended (the
        worker calls it a few times a second); how many."""
        cdef int n
        with nogil:
            self.now = now
            n = self._keyframes_due(self.tx, fd, now)
            self.tx.flush(fd, self.table)
        return n

    def process_keyframes_due(self, SendBatch tx not None, double now):
        """keyframes_due() without a socket, for tests: the requests land in tx."""
        cdef int n
        with nogil:
            self.now = now
            n = self._keyframes_due(tx, -1, now)
        return n

    def process(self, RecvBatch rx not None, SendBatch tx not None, double now):
        """The loop without sockets: forward what rx holds into tx (tests read tx.items())."""
        with nogil:
            self._forward_batch(rx, tx, -1, now)
        rx.count = 0

    cdef void _forward_batch(self, RecvBatch rx, SendBatch tx, int fd,
                             double now) noexcept nogil:
        cdef int i
        cdef uint8_t* pkt
        cdef uint32_t n
        cdef Counters* c = self.stats
        self.now = now
        self.nrelayed = 0
        for i in range(rx.count):
            pkt = rx.slab + <size_t>i * SLOT_SIZE
            n = rx.lens[i]
            self.stamp = rx.stamps[i]
            c.packets_in += 1
            c.bytes_in += n
            if rx.truncated[i] or n > SLOT_SIZE - RELAY_OVERHEAD:
                c.dropped[DROP_TOO_LARGE] += 1
            elif n < 12 or (pkt[0] >> 6) != 2:
                # Not RTP: a WebRTC peer's STUN or DTLS, if this worker serves them (demux.pxi)
                if not (self.set_aside and n >= SIGNALLING_MIN and is_signalling(pkt, n)):
                    c.dropped[DROP_MALFORMED] += 1
                elif self.budget == 0:
                    c.dropped[DROP_SIGNALLING_LIMIT] += 1
                elif self.aside.put(pkt, n, &rx.names[i], rx.namelens[i]):
                    self.budget -= 1
                else:
                    c.dropped[DROP_MALFORMED] += 1
            elif is_rtcp(pkt):
                self._burst_send(tx, fd)    # what came before it goes out before it
                self._forward_rtcp(tx, fd, pkt, n, &rx.names[i], rx.namelens[i], now)
            else:
                self._forward_rtp(tx, fd, pkt, n, &rx.names[i], rx.namelens[i])
        self._burst_send(tx, fd)

    # -- RTP -----------------------------------------------------------------------------------

    cdef void _forward_rtp(self, SendBatch tx, int fd, uint8_t* pkt, uint32_t n,
                           const sockaddr_in6* src, socklen_t srclen) noexcept nogil:
        cdef const SsrcEntry* found[MAX_HOLDERS]
        cdef const SsrcEntry* order[MAX_CANDIDATES]
        cdef int k, i, tries, rc = SRTP_ERR_AUTH, reason = DROP_UNKNOWN_SOURCE
        cdef Participant* p = NULL
        cdef SenderStream* st = NULL
        cdef SrtpContext* up
        cdef size_t plain_len = 0
        cdef uint64_t index = 0
        cdef int32_t slot = -1
        # Usually one participant has this SSRC, and it is already at this address: one tag
        # check. Otherwise a few, in the order table_candidates gives (a sender's first
        # packet, a new port, an SSRC that participants of other meetings declared too).
        k = table_find_senders(self.table, load_be32(pkt + 8), found, MAX_HOLDERS)
        tries = table_candidates(self.table, found, k, src, srclen, order)
        for i in range(tries):
            p = &self.table.parts[order[i].slot]
            if p.flags & PF_EJECTED:
                reason = DROP_EJECTED
                continue
            up = table_uplink(p)
            if up == NULL:
                reason = DROP_CRYPTO
                continue
            if tries > 1:
                memcpy(self.scratch, pkt, n)   # GCM decrypts before it can reject
            st = &p.streams[order[i].stream]
            rc = srtp_unprotect(up, &st.rtp_rx, pkt, n, &plain_len, &index)
            if rc == SRTP_OK:
                slot = order[i].slot
                break
            reason = drop_for(rc)
            if tries > 1:
                memcpy(pkt, self.scratch, n)
        if slot < 0:
            self.stats.dropped[reason] += 1
            return
        table_latch(self.table, <uint32_t>slot, src, srclen)
        p.packets_in += 1
        p.bytes_in += n
        reason = self._may_send(p)
        if reason >= 0:
            self.stats.dropped[reason] += 1
            return
        keep_for_nacks(st, <uint32_t>p.up_fp, index, pkt, plain_len, self.now)
        self._burst_add(tx, fd, <uint32_t>slot, st.slot, pkt, plain_len, index)
        if self.stamp > 0:
            self.relayed_at[self.nrelayed] = self.stamp
            self.nrelayed += 1
        if self.table.meetings[p.meeting].nremote or self.table.meetings[p.meeting].recording:
            self._export(EXPORT_RTP, p, st.ssrc, index, pkt, plain_len)

    cdef void _export(self, uint8_t kind, const Participant* p, uint32_t ssrc, uint64_t index,
                      const uint8_t* plain, size_t plain_len) noexcept nogil:
        if self.exports.add(kind, self.table.meetings[p.meeting].id, p.id, ssrc, index, plain,
                            plain_len):
            self.stats.exported += 1
        else:
            self.stats.dropped[DROP_OVERFLOW] += 1

    cdef int _may_send(self, const Participant* p) noexcept nogil:
        """-1 if p's media may go out, or the reason it may not."""
        cdef const Meeting* m = &self.table.meetings[p.meeting]
        if m.ended:
            return DROP_ENDED
        if p.flags & PF_EJECTED:
            return DROP_EJECTED
        if m.webinar and p.role == ROLE_ATTENDEE:
            return DROP_NOT_ALLOWED
        if p.flags & PF_MUTED:
            return DROP_MUTED
        return -1

    cdef void _burst_add(self, SendBatch tx, int fd, uint32_t sender, uint32_t stream_slot,
                         const uint8_t* plain, size_t plain_len,
                         uint64_t index) noexcept nogil:
        """Add a packet to the burst, after sending the one gathered if it is another
        stream's (or full)."""
        if self.nburst and (self.burst_sender != sender or self.burst_stream != stream_slot
                            or self.nburst == BATCH_MAX):
            self._burst_send(tx, fd)
        self.burst_sender = sender
        self.burst_stream = stream_slot
        self.burst_plain[self.nburst] = plain
        self.burst_len[self.nburst] = <uint32_t>plain_len
        self.burst_index[self.nburst] = index
        self.nburst += 1

    cdef void _burst_send(self, SendBatch tx, int fd) noexcept nogil:
        """Fan out the burst gathered, if any."""
        cdef uint32_t n = self.nburst
        if n:
            self.nburst = 0
            self._fan_out_rtp(tx, fd, self.burst_sender, self.burst_stream, n,
                              self.burst_plain, self.burst_len, self.burst_index)

    cdef void _fan_out_rtp(self, SendBatch tx, int fd, uint32_t sender, uint32_t stream_slot,
                           uint32_t n, const uint8_t** plain, const uint32_t* plain_len,
                           const uint64_t* index) noexcept nogil:
        """Copies of n packets of one stream for every receiver, receiver by receiver: each
        one's copies are consecutive, for the SendBatch to group."""
        cdef const Meeting* m = &self.table.meetings[self.table.parts[sender].meeting]
        cdef uint32_t j, r, k
        cdef uint32_t parked[BATCH_MAX]     # each packet's plaintext, once parked
        cdef Participant* rp
        for k in range(n):
            parked[k] = PARK_PACKETS
        for j in range(m.nmembers):
            r = m.members[j]
            if r == sender:
                continue
            rp = &self.table.parts[r]
            if rp.flags & PF_REMOTE:
                continue                # its home worker sends it these packets
            if rp.flags & PF_EJECTED:
                self.stats.dropped[DROP_EJECTED] += n
                continue
            if not rp.flags & PF_HAS_ADDRESS:
                self.stats.dropped[DROP_NO_CONSENT if rp.flags & PF_ADDRESS_PENDING
                                   else DROP_NO_ADDRESS] += n
                continue
            if stream_slot >= rp.out_init:  # only if out of memory at a join
                self.stats.dropped[DROP_CRYPTO] += n
                continue
            for k in range(n):
                self._copy(tx, fd, r, stream_slot, sender, plain[k], plain_len[k], index[k],
                           &parked[k])

    cdef int _copy(self, SendBatch tx, int fd, uint32_t r, uint32_t stream_slot,
                   uint32_t sender, const uint8_t* plain, size_t plain_len,
                   uint64_t index, uint32_t* parked) noexcept nogil:
        """Receiver r's copy of a packet of stream_slot, at the receiver's own index
        (table.pxi, "Never the same index twice"): protected and queued (1), or, while that
        index is not reserved durably, parked (parked: where this packet's plaintext is
        parked, or PARK_PACKETS; NULL: parking is over, drop instead)."""
        cdef Participant* rp = &self.table.parts[r]
        cdef OutStream* out = &rp.out[stream_slot]
        cdef uint8_t* slot
        cdef size_t out_len
        cdef uint64_t o
        cdef int rc
        if out.route == ROUTE_UNKNOWN:
            out.route = table_route(rp, load_be32(plain + 8), &out.port, &out.pt)
        if out.route == ROUTE_SKIP:
            return 0                    # its SDP does not describe this stream
        if not out_bound_to(out, &self.table.parts[sender]):
            out_bind(out, index, &self.table.parts[sender])
            self._first_of_stream(tx, fd, sender, stream_slot)
        o = index + out.delta
        if <int64_t>o < 0:
            self.stats.dropped[DROP_LATE] += 1  # from before this mapping's first packet
            return 0
        if o + RESERVE_RTP // 2 >= out.limit:  # ask for more before it runs out
            if o + RESERVE_RTP > out.wanted:
                out.wanted = o + RESERVE_RTP
            table_queue(self.table, r)
        if o >= out.limit:
            if parked == NULL:
                self.stats.dropped[DROP_UNRESERVED] += 1
            else:
                self._park(r, stream_slot, sender, plain, plain_len, index, parked)
            return 0
        slot = self._slot(tx, fd)
        if slot == NULL:
            return 0
        memcpy(slot, plain, plain_len)
        store_be16(slot + 2, <uint16_t>(o & 0xFFFF))  # the receiver's sequence number
        if out.pt != PT_KEEP:   # the receiver's number for the codec, the marker bit kept
            slot[1] = (slot[1] & 0x80) | out.pt
        rc = srtp_protect_at(rp.down, &out.tx, slot, plain_len, SLOT_SIZE, o, &out_len)
        if rc != SRTP_OK:
            self.stats.dropped[drop_for(rc)] += 1
            return 0
        if o >= out.next:
            out.next = o + 1
        self._queue(tx, <uint32_t>out_len, r, out.port if out.route == ROUTE_PORT else 0)
        return 1

    cdef void _park(self, uint32_t r, uint32_t stream_slot, uint32_t sender,
                    const uint8_t* plain, size_t plain_len, uint64_t index,
                    uint32_t* parked) noexcept nogil:
        """Hold a copy until release(): the plaintext once per packet, a small entry per
        copy. Past PARK_PACKETS packets or PARK_ENTRIES_MAX copies, it is dropped."""
        cdef ParkedCopy* grown
        cdef ParkedCopy* e
        cdef uint32_t cap
        if parked[0] == PARK_PACKETS:
            if self.nparked_plain == PARK_PACKETS:
                self.stats.dropped[DROP_UNRESERVED] += 1
                return
            parked[0] = self.nparked_plain
            memcpy(self.parked_plain + <size_t>parked[0] * SLOT_SIZE, plain, plain_len)
            self.parked_lens[parked[0]] = <uint32_t>plain_len
            self.nparked_plain += 1
        if self.nparked == self.parked_cap:
            cap = self.parked_cap * 2 if self.parked_cap else 256
            grown = NULL
            if cap <= PARK_ENTRIES_MAX:
                grown = <ParkedCopy*>realloc(self.parked, cap * sizeof(ParkedCopy))
            if grown == NULL:
                self.stats.dropped[DROP_UNRESERVED] += 1
                return
            self.parked = grown
            self.parked_cap = cap
        e = &self.parked[self.nparked]
        e.receiver = r
        e.receiver_id = self.table.parts[r].id
        e.stream_slot = stream_slot
        e.sender = sender
        e.sender_id = self.table.parts[sender].id
        e.packet = parked[0]
        e.index = index
        self.nparked += 1
        self.stats.parked += 1

    cdef int _release(self, SendBatch tx, int fd) noexcept nogil:
        """Send what was parked, in order; the table may not have changed since (the worker
        releases right after the reservations' commit), but every copy is checked again."""
        cdef uint32_t i
        cdef int sent = 0
        cdef ParkedCopy* e
        cdef Participant* rp
        for i in range(self.nparked):
            e = &self.parked[i]
            if e.receiver >= self.table.parts_cap:
                continue
            rp = &self.table.parts[e.receiver]
            if rp.meeting < 0 or rp.id != e.receiver_id or e.stream_slot >= rp.out_init:
                continue                # it left meanwhile
            if (e.sender >= self.table.parts_cap or self.table.parts[e.sender].meeting < 0
                    or self.table.parts[e.sender].id != e.sender_id):
                continue                # so did the sender
            if self.table.meetings[rp.meeting].ended:
                self.stats.dropped[DROP_ENDED] += 1
            elif rp.flags & PF_EJECTED:
                self.stats.dropped[DROP_EJECTED] += 1
            elif not rp.flags & PF_HAS_ADDRESS:
                self.stats.dropped[DROP_NO_ADDRESS] += 1
            else:
                sent += self._copy(tx, fd, e.receiver, e.stream_slot, e.sender,
                                   self.parked_plain + <size_t>e.packet * SLOT_SIZE,
                                   self.parked_lens[e.packet], e.index, NULL)
        self.nparked = 0
        self.nparked_plain = 0
        return sent

    cdef inline void _queue(self, SendBatch tx, uint32_t n, uint32_t r,
                            uint16_t port_be) noexcept nogil:
        """Queue the slot _slot() gave, now n bytes for receiver r: to its address, or to
        another port of its host (port_be), from its connected socket where it has one; for
        a receiver with a hop on the AF_XDP path, onto its ring at once (xdp.pxi)."""
        cdef Participant* rp = &self.table.parts[r]
        if rp.hop != NULL and port_be == 0 and self._frame_now(tx, n, rp):
            return
        tx.commit_port(n, &rp.addr, rp.addr_len, <int32_t>r, port_be,
                       -1 if port_be else table_receiver_socket(self.table, rp))

    cdef inline bint _frame_now(self, SendBatch tx, uint32_t n, Participant* rp) noexcept nogil:
        """The copy in tx's next free slot (n bytes) as a frame on the AF_XDP ring, the slot
        left free; False, with nothing done, when the ring is full or was since the last flush
        (it is queued instead, behind the copies that found it full: xdp.pxi)."""
        cdef XdpPath* x = &self.table.xdp
        if x.queueing:
            return False
        if not relay_xsk_send(x.xsk, rp.hop, &rp.addr, tx.slot(), n):
            x.queueing = True
            return False
        self.stats.packets_out += 1
        self.stats.bytes_out += n
        rp.packets_out += 1
        rp.bytes_out += n
        x.unwoken += 1
        if x.unwoken >= SEND_FLUSH:
            xdp_wake(x)
        return True

    cdef uint8_t* _slot(self, SendBatch tx, int fd) noexcept nogil:
        """A free send slot. With a socket, what is queued goes out every SEND_FLUSH packets,
        so the first receivers of a large fan-out need not wait for the last ones to be
        encrypted (256 against 1024: bench/RESULTS.md, "Send batch size")."""
        cdef uint8_t* slot
        if fd >= 0 and tx.count >= SEND_FLUSH:
            tx.flush(fd, self.table)
        slot = tx.slot()
        if slot == NULL:
            self.stats.dropped[DROP_OVERFLOW] += 1
        return slot

    # -- RTCP ----------------------------------------------------------------------------------

    cdef void _forward_rtcp(self, SendBatch tx, int fd, uint8_t* pkt, uint32_t n,
                            const sockaddr_in6* src, socklen_t srclen,
                            double now) noexcept nogil:
        """Sender reports go to the receivers; PLI/FIR to the sender of that stream, at most
        once a second per stream; a NACK is answered from the retransmission cache (rtx.pxi);
        everything else (receiver reports, SDES, BYE) ends here. The sender is found by a
        declared SSRC, or else by its address (or the port below, for clients that send RTCP
        from RTP port + 1)."""
        cdef const SsrcEntry* found[MAX_HOLDERS]
        cdef const SsrcEntry* order[MAX_CANDIDATES]
        cdef Participant* p = NULL
        cdef SrtpIndex* rx
        cdef SrtpContext* up
        cdef int32_t slot = -1, only = -1
        cdef size_t plain_len = 0, off = 0, sub_len
        cdef int k, i, rc = SRTP_ERR_AUTH, reason = DROP_UNKNOWN_SOURCE, handled = 0
        cdef uint32_t target
        cdef const Meeting* m
        k = table_find_senders(self.table, load_be32(pkt + 4), found, MAX_HOLDERS)
        if k == 0:
            only = table_find_rtcp_source(self.table, src, srclen)
            if only < 0:
                self.stats.dropped[DROP_UNKNOWN_SOURCE] += 1
                return
            k = 1
        else:   # as for RTP: several participants may claim one SSRC; the keys decide
            k = table_candidates(self.table, found, k, src, srclen, order)
        for i in range(k):
            p = &self.table.parts[only if only >= 0 else order[i].slot]
            rx = (&p.rtcp_rx_other if only >= 0
                  else &p.streams[order[i].stream].rtcp_rx)
            if p.flags & PF_EJECTED:
                reason = DROP_EJECTED
                continue
            up = table_uplink(p)
            if up == NULL:
                reason = DROP_CRYPTO
                continue
            if k > 1:
                memcpy(self.scratch, pkt, n)   # GCM decrypts before it can reject
            rc = srtcp_unprotect(up, rx, pkt, n, &plain_len)
            if p.nstreams == 0:
                srtp_keys_release(&up.rtcp)     # a listener's reports are rare: keep no context
            if rc == SRTP_OK:
                slot = only if only >= 0 else order[i].slot
                break
            reason = drop_for(rc)
            if k > 1:
                memcpy(pkt, self.scratch, n)
        if slot < 0:
            self.stats.dropped[reason] += 1
            return
        # RTCP latches a listener that has no address yet (or confirms the one it gave at
        # join), but never moves one: clients send it from another port (ffmpeg: + 1).
        if not p.flags & PF_HAS_ADDRESS:
            table_latch(self.table, <uint32_t>slot, src, srclen)
        p.packets_in += 1
        p.bytes_in += n
        if self.table.meetings[p.meeting].ended:
            self.stats.dropped[DROP_ENDED] += 1
            return
        # Walk the compound packet (RFC 3550 section 6.1) for feedback to pass on.
        while off + 4 <= plain_len:
            sub_len = (<size_t>load_be16(pkt + off + 2) + 1) * 4
            if off + sub_len > plain_len:
                break
            if pkt[off + 1] == 206 and sub_len >= 12 and (pkt[off] & 0x1F) in (1, 4):
                # PLI (FMT 1) names the media SSRC in its header; FIR (FMT 4) in its FCI
                # (RFC 4585 section 6.3.1, RFC 5104 section 4.3.1).
                target = load_be32(pkt + off + 8)
                if pkt[off] & 0x1F == 4:
                    target = load_be32(pkt + off + 12) if sub_len >= 20 else 0
                self._forward_feedback(tx, fd, pkt + off, sub_len, target, p.meeting, now)
                handled = 1
            elif pkt[off + 1] == 205 and sub_len >= 16 and (pkt[off] & 0x1F) == 1:
                self._answer_nack(tx, fd, <uint32_t>slot, pkt + off, sub_len)
                handled = 1
            elif pkt[off + 1] == 201:   # RR: its report blocks after the reporter's SSRC
                self._reception(p, pkt + off + 8, pkt[off] & 0x1F, sub_len - 8, now)
            elif pkt[off + 1] == 200 and sub_len >= 28:     # SR: after the sender info
                self._reception(p, pkt + off + 28, pkt[off] & 0x1F, sub_len - 28, now)
            off += sub_len
        if pkt[1] == 200:
            reason = self._may_send(p)
            if reason >= 0:
                self.stats.dropped[reason] += 1
            else:
                self._remember_sr(p, pkt, plain_len, now)
                self._fan_out_rtcp(tx, fd, <uint32_t>slot, pkt, plain_len)
                # Other workers find the sender by a declared SSRC: a sender that sends its
                # reports from another one has its first stream's named in the record.
                m = &self.table.meetings[p.meeting]
                if (m.nremote or m.recording) and p.nstreams:
                    self._export(EXPORT_RTCP, p, p.streams[0].ssrc, 0, pkt, plain_len)
        elif not handled:
            self.stats.rtcp_terminated += 1

    # -- keyframe requests ---------------------------------------------------------------------
    #
    # A PLI or FIR (RFC 4585 section 6.3.1, RFC 5104 section 4.3.1) asks a sender for a
    # keyframe, the costliest thing it makes, and a webinar's receivers ask together (a
    # thousand joining at once, a lossy network's worth of decoders). So a stream's requests are
    # merged: one goes to the sender per keyframe_interval at most, and one merged in between is
    # not forgotten: when the interval ends a PLI follows (the retry: that receiver may have
    # asked after the keyframe the first request brought). The sender's home worker alone
    # protects RTCP for it, so a request for a sender homed elsewhere is passed there
    # (EXPORT_FEEDBACK, fanout.pxi) and merged there with everyone else's, after the same
    # merging here. A receiver's first packet of a video stream (or of a new source on it) asks
    # one too: a newcomer need not wait for the sender's next keyframe.

    cdef void _forward_feedback(self, SendBatch tx, int fd, const uint8_t* fb, size_t fb_len,
                                uint32_t target_ssrc, int32_t meeting,
                                double now) noexcept nogil:
        """A receiver's PLI/FIR, for the sender of target_ssrc in the same meeting."""
        cdef const SsrcEntry* found[MAX_HOLDERS]
        cdef int k, i
        k = table_find_senders(self.table, target_ssrc, found, MAX_HOLDERS)
        for i in range(k):
            if self.table.parts[found[i].slot].meeting == meeting:
                self._keyframe(tx, fd, <uint32_t>found[i].slot, found[i].stream, fb, fb_len, now)
                return
        self.stats.dropped[DROP_UNKNOWN_SOURCE] += 1

    cdef void _keyframe(self, SendBatch tx, int fd, uint32_t s, uint32_t stream,
                        const uint8_t* fb, size_t fb_len, double now) noexcept nogil:
        """Ask sender s for a keyframe of its stream (fb: the PLI or FIR to pass on), merged
        as the section above says, or count why not."""
        cdef Participant* sp = &self.table.parts[s]
        cdef SenderStream* st = &sp.streams[stream]
        if sp.flags & PF_EJECTED:
            self.stats.dropped[DROP_EJECTED] += 1
            return
        if now - st.feedback_at < self.keyframe_interval:
            self.stats.dropped[DROP_RATE_LIMITED] += 1
            if not st.feedback_pending and self.npending < KEYFRAMES_PENDING:
                st.feedback_pending = True
                self.pending_slot[self.npending] = s
                self.pending_id[self.npending] = sp.id
                self.pending_stream[self.npending] = stream
                self.npending += 1
            return
        if sp.flags & PF_REMOTE:
            st.feedback_at = now
            st.feedback_pending = False
            self._export(EXPORT_FEEDBACK, sp, st.ssrc, 0, fb, fb_len)
            return
        if not sp.flags & PF_HAS_ADDRESS:
            self.stats.dropped[DROP_NO_ADDRESS] += 1
            return
        st.feedback_at = now
        st.feedback_pending = False
        self._send_rtcp_to(tx, fd, s, fb, fb_len)

    cdef void _ask_keyframe(self, SendBatch tx, int fd, uint32_t s, uint32_t stream,
                            double now) noexcept nogil:
        """The relay's own PLI for a stream: sender SSRC 0 (it sends no media of its own)."""
        cdef uint8_t pli[12]
        pli[0] = 0x81           # version 2, FMT 1: PLI
        pli[1] = 206            # PSFB
        store_be16(pli + 2, 2)
        store_be32(pli + 4, 0)
        store_be32(pli + 8, self.table.parts[s].streams[stream].ssrc)
        self._keyframe(tx, fd, s, stream, pli, 12, now)

    cdef void _first_of_stream(self, SendBatch tx, int fd, uint32_t sender,
                               uint32_t stream_slot) noexcept nogil:
        """A receiver gets its first packet of a stream (from this source): a video stream's
        receiver needs a keyframe to start."""
        cdef Participant* sp = &self.table.parts[sender]
        cdef uint32_t i
        for i in range(sp.nstreams):
            if sp.streams[i].slot == stream_slot:
                if sp.streams[i].video:
                    self._ask_keyframe(tx, fd, sender, i, self.now)
                return

    cdef int _keyframes_due(self, SendBatch tx, int fd, double now) noexcept nogil:
        """The PLIs that follow merged requests whose interval has ended."""
        cdef uint32_t i = 0, s, stream
        cdef int sent = 0
        cdef Participant* sp
        while i < self.npending:
            s = self.pending_slot[i]
            stream = self.pending_stream[i]
            sp = &self.table.parts[s] if s < self.table.parts_cap else NULL
            if (sp == NULL or sp.meeting < 0 or sp.id != self.pending_id[i]
                    or stream >= sp.nstreams or not sp.streams[stream].feedback_pending):
                pass                    # it left, or its request went out meanwhile
            elif now - sp.streams[stream].feedback_at >= self.keyframe_interval:
                sp.streams[stream].feedback_pending = False
                self._ask_keyframe(tx, fd, s, stream, now)
                sent += 1
            else:
                i += 1
                continue
            self.npending -= 1          # this entry is done: the last one takes its place
            self.pending_slot[i] = self.pending_slot[self.npending]
            self.pending_id[i] = self.pending_id[self.npending]
            self.pending_stream[i] = self.pending_stream[self.npending]
        return sent

    # -- receiver reports (reports.pxi) ---------------------------------------------------------

    cdef void _remember_sr(self, Participant* p, const uint8_t* sr, size_t n,
                           double now) noexcept nogil:
        """A sender report of p's about to be forwarded: its stream notes it (round-trip
        times of the receivers' reports)."""
        cdef uint32_t i, ssrc
        if n < 28:
            return
        ssrc = load_be32(sr + 4)
        for i in range(p.nstreams):
            if p.streams[i].ssrc == ssrc:
                sr_remember(&p.streams[i], sr, now)
                return

    cdef void _reception(self, Participant* receiver, const uint8_t* blocks, int count,
                         size_t avail, double now) noexcept nogil:
        """The report blocks (24 bytes each) of one RR or SR of `receiver`: those about a
        stream of its meeting are put to use."""
        cdef const SsrcEntry* found[MAX_HOLDERS]
        cdef int b, k, i
        cdef const Participant* sp
        for b in range(count):
            if <size_t>(b + 1) * 24 > avail:
                return
            k = table_find_senders(self.table, load_be32(blocks + b * 24), found, MAX_HOLDERS)
            for i in range(k):
                sp = &self.table.parts[found[i].slot]
                if sp.meeting == receiver.meeting and sp != receiver:
                    rr_block(self.stats, receiver, &sp.streams[found[i].stream],
                             blocks + b * 24, now)
                    break

    cdef void _answer_nack(self, SendBatch tx, int fd, uint32_t r, const uint8_t* fb,
                           size_t fb_len) noexcept nogil:
        """Receiver r's generic NACK (RFC 4585 section 6.2.1: the media SSRC, then entries of a
        PID and a bitmask of the 16 packets after it): each packet it names is sent again from
        the stream's cache, or asked of its sender (rtx.pxi), or counted as why not."""
        cdef const SsrcEntry* found[MAX_HOLDERS]
        cdef Participant* rp = &self.table.parts[r]
        cdef Participant* sp = NULL
        cdef SenderStream* st = NULL
        cdef uint32_t media_ssrc = load_be32(fb + 8), sender = 0
        cdef uint64_t ask[NACK_MAX_FCI]
        cdef int nask = 0, k, i, bit, outcome
        cdef size_t off, n
        cdef uint16_t pid, blp
        self.stats.nacks += 1
        k = table_find_senders(self.table, media_ssrc, found, MAX_HOLDERS)
        for i in range(k):
            if self.table.parts[found[i].slot].meeting == rp.meeting:
                sender = <uint32_t>found[i].slot
                sp = &self.table.parts[sender]
                st = &sp.streams[found[i].stream]
                if st.cache == NULL:    # kept from now on, for the next NACKs
                    st.cache = rtx_cache_new()
                break
        off = 12
        while off + 4 <= fb_len:
            pid = load_be16(fb + off)
            blp = load_be16(fb + off + 2)
            for bit in range(17):
                if bit and not blp & (1 << (bit - 1)):
                    continue
                if st == NULL:
                    outcome = RTX_UNKNOWN_STREAM
                else:
                    outcome = self._resend(tx, fd, r, sp, st, <uint16_t>(pid + bit), ask, &nask)
                self.stats.rtx[outcome] += 1
            off += 4
        if nask:
            n = nack_build(self.scratch, media_ssrc, ask, nask)
            if sp.flags & PF_REMOTE:    # its home worker asks it (fanout.pxi)
                self._export(EXPORT_NACK, sp, st.ssrc, 0, self.scratch, n)
            else:
                self._send_rtcp_to(tx, fd, sender, self.scratch, n)

    cdef int _resend(self, SendBatch tx, int fd, uint32_t r, Participant* sp, SenderStream* st,
                     uint16_t seq, uint64_t* ask, int* nask) noexcept nogil:
        """One packet a NACK names, by the receiver's sequence number: sent again, or put in
        `ask` for its sender. Returns the RTX_* outcome."""
        cdef Participant* rp = &self.table.parts[r]
        cdef OutStream* out
        cdef uint64_t o, index
        cdef const uint8_t* plain
        cdef uint8_t* slot
        cdef size_t plain_len = 0, out_len
        cdef int rc
        if st.slot >= rp.out_init or rp.flags & PF_REMOTE or not rp.flags & PF_HAS_ADDRESS:
            return RTX_NOT_SENT         # (a receiver homed elsewhere is answered there)
        out = &rp.out[st.slot]
        if (out.next == 0 or not out_bound_to(out, sp) or out.route == ROUTE_SKIP
                or out.route == ROUTE_UNKNOWN):
            return RTX_NOT_SENT
        o = nack_index(out.next, seq)
        if o < out.resend_from or o >= out.next:
            return RTX_NOT_SENT         # before the present mapping: other bytes went there
        index = o - out.delta
        if st.cache == NULL:            # out of memory when the first NACK came
            return RTX_NOT_CACHED
        # The receiver's budget, for what it gets again and what it has asked of the sender.
        if self.now - rp.rtx_window_at >= 1.0:
            rp.rtx_window_at = self.now
            rp.rtx_window_out = rp.packets_out
            rp.rtx_window_sent = 0
        if rp.rtx_window_sent >= RTX_BURST + (rp.packets_out - rp.rtx_window_out) // RTX_SHARE:
            return RTX_RATE_LIMITED
        plain = rtx_cache_get(st.cache, index, out.source_key, self.now,
                              CACHE_AGE if st.video else CACHE_AGE_AUDIO, &plain_len)
        if plain == NULL:
            # A sender homed here needs an address; one homed elsewhere is asked from there.
            if (sp.flags & PF_EJECTED or not sp.flags & (PF_HAS_ADDRESS | PF_REMOTE)
                    or nask[0] == NACK_MAX_FCI or not rtx_ask(st.cache, index, self.now)):
                return RTX_NOT_CACHED
            ask[nask[0]] = index
            nask[0] += 1
            rp.rtx_window_sent += 1
            return RTX_ASKED_SENDER
        slot = self._slot(tx, fd)
        if slot == NULL:                # no send slot (only without a socket: tests)
            return RTX_RATE_LIMITED
        # The packet as it first went out (_copy): the same rewrites, the same index.
        memcpy(slot, plain, plain_len)
        store_be16(slot + 2, <uint16_t>(o & 0xFFFF))
        if out.pt != PT_KEEP:
            slot[1] = (slot[1] & 0x80) | out.pt
        rc = srtp_protect_again(rp.down, slot, plain_len, SLOT_SIZE, o, &out_len)
        if rc != SRTP_OK:
            self.stats.dropped[drop_for(rc)] += 1
            return RTX_NOT_CACHED
        rp.rtx_window_sent += 1
        self._queue(tx, <uint32_t>out_len, r, out.port if out.route == ROUTE_PORT else 0)
        return RTX_SERVED

    cdef void _fan_out_rtcp(self, SendBatch tx, int fd, uint32_t sender, const uint8_t* plain,
                            size_t plain_len) noexcept nogil:
        cdef const Meeting* m = &self.table.meetings[self.table.parts[sender].meeting]
        cdef uint32_t j, r
        cdef uint16_t port = 0
        cdef uint8_t pt          # unused: RTCP keeps its packet type
        cdef uint8_t route
        for j in range(m.nmembers):
            r = m.members[j]
            if r == sender or self.table.parts[r].flags & PF_REMOTE:
                continue
            if self.table.parts[r].flags & PF_EJECTED:
                self.stats.dropped[DROP_EJECTED] += 1
            elif not self.table.parts[r].flags & PF_HAS_ADDRESS:
                self.stats.dropped[DROP_NO_CONSENT
                                   if self.table.parts[r].flags & PF_ADDRESS_PENDING
                                   else DROP_NO_ADDRESS] += 1
            else:
                # A receiver with a port per stream takes a report on that stream's port + 1.
                route = table_route(&self.table.parts[r], load_be32(plain + 4), &port, &pt)
                if route == ROUTE_SKIP:
                    continue
                if route == ROUTE_PORT:
                    port = htons(ntohs(port) + 1)
                self._send_rtcp_to(tx, fd, r, plain, plain_len,
                                   port if route == ROUTE_PORT else 0)

    cdef int _send_rtcp_to(self, SendBatch tx, int fd, uint32_t r, const uint8_t* plain,
                           size_t plain_len, uint16_t port_be=0) noexcept nogil:
        cdef Participant* rp = &self.table.parts[r]
        cdef uint8_t* slot
        cdef size_t out_len
        cdef int rc
        # Its SRTCP index, reserved like the RTP ones (at join: so this never waits).
        if <uint64_t>rp.rtcp_tx_next + RESERVE_RTCP // 2 >= rp.rtcp_limit:
            rp.rtcp_wanted = <uint32_t>min(<uint64_t>rp.rtcp_tx_next + RESERVE_RTCP,
                                           <uint64_t>0x80000000)
            table_queue(self.table, r)
        if rp.rtcp_tx_next >= rp.rtcp_limit:
            self.stats.dropped[DROP_UNRESERVED] += 1
            return 0
        slot = self._slot(tx, fd)
        if slot == NULL:
            return 0
        memcpy(slot, plain, plain_len)
        rc = srtcp_protect(rp.down, &rp.rtcp_tx_next, slot, plain_len, SLOT_SIZE, &out_len)
        if rp.nstreams == 0:
            srtp_keys_release(&rp.down.rtcp)   # a listener gets RTCP rarely: keep no context
        if rc != SRTP_OK:
            self.stats.dropped[drop_for(rc)] += 1
            return 0
        self._queue(tx, <uint32_t>out_len, r, port_be)
        return 1

    # -- from the other workers ----------------------------------------------------------------

    cdef int _import(self, const uint8_t* data, size_t size, SendBatch tx,
                     int fd) noexcept nogil:
        """Forward each record of another worker to this worker's members (fanout.pxi)."""
        cdef ExportRecord rec
        cdef size_t off = 0, nxt
        cdef int used = 0, reason
        cdef int32_t slot
        cdef uint32_t stream
        cdef Participant* p
        while off < size:
            nxt = export_next(data, size, off, &rec)
            if nxt == 0:
                self.stats.dropped[DROP_MALFORMED] += 1
                self._burst_send(tx, fd)    # its plaintexts are in `data`: not after return
                return -1
            off = nxt
            # Records come from this host's own workers, but are read as untrusted all the
            # same: a packet shorter than its header is never passed on.
            if rec.length < (12 if rec.kind == EXPORT_RTP else 8):
                self.stats.dropped[DROP_MALFORMED] += 1
                continue
            slot = self._imported_sender(&rec, &stream)
            if slot < 0:
                self.stats.dropped[DROP_UNKNOWN_SOURCE] += 1
                continue
            p = &self.table.parts[slot]
            if rec.kind != EXPORT_RTP:
                self._burst_send(tx, fd)        # what came before it goes out before it
            if rec.kind >= EXPORT_FEEDBACK:     # for the sender's home worker: maybe this one
                if p.flags & PF_REMOTE:
                    continue
                used += 1
                if rec.kind == EXPORT_FEEDBACK:
                    self._keyframe(tx, fd, <uint32_t>slot, stream, rec.plain, rec.length,
                                   self.now)
                elif p.flags & PF_EJECTED:
                    self.stats.dropped[DROP_EJECTED] += 1
                elif not p.flags & PF_HAS_ADDRESS:
                    self.stats.dropped[DROP_NO_ADDRESS] += 1
                else:                           # a NACK the other worker merged already
                    self._send_rtcp_to(tx, fd, <uint32_t>slot, rec.plain, rec.length)
                continue
            reason = self._may_send(p)
            if reason >= 0:
                self.stats.dropped[reason] += 1
                continue
            self.stats.imported += 1
            used += 1
            if rec.kind == EXPORT_RTP:
                keep_for_nacks(&p.streams[stream], <uint32_t>p.up_fp, rec.index, rec.plain,
                               rec.length, self.now)
                self._burst_add(tx, fd, <uint32_t>slot, p.streams[stream].slot, rec.plain,
                                rec.length, rec.index)
            else:
                self._remember_sr(p, rec.plain, rec.length, self.now)
                self._fan_out_rtcp(tx, fd, <uint32_t>slot, rec.plain, rec.length)
        self._burst_send(tx, fd)
        return used

    cdef int32_t _imported_sender(self, const ExportRecord* rec,
                                  uint32_t* stream) noexcept nogil:
        """The slot of the record's sender in this worker's table (found by its SSRC, checked
        by its id and meeting), or -1."""
        cdef const SsrcEntry* found[MAX_HOLDERS]
        cdef int k, i
        cdef const Participant* p
        k = table_find_senders(self.table, rec.ssrc, found, MAX_HOLDERS)
        for i in range(k):
            p = &self.table.parts[found[i].slot]
            if p.id == rec.sender and self.table.meetings[p.meeting].id == rec.meeting:
                stream[0] = found[i].stream
                return found[i].slot
        return -1
