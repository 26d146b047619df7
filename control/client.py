"""A small typed Python client for the relay's HTTP API (README.md, "Serve it"; its OpenAPI at
/openapi.json).

One method per call of the API, synchronous, on httpx. Answers are plain dicts described by
control/answers.py's TypedDicts, the types the server declares for them (what `json.loads`
gives, checked to be an object or a list), so they print, compare and serialise like the JSON
they came from. Only arguments that are not None
are sent, so the server's defaults apply to the rest.

    from control.client import RelayClient, Throttled

    with RelayClient("http://127.0.0.1:8080", token=operator_token) as relay:
        created = relay.create_meeting("Weekly sync")      # host key and password: shown once
        relay.lock(created["id"])
        relay.unlock(created["id"])
        answer = relay.join(created["id"], name="Ada", password=created["password"])
        print(answer["relay"], answer["srtp"]["suite"])     # where to send, and the keys
        open("join.sdp", "w").write(answer["sdp"])          # ffmpeg -i join.sdp
        for p in relay.list_participants(created["id"]):
            print(p["id"], p["name"], p["role"])
        relay.end_meeting(created["id"])

Credentials: `token` is the operator token (every call) or a meeting's host key (that
meeting's calls). `join` never sends it: the meeting password (or the host key, for
`role="host"`) in the body is the credential. The token never appears in `repr()` or in an
exception's message.

TLS: an https:// URL is verified against the CA bundle `ca` names, else $RELAY_CA, else httpx's
default trust store (certifi's, or $SSL_CERT_FILE); a private CA's bundle is a PEM file of its
certificate. A certificate that cannot be verified raises `UntrustedCertificate`, and nothing
is sent. http:// URLs (loopback: `relay serve` refuses plain HTTP elsewhere) ignore both.

Errors: every answer outside 2xx raises an `ApiError` subclass (`Unauthorized` 401,
`Forbidden` 403, `NotFound` 404, `Conflict` 409 and its `Ended`, `Invalid` 422, `Locked` 423,
`ProofOfWorkRequired` 428 with its challenge, `Throttled` 429 with `retry_after`,
`ServerError` 5xx) carrying the server's `status`, `code` and `message`. A relay that cannot
be reached, or an answer that is not the JSON the call returns, raises `RelayClientError`, the
base of them all.

Proof of work: while a meeting is under attack its password joins must carry a solved
challenge (README.md, "Proof of work"). `join` solves it (control/puzzle.py, at most about
1 s at the server's cap) and sends the join again by itself, up to twice; it raises
`ProofOfWorkRequired` only if that did not work or `solve_proof_of_work=False`.
"""

from __future__ import annotations

import os
import ssl
from collections.abc import Callable, Sequence
from types import TracebackType
from typing import Any, NotRequired, cast
from urllib.parse import quote, urlsplit

import httpx
from typing_extensions import TypedDict

from control import puzzle
from control.answers import (
    Controls,
    CreatedMeeting,
    EndedMeeting,
    FfmpegArguments,
    Health,
    JoinAnswer,
    JoinThrottle,
    Meeting,
    MeetingDetail,
    Node,
    Participant,
    ParticipantUpdate,
    RelayAddress,
    SrtpKeys,
    State,
    Stream,
    UsageRecord,
)
from control.client_errors import (
    ApiError,
    Conflict,
    Ended,
    Forbidden,
    Invalid,
    Locked,
    NotFound,
    ProofOfWorkRequired,
    RelayClientError,
    ServerError,
    Throttled,
    Unauthorized,
    UntrustedCertificate,
    error_for,
)
from relay.vocabulary import Kind, Mode, Role, Suite

# The answers (control/answers.py, the types the server declares) and the errors
# (control/client_errors.py) are part of this client's interface: importable from here.
__all__ = [
    "ApiError",
    "Conflict",
    "Controls",
    "CreatedMeeting",
    "Ended",
    "EndedMeeting",
    "Forbidden",
    "Health",
    "Invalid",
    "FfmpegArguments",
    "JoinAnswer",
    "JoinThrottle",
    "Locked",
    "Meeting",
    "MeetingDetail",
    "NotFound",
    "Participant",
    "ParticipantUpdate",
    "ProofOfWorkRequired",
    "RelayAddress",
    "RelayClient",
    "RelayClientError",
    "ServerError",
    "SrtpKeys",
    "Stream",
    "StreamSpec",
    "Throttled",
    "Unauthorized",
    "UntrustedCertificate",
    "UsageRecord",
    "join_first",
]

PAGE = 1000  # rows a list call asks for at once (the API answers at most that)

# A join sends its request at most this often: once without a proof of work, then with a
# solved challenge, and once more if that one was refused (it expired while being solved, or
# the meeting now asks for a harder one).
_PROOF_TRIES = 3


class StreamSpec(TypedDict):
    """A stream a participant will send (`join(streams=...)`); the server's defaults fill in
    what is left out: audio, then payload type 111 and opus/48000/2 for audio, 96 and
    VP8/90000 for video."""

    ssrc: int
    kind: NotRequired[Kind]
    pt: NotRequired[int]
    codec: NotRequired[str]


def _segment(name: str, value: str) -> str:
    """One path segment: percent-encoded, so an id can never change which endpoint is hit."""
    if not isinstance(value, str) or not value:
        raise ValueError(f"{name} must be a non-empty string")
    text = quote(value, safe="")
    return text.replace(".", "%2E") if text in (".", "..") else text


def _drop_none(**fields: Any) -> dict[str, Any]:
    return {name: value for name, value in fields.items() if value is not None}


def _server_verification(scheme: str, ca: str | os.PathLike[str] | None) -> ssl.SSLContext | bool:
    """How the server's certificate is checked: against the CA bundle `ca` (else $RELAY_CA)
    alone, as curl's --cacert does, else against httpx's default trust store (True)."""
    bundle = ca if ca is not None else os.environ.get("RELAY_CA") or None
    if scheme != "https" or bundle is None:
        return True
    try:
        return ssl.create_default_context(cafile=os.fspath(bundle))
    except ssl.SSLError:  # before OSError: it is one
        raise RelayClientError(f"the CA bundle {bundle} holds no PEM certificate") from None
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
        raise RelayClientError(f"cannot read the CA bundle {bundle}: {reason}") from None


def _ssl_error(exc: BaseException) -> ssl.SSLError | None:
    """The OpenSSL error behind an httpx error (httpx raises its own, from httpcore's, from
    this one), if there is one."""
    seen: set[int] = set()
    cause: BaseException | None = exc
    while cause is not None and id(cause) not in seen:
        if isinstance(cause, ssl.SSLError):
            return cause
        seen.add(id(cause))
        cause = cause.__cause__ or cause.__context__
    return None


# --- the client -------------------------------------------------------------------------------


class RelayClient:
    """The relay's HTTP API at `base_url` (e.g. "http://127.0.0.1:8080"; a path prefix such
    as "https://example.org/relay" works too).

    `token`: the operator token or a meeting's host key, sent as `Authorization: Bearer` with
    every call but `join`. `ca`: the PEM CA bundle that an https:// server's certificate is
    verified against (default: $RELAY_CA, else httpx's default trust store). `transport`: an
    httpx transport to use instead of the network (for tests: `httpx.MockTransport`, or
    `httpx.ASGITransport` is for async clients only).
    Use it as a context manager, or call `close()`."""

    def __init__(
        self,
        base_url: str,
        token: str | None = None,
        *,
        timeout: float = 10.0,
        transport: httpx.BaseTransport | None = None,
        ca: str | os.PathLike[str] | None = None,
    ) -> None:
        parts = urlsplit(base_url)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise ValueError(f"the relay API URL must be http(s)://HOST[:PORT], not {base_url!r}")
        if token is not None and (
            not token or not token.isascii() or not token.isprintable() or " " in token
        ):
            # checked here so that httpx never puts it in a "bad header" message
            raise ValueError("the token must be printable ASCII without spaces")
        self.base_url = base_url.rstrip("/")
        self.timeout = timeout
        self._ca = ca
        self._transport = transport
        self.__token = token
        self._http = httpx.Client(
            base_url=self.base_url,
            timeout=timeout,
            transport=transport,
            verify=_server_verification(parts.scheme, ca),
            headers={"Accept": "application/json", "User-Agent": "relay-client/1"},
        )

    def __repr__(self) -> str:
        token = "None" if self.__token is None else "<hidden>"
        return f"RelayClient({self.base_url!r}, token={token})"

    def __enter__(self) -> RelayClient:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    # -- plumbing --

    def _scrub(self, text: str) -> str:
        token = self.__token
        return text.replace(token, "<token>") if token and len(token) >= 4 else text

    def _send(
        self,
        method: str,
        path: str,
        *,
        body: dict[str, Any] | None = None,
        params: dict[str, Any] | None = None,
        auth: bool = True,
    ) -> httpx.Response:
        headers = {}
        if auth and self.__token is not None:
            headers["Authorization"] = f"Bearer {self.__token}"
        try:
            response = self._http.request(method, path, json=body, params=params, headers=headers)
        except httpx.TimeoutException:
            raise RelayClientError(
                f"cannot reach the relay API at {self.base_url}: "
                f"no answer within {self.timeout:g} s"
            ) from None
        except httpx.HTTPError as exc:
            self._raise_for_tls(exc)
            reason = self._scrub(str(exc)) or type(exc).__name__
            if isinstance(exc, httpx.RemoteProtocolError) and self.base_url.startswith("http:"):
                reason += " (if it serves HTTPS, use an https:// URL)"  # a TLS server hangs up
            raise RelayClientError(
                f"cannot reach the relay API at {self.base_url}: {reason}"
            ) from None
        if not response.is_success:
            raise self._error(response)
        return response

    def _raise_for_tls(self, exc: httpx.HTTPError) -> None:
        """One clear error for a TLS failure, which httpx reports as a connection error."""
        failure = _ssl_error(exc)
        if isinstance(failure, ssl.SSLCertVerificationError):
            reason = failure.verify_message or failure.reason or "verification failed"
            raise UntrustedCertificate(
                f"cannot verify the server's TLS certificate at {self.base_url} ({reason}); "
                "set RELAY_CA to your CA bundle"
            ) from None
        if failure is not None:
            reason = failure.reason or type(failure).__name__
            raise RelayClientError(
                f"the TLS handshake with the relay API at {self.base_url} failed ({reason}); "
                "does it serve HTTPS there?"
            ) from None

    def _error(self, response: httpx.Response) -> ApiError:
        status = response.status_code
        code, message = f"http_{status}", ""
        error: dict[str, Any] = {}
        try:
            error = response.json()["error"]
            if isinstance(error.get("code"), str) and isinstance(error.get("message"), str):
                code, message = error["code"], error["message"]
        except (ValueError, KeyError, TypeError, AttributeError):
            error = {}
        if not message:  # not the relay's error body: a proxy's page, say
            snippet = " ".join(response.text.split())[:200]
            message = f"{status} {response.reason_phrase}" + (f": {snippet}" if snippet else "")
        message = self._scrub(message)
        return error_for(status, code, message, error, response.headers.get("Retry-After"))

    def _json(self, response: httpx.Response) -> Any:
        try:
            return response.json()
        except ValueError:
            kind = response.headers.get("content-type", "no content type")
            raise RelayClientError(
                f"the relay API at {self.base_url} answered {response.request.url.path} "
                f"with something that is not JSON ({kind})"
            ) from None

    def _object(self, response: httpx.Response) -> dict[str, Any]:
        data = self._json(response)
        if not isinstance(data, dict):
            raise RelayClientError(
                f"the relay API at {self.base_url} answered {response.request.url.path} "
                "with JSON that is not an object"
            )
        return data

    def _list(self, response: httpx.Response) -> list[Any]:
        data = self._json(response)
        if not isinstance(data, list):
            raise RelayClientError(
                f"the relay API at {self.base_url} answered {response.request.url.path} "
                "with JSON that is not a list"
            )
        return data

    @staticmethod
    def _meeting_path(meeting_id: str, *rest: str) -> str:
        return "/".join(["/v1/meetings", _segment("meeting id", meeting_id), *rest])

    # -- meetings --

    def create_meeting(
        self,
        title: str,
        mode: Mode = Mode.MEETING,
        password: str | None = None,
        panelist_password: str | None = None,
        suite: Suite | None = None,
    ) -> CreatedMeeting:
        """Create a meeting (operator). Without `password` the server generates one and
        returns it, with the host key, this once."""
        body = _drop_none(
            title=title,
            mode=mode,
            password=password,
            panelist_password=panelist_password,
            suite=suite,
        )
        return cast(CreatedMeeting, self._object(self._send("POST", "/v1/meetings", body=body)))

    def list_meetings(
        self, state: State | None = None, limit: int = 50, offset: int = 0
    ) -> list[Meeting]:
        """Meetings (operator), newest first as the store orders them; `limit` 0..1000."""
        params = _drop_none(state=state, limit=limit, offset=offset)
        return cast(list[Meeting], self._list(self._send("GET", "/v1/meetings", params=params)))

    def get_meeting(self, meeting_id: str) -> MeetingDetail:
        path = self._meeting_path(meeting_id)
        return cast(MeetingDetail, self._object(self._send("GET", path)))

    def update_meeting(self, meeting_id: str, title: str) -> Meeting:
        """Rename a meeting (operator or its host)."""
        path = self._meeting_path(meeting_id)
        return cast(Meeting, self._object(self._send("PATCH", path, body={"title": title})))

    def delete_meeting(self, meeting_id: str) -> None:
        """Delete a meeting (operator), ending it first if open; its usage record stays."""
        self._send("DELETE", self._meeting_path(meeting_id))

    def set_controls(
        self, meeting_id: str, locked: bool | None = None, recording: bool | None = None
    ) -> Controls:
        """Lock or unlock the meeting, switch recording; answers the controls as they are."""
        path = self._meeting_path(meeting_id, "controls")
        body = _drop_none(locked=locked, recording=recording)
        return cast(Controls, self._object(self._send("PUT", path, body=body)))

    def lock(self, meeting_id: str) -> Controls:
        return self.set_controls(meeting_id, locked=True)

    def unlock(self, meeting_id: str) -> Controls:
        return self.set_controls(meeting_id, locked=False)

    def end_meeting(self, meeting_id: str) -> EndedMeeting:
        """End the meeting now (its media stops at once); answers its usage record."""
        path = self._meeting_path(meeting_id, "end")
        return cast(EndedMeeting, self._object(self._send("POST", path)))

    # -- joining and participants --

    def join(
        self,
        meeting_id: str,
        *,
        name: str,
        password: str | None = None,
        role: Role | None = None,
        host_key: str | None = None,
        ssrcs: Sequence[int] | None = None,
        streams: Sequence[StreamSpec] | None = None,
        receive_at: str | None = None,
        uplink: str | None = None,
        solve_proof_of_work: bool = True,
        on_proof_of_work: Callable[[ProofOfWorkRequired], None] | None = None,
        avoid_nodes: Sequence[str] | None = None,
    ) -> JoinAnswer:
        """Join a meeting. No token is sent: `password` (or `host_key` with `role="host"`)
        is the credential. `ssrcs` or `streams`: what the participant will send;
        `receive_at`: "ip:port" for a client that only listens; `uplink`: the base64 key
        this client sends with, when it chooses its own (SDES); `avoid_nodes`: nodes not to be
        placed on (`join_again` names the one an earlier answer homed it on).

        While the meeting is under attack the relay answers a password join with a challenge
        (428): this solves it and sends the join again (three requests at most in all),
        calling `on_proof_of_work` (for a progress line, say) before each solve. With
        `solve_proof_of_work=False` the 428 is raised as `ProofOfWorkRequired` instead."""
        body = _drop_none(
            name=name,
            password=password,
            role=role,
            host_key=host_key,
            ssrcs=None if ssrcs is None else list(ssrcs),
            streams=None if streams is None else [dict(s) for s in streams],
            receive_at=receive_at,
            uplink=uplink,
            avoid_nodes=None if avoid_nodes is None else list(avoid_nodes),
        )
        path = self._meeting_path(meeting_id, "join")
        for attempt in range(1, _PROOF_TRIES + 1):
            try:
                response = self._send("POST", path, body=body, auth=False)
            except ProofOfWorkRequired as required:
                if not solve_proof_of_work or attempt == _PROOF_TRIES:
                    raise
                if on_proof_of_work is not None:
                    on_proof_of_work(required)
                body["proof_of_work"] = {
                    "challenge": required.challenge,
                    "nonces": self._solve(required),
                }
                continue
            return cast(JoinAnswer, self._object(response))
        raise AssertionError("unreachable: the last try returns or raises")

    def join_again(
        self, meeting_id: str, answer: JoinAnswer | None = None, **join: Any
    ) -> JoinAnswer:
        """Join `meeting_id` again, as a new participant, after the node it was homed on
        stopped answering (killed, or cut off: README.md, "Several nodes"): through this
        client's API, then each that an earlier join's `answer` listed (`apis`), the first
        that takes it. `join` holds `join`'s keyword arguments. An API that cannot be reached,
        or answers 503 (draining, or no node takes newcomers just now), is passed over; the
        last failure is raised when none takes it."""
        urls = [self.base_url, *(answer["apis"] if answer is not None else [])]
        if answer is not None and answer["node"] and "avoid_nodes" not in join:
            # Its node may not be found silent yet (5 s): not there again.
            join["avoid_nodes"] = [answer["node"]]
        return join_first(
            list(dict.fromkeys(u.rstrip("/") for u in urls)),
            meeting_id,
            ca=self._ca,
            transport=self._transport,
            timeout=self.timeout,
            **join,
        )

    def _solve(self, required: ProofOfWorkRequired) -> list[int]:
        try:
            return puzzle.solve(required.challenge, required.difficulty, required.solutions)
        except ValueError as exc:
            raise RelayClientError(
                f"the relay at {self.base_url} asks for a proof of work this client does not "
                f"solve: {exc}"
            ) from None

    def list_participants(
        self, meeting_id: str, *, limit: int | None = None, offset: int = 0
    ) -> list[Participant]:
        """The meeting's participants in the order they joined: all of them (a page of 1,000
        at a time, as the API answers), or the page `limit`/`offset` asks for."""
        path = self._meeting_path(meeting_id, "participants")
        if limit is not None:
            page = self._list(self._send("GET", path, params={"limit": limit, "offset": offset}))
            return cast(list[Participant], page)
        people: list[Participant] = []
        while True:
            page = self._list(
                self._send("GET", path, params={"limit": PAGE, "offset": offset + len(people)})
            )
            people += cast(list[Participant], page)
            if len(page) < PAGE:
                return people

    def update_participant(
        self,
        meeting_id: str,
        participant_id: str,
        muted: bool | None = None,
        role: Role | None = None,
        expel: bool | None = None,
    ) -> ParticipantUpdate:
        path = self._meeting_path(
            meeting_id, "participants", _segment("participant id", participant_id)
        )
        body = _drop_none(muted=muted, role=role, expel=expel)
        return cast(ParticipantUpdate, self._object(self._send("PATCH", path, body=body)))

    def mute(self, meeting_id: str, participant_id: str) -> ParticipantUpdate:
        return self.update_participant(meeting_id, participant_id, muted=True)

    def unmute(self, meeting_id: str, participant_id: str) -> ParticipantUpdate:
        return self.update_participant(meeting_id, participant_id, muted=False)

    def expel(self, meeting_id: str, participant_id: str) -> ParticipantUpdate:
        """Expel for good: the participant id never comes back (the person may join anew
        unless the meeting is locked)."""
        return self.update_participant(meeting_id, participant_id, expel=True)

    # -- reports, metrics, health --

    def usage(self, meeting: str | None = None) -> list[UsageRecord]:
        """Usage records (operator), of one meeting or all."""
        params = _drop_none(meeting=meeting)
        response = self._send("GET", "/v1/reports/usage", params=params)
        return cast(list[UsageRecord], self._list(response))

    def usage_csv(self, meeting: str | None = None) -> str:
        """Usage records as CSV text (a header row, CRLF line ends)."""
        params = _drop_none(format="csv", meeting=meeting)
        return self._send("GET", "/v1/reports/usage", params=params).text

    def metrics(self) -> str:
        """The Prometheus exposition text of /metrics."""
        return self._send("GET", "/metrics").text

    def nodes(self) -> list[Node]:
        """The nodes sharing the server's database (operator): up, draining or gone."""
        return cast(list[Node], self._list(self._send("GET", "/v1/nodes")))

    def drain(self, name: str, draining: bool = True) -> Node:
        """Place no new participants on a node (operator), or take it back."""
        path = f"/v1/nodes/{quote(name, safe='')}/drain"
        return cast(Node, self._object(self._send("POST" if draining else "DELETE", path)))

    def health(self) -> Health:
        return cast(Health, self._object(self._send("GET", "/healthz")))


def join_first(
    urls: Sequence[str],
    meeting_id: str,
    *,
    ca: str | os.PathLike[str] | None = None,
    transport: httpx.BaseTransport | None = None,
    timeout: float = 10.0,
    **join: Any,
) -> JoinAnswer:
    """Join through the first of `urls` (the APIs of nodes sharing one database) that takes
    the join: one that cannot be reached, or answers 503 (draining, or no node takes
    newcomers just now), is passed over. The last failure is raised when none takes it."""
    if not urls:
        raise ValueError("no relay API URL to join through")
    failure: RelayClientError | None = None
    for url in urls:
        with RelayClient(url, ca=ca, transport=transport, timeout=timeout) as client:
            try:
                return client.join(meeting_id, **join)
            except ApiError as exc:
                if exc.status != 503:
                    raise
                failure = exc
            except RelayClientError as exc:
                if isinstance(exc, ApiError | UntrustedCertificate):
                    raise
                failure = exc
    assert failure is not None
    raise failure
