"""WebRTC SDP for WHIP (RFC 9725) and WHEP: read a peer's offer, write the relay's answer.

A WHIP client (a browser, OBS, GStreamer's webrtcbin) publishes: it POSTs an offer whose audio
and video m= sections send, and `answer_publisher` answers them `recvonly`. A WHEP client plays:
its m= sections receive, and `answer_viewer` puts the meeting's streams on them, `sendonly`.
`parse_offer` reads either offer (JSEP, RFC 8829) and refuses, with `OfferError`, what the relay
cannot answer; the message says why and the API sends it as a 422. No I/O here: text in, text
and dataclasses out.

What the relay is, as the answer says it:

- One transport per peer: ICE-lite (`a=ice-lite`, RFC 8445 section 2.5) on the relay's one UDP
  port, with one host candidate, all of them at once (`a=end-of-candidates`, RFC 8840). The
  peer's media must therefore be bundled (RFC 8843): with a BUNDLE group, m= sections outside it
  are rejected; without one, only an offer with a single audio or video m= section is answered.
- DTLS-SRTP (`UDP/TLS/RTP/SAVPF`, RFC 5764 section 8) with RTP and RTCP on one port
  (`a=rtcp-mux`, RFC 5761 section 5.1.1; every WebRTC offerer includes it, RFC 8829 section
  5.2.1, so an offer without it is refused rather than answered with a second port).
- The relay answers `a=setup:passive` (it is the DTLS server) unless the offer says passive
  (RFC 8842 section 5.3). RFC 5763 section 5 recommends `active` to save a round trip; passive
  means the worker never starts a handshake, it only answers the peer's ClientHello, which
  arrives from the address the ICE check came from.
- One codec per m= section and no extras: an answer lists the formats the answerer will
  receive (RFC 3264 section 6.1), so leaving RTX, RED and FEC out tells the sender not to use
  them.
  `a=extmap` is parsed and answered with none: the relay forwards packets unchanged and cannot
  keep extension ids consistent between a presenter and each viewer, so it negotiates none and
  browsers then send none (RFC 8285). `a=simulcast` and `a=rid` are left out of the
  answer, which turns simulcast off (RFC 8853); one encoding per m= section is sent.
- SSRCs identify streams: with no MID header extension negotiated, the relay (and a viewer's
  browser) can only map a packet to an m= section by the SSRC the SDP declares (`a=ssrc`, RFC
  5576 section 4.1; RFC 8843 section 9.2). A publisher must declare one media SSRC per m=
  section, as Chrome, Firefox, OBS and webrtcbin do; the answer to a viewer declares the SSRC
  (kept end to end) and an `a=msid` (RFC 8830) for each stream it sends.

Feedback (`a=rtcp-fb`, RFC 4585 section 4.2): the answer keeps `nack pli` and `ccm fir`
(RFC 5104 section 7.1) where offered: the relay passes viewers' keyframe requests on to the
presenter. It leaves out generic `nack` (a viewer would expect retransmissions the relay keeps
no packets for, and a presenter's would reach every viewer as duplicates), `transport-cc` and
`goog-remb` (bandwidth estimates need header extensions the relay does not negotiate, and an
estimate for the relay's hop is not one for the viewers').

Errors never repeat a value from the offer (control/errors.py): m= sections are named by their
position ("m= section 2, video"), codecs only by well-known names.
"""

from control.webrtc_sdp.answer import answer_publisher, answer_viewer
from control.webrtc_sdp.model import (
    MAX_MEDIA_SECTIONS,
    MAX_OFFER_CHARS,
    MAX_OFFER_LINES,
    PROTO,
    Codec,
    Direction,
    Extmap,
    MediaSection,
    OfferError,
    Placement,
    PublisherAnswer,
    Setup,
    SsrcGroup,
    ViewerAnswer,
    WebRtcOffer,
)
from control.webrtc_sdp.offer import parse_offer
from relay.certificate import Fingerprint
from relay.dtls import DtlsRole

__all__ = [
    "MAX_OFFER_CHARS",
    "MAX_OFFER_LINES",
    "MAX_MEDIA_SECTIONS",
    "PROTO",
    "Codec",
    "Direction",
    "DtlsRole",
    "Extmap",
    "Fingerprint",
    "MediaSection",
    "OfferError",
    "Placement",
    "PublisherAnswer",
    "Setup",
    "SsrcGroup",
    "ViewerAnswer",
    "WebRtcOffer",
    "answer_publisher",
    "answer_viewer",
    "parse_offer",
]
