"""The HTTP API: FastAPI over the control plane (docs/ARCHITECTURE.md, "The HTTP API").

This package only translates: it checks the request's shape (control/api/requests.py: pydantic
models, which also make the OpenAPI description at /openapi.json), finds the caller's
credential (control/api/deps.py), calls the services and shapes their answers
(control/api/shapes.py). The routes live by subject: control/api/meetings.py,
participants.py, registrations.py, reports.py. The rules live in the services
(control/meetings.py, control/registration.py).

Errors are always `{"error": {"code", "message"}}` (control/api/errors.py), with the status the
README's API table gives; input
that does not fit is a 4xx with a message that says what is wrong, never a 500:
- a body that is not JSON, has a wrong type, an unknown field or a field too long: 422;
- a name or displayed field (a title, a participant's name, a registrant's fields, a question's
  label or an answer) with a control or invisible character (control/text.py): 422;
- a body over MAX_BODY bytes: 413, before it is read whole;
- an unknown path: 404, a wrong method: 405;
- too many sign-ups from one address or for one meeting: 429 with Retry-After;
- a store that cannot be reached: 503 (the server's fault, not the caller's, but not a crash);
- an email that cannot be sent: 503 `email_unavailable`.
A message names the field and the rule, and never holds a value the client sent (a path
parameter, a field's value, an unknown field's name, a key of `answers`): `_validation_message`
words pydantic's refusals that way, and the services word theirs so (control/errors.py).

Credentials: `Authorization: Bearer TOKEN`, the operator token (every meeting) or a host key
(its meeting). Operator only: creating and listing meetings, deleting one, the usage report,
the whole audit log, erasing a person by email. Joining needs no token: the password (or the
registration token) in the body is the credential. Registering needs none either: reading a
meeting's form (`GET .../registration`), sending it (`POST .../registrations`), confirming the
email with the code it received (`POST .../registrations/RID/confirm`) and asking for a new
code (`POST .../registrations/RID/resend`) are public; everything else about registrations is
for the host and the operator (control/registration.py).

Audit (control/audit.py): every host or operator action that succeeds appends an entry (ids
and flags only) after it: meetings created, changed, ended, deleted; locked, unlocked,
recording on or off; participants muted, expelled, given another role; registration settings,
approvals, rejections, corrections, new tokens, reads and exports of the registrants, erasures;
recordings downloaded (the file's name and its size in bytes).

Client address: the TCP peer's, or, when the peer is one of the trusted proxies given to
`create_app` (`relay serve --trusted-proxies`), the client its X-Forwarded-For names
(control/proxies.py). `deps.client_address` is the one place that decides: the join throttle and
the access log's pseudonym both use it.

Logs: one line per request with the method, the route (its template, so no ids), the status and the
time taken; the client address appears only as a keyed pseudonym (logs carry no personal data:
README.md, "Attendee data (privacy)"). Secrets never reach a log: they are in bodies and headers,
which are not logged, and so are registrants' fields. Error messages never echo a submitted value.
"""

from control.api.app import create_app
from control.api.errors import MAX_BODY

__all__ = ["MAX_BODY", "create_app"]
