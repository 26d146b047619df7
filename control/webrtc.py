"""WHIP and WHEP joins (RFC 9725; WHEP, its viewer's twin): WebRTC peers through the one join
path (docs/ARCHITECTURE.md, "The path of a join"), with an SDP offer for a body.

A WHIP peer publishes, a WHEP peer plays; both join as any participant does, with the same
rules (lock, roles, receive-only attendees, throttles, registration, recording notice, usage),
and differ in three things:

- the credential is the request's `Authorization: Bearer`, and what it is decides the role
  (`join_arguments`): the meeting's host key makes a host; otherwise a WHIP peer of a webinar
  is a panelist (the panelist password) and a WHEP peer an attendee (the meeting password, or
  a registration's join token when the meeting requires registration); in a meeting, where
  everyone may send, both are panelists with the meeting password or a join token.
- the answer is SDP (control/webrtc_sdp/), written inside the join once its worker is
  chosen, so that an offer the relay cannot answer (a viewer that cannot play the presenter's
  codec) is refused before anything is stored or published.
- the SRTP keys come from the DTLS handshake on the peer's home worker (relay/webrtc.py): the
  keys the join stores are placeholders nobody learns, and the routing update carries the ICE
  credentials and the peer's fingerprint instead (wire.WebRtcPeer).

The session's URL (RFC 9725 section 4.2, the `Location` of the 201) carries a token derived
from the participant id under a key of the node's: whoever has the URL may end the session
(DELETE), as the RFC expects of the client that created it; nobody can make one up.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from control import auth
from control.registration_settings import registration_enabled
from control.store import MeetingRow
from control.webrtc_sdp import (
    OfferError,
    PublisherAnswer,
    WebRtcOffer,
    answer_publisher,
    answer_viewer,
    parse_offer,
)
from relay import wire
from relay.vocabulary import Mode, Role

__all__ = [
    "JoinCredential",
    "OfferError",
    "SessionKeys",
    "WebRtcJoin",
    "join_arguments",
    "parse_offer",
]

# The relay's ICE credentials (RFC 8839 section 5.4: ice-chars; a ufrag of at least 4, a
# password of at least 22 characters, 128 bits of randomness here).
_UFRAG_BYTES = 6  # 8 characters of base64
_PWD_BYTES = 18  # 24 characters of base64: 144 bits


def _ice_chars(n: int) -> str:
    """n random bytes as ice-chars (RFC 8839: ALPHA / DIGIT / "+" / "/")."""
    return secrets.token_urlsafe(n).replace("-", "+").replace("_", "/")


@dataclass(frozen=True)
class WebRtcJoin:
    """A WHIP (publishes) or WHEP (plays) join: the peer's offer and the relay's side of the
    answer (its ICE credentials, made here, and the node's certificate fingerprint)."""

    offer: WebRtcOffer
    publishes: bool
    fingerprint: str  # the node's DTLS certificate, "sha-256 AB:CD:..." (relay/certificate.py)
    ice_ufrag: str = field(default_factory=lambda: _ice_chars(_UFRAG_BYTES))
    ice_pwd: str = field(default_factory=lambda: _ice_chars(_PWD_BYTES), repr=False)

    def declared(self, host: str) -> tuple[wire.Stream, ...]:
        """What a publisher will send (its offer's SSRCs and the codecs the relay takes);
        nothing for a viewer. OfferError if the offer cannot be answered."""
        if not self.publishes:
            return ()
        return self._publisher(host, 9, 0).streams

    def answer(
        self, host: str, port: int, meeting_streams: list[wire.Stream], session_id: int
    ) -> tuple[str, tuple[tuple[int, int], ...], wire.WebRtcPeer]:
        """The SDP answer for a peer homed on the worker at host:port; the payload types its
        routing update carries (a publisher: none, it receives nothing; a viewer: each placed
        stream under its own number); and what its home worker needs (wire.WebRtcPeer).
        OfferError if the offer cannot be answered (a viewer that cannot play the meeting's
        codec says which)."""
        types: tuple[tuple[int, int], ...] = ()
        if self.publishes:
            published = self._publisher(host, port, session_id)
            sdp = published.sdp
            peer_ufrag, fingerprint = published.peer_ice_ufrag, published.peer_fingerprint
            role = published.dtls_role
        else:
            viewed = answer_viewer(
                self.offer, streams=meeting_streams, **self._relay_side(host, port, session_id)
            )
            sdp = viewed.sdp
            types = tuple((p.ssrc, p.pt) for p in viewed.placed)
            peer_ufrag, fingerprint = viewed.peer_ice_ufrag, viewed.peer_fingerprint
            role = viewed.dtls_role
        peer = wire.WebRtcPeer(self.ice_ufrag, self.ice_pwd, peer_ufrag, str(fingerprint), role)
        return sdp, types, peer

    def _publisher(self, host: str, port: int, session_id: int) -> PublisherAnswer:
        return answer_publisher(self.offer, **self._relay_side(host, port, session_id))

    def _relay_side(self, host: str, port: int, session_id: int) -> dict[str, Any]:
        """The relay's side of either answer: its ICE credentials, fingerprint and address."""
        return {
            "ice_ufrag": self.ice_ufrag,
            "ice_pwd": self.ice_pwd,
            "fingerprint": self.fingerprint,
            "host": host,
            "port": port,
            "session_id": session_id,
        }


class JoinCredential(NamedTuple):
    """The role a WHIP or WHEP peer joins as, and its credential in the join's terms."""

    role: Role
    host_key: str | None = None
    password: str | None = None
    registration_token: str | None = None


def join_arguments(meeting: MeetingRow, publishes: bool, credential: str) -> JoinCredential:
    """The join's role and credential for a WHIP or WHEP request's bearer credential (the
    rules in the module docstring). Only the host key is recognised as such (a constant-time
    digest comparison of a random secret); anything else is the password or token the role
    needs, checked by the join with its throttles like any other."""
    if auth.secret_matches(credential, meeting.host_key_digest):
        return JoinCredential(Role.HOST, host_key=credential)
    if meeting.mode == Mode.WEBINAR:
        if publishes:
            return JoinCredential(Role.PANELIST, password=credential)
        role = Role.ATTENDEE
    else:
        role = Role.PANELIST
    if registration_enabled(meeting):
        return JoinCredential(role, registration_token=credential)
    return JoinCredential(role, password=credential)


class SessionKeys:
    """The tokens in WHIP and WHEP session URLs: a keyed digest of the participant id."""

    def __init__(self, box_key: bytes) -> None:
        # A key of its own, derived from the node's box key (never the box key itself).
        self._key = hmac.new(box_key, b"relay: WHIP and WHEP session URLs", hashlib.sha256).digest()

    def token(self, participant_id: str) -> str:
        digest = hmac.new(self._key, participant_id.encode(), hashlib.sha256).digest()
        return digest[:18].hex()

    def matches(self, participant_id: str, token: str) -> bool:
        # As bytes: compare_digest refuses str with non-ASCII characters, which a path may hold.
        return hmac.compare_digest(self.token(participant_id).encode(), token.encode())
