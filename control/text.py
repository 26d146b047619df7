"""What a displayed string may hold: one rule for every name and field people see (meeting
titles, participant names, registrants' fields, question labels and answers), used by the
API's request models (control/api/) and by the services (control/meetings.py,
control/registration.py), and the escaping the command line prints server strings with
(cli/client.py), since rows written before the rule may hold anything.

Refused, because they change how a terminal, a log viewer, a spreadsheet or a web page shows
the text around them, or hide text from the person reading it:

- control characters (Unicode category Cc): C0 (U+0000..U+001F, CR and LF among them, which
  forge lines in logs and exports), DEL (U+007F) and C1 (U+0080..U+009F; U+009B is an 8-bit
  CSI, a terminal escape sequence);
- format characters (Cf): the bidirectional embeddings, overrides and isolates
  (U+202A..U+202E, U+2066..U+2069) and marks (U+200E, U+200F, U+061C), which reorder what is
  shown ("Trojan Source", CVE-2021-42574); zero-width and invisible characters (U+200B,
  U+2060..U+2064, U+FEFF, U+180E, U+00AD) that make two different strings look alike; the tag
  characters (U+E0000..U+E007F) that carry text nobody sees;
- the line and paragraph separators U+2028 and U+2029 (Zl, Zp): line breaks to many viewers;
- lone surrogates (Cs), which are not text and do not encode as UTF-8.

Two format characters are allowed: ZERO WIDTH NON-JOINER (U+200C) and ZERO WIDTH JOINER
(U+200D). Persian and several Indic scripts need them to spell words correctly, and emoji
sequences (a family, a flag) are joined with U+200D; neither reorders text or starts a line.

Free-text answers may also hold line breaks and tabs (LF, CR, HT): a person writes paragraphs.
"""

from __future__ import annotations

import re
import unicodedata

__all__ = ["HIDDEN_MESSAGE", "has_hidden_characters", "printable", "printable_json"]

# The two joiners scripts and emoji need (see above).
ALLOWED_FORMAT = frozenset("\u200c\u200d")
HIDDEN_CATEGORIES = frozenset(("Cc", "Cf", "Cs", "Zl", "Zp"))
TEXT_LINE_BREAKS = frozenset("\n\r\t")

HIDDEN_MESSAGE = (
    "must not hold control or invisible characters (line breaks, escape sequences, "
    "bidirectional overrides, zero-width characters)"
)

# Everything below U+0080 that is not hidden is printable ASCII: one regex answers for it, and
# only the rest is looked up one character at a time.
_ASCII_HIDDEN = re.compile(r"[\x00-\x1f\x7f]")
_NOT_ASCII = re.compile(r"[^\x00-\x7f]")


def _hidden(char: str) -> bool:
    return unicodedata.category(char) in HIDDEN_CATEGORIES and char not in ALLOWED_FORMAT


def has_hidden_characters(text: str, *, line_breaks: bool = False) -> bool:
    """Whether `text` holds a character the rule above refuses; with `line_breaks`, LF, CR
    and HT are allowed (free-text answers)."""
    for match in _ASCII_HIDDEN.finditer(text):
        if not (line_breaks and match.group() in TEXT_LINE_BREAKS):
            return True
    return any(_hidden(match.group()) for match in _NOT_ASCII.finditer(text))


def _escape(char: str) -> str:
    code = ord(char)
    if code <= 0xFF:
        return f"\\x{code:02x}"
    if code <= 0xFFFF:
        return f"\\u{code:04x}"
    return f"\\U{code:08x}"


def printable(text: object) -> str:
    """`text` as a terminal may show it: every character that is not printable (hidden by the
    rule above, or anything else `str.isprintable` refuses, line breaks included) written as
    a Python-style escape (\\x1b, \\u202e), so that a server string cannot move the cursor,
    recolour the terminal, reorder a line or start a new one."""
    value = str(text)
    if value.isprintable():
        return value
    return "".join(c if c.isprintable() and not _hidden(c) else _escape(c) for c in value)


def _json_escape(char: str) -> str:
    code = ord(char)
    if code <= 0xFFFF:
        return f"\\u{code:04x}"
    code -= 0x10000  # JSON writes the rest as a UTF-16 surrogate pair (RFC 8259 section 7)
    return f"\\u{0xD800 + (code >> 10):04x}\\u{0xDC00 + (code & 0x3FF):04x}"


def printable_json(text: str) -> str:
    """JSON text (as `json.dumps(..., ensure_ascii=False)` writes it) with every character
    `printable` would escape written as a JSON escape instead, but for the line breaks of its
    indentation: the same data, safe in a terminal. Inside JSON strings such characters can
    only be escaped; outside them JSON has none."""
    if text.isprintable():
        return text
    return "".join(
        c if c == "\n" or (c.isprintable() and not _hidden(c)) else _json_escape(c) for c in text
    )
