"""Text from elsewhere (people, peers, stored rows) made safe to show on one line.

``line_safe`` turns control characters (C0, DEL, C1: ESC, newline, carriage return…), bidi
and other format characters (U+200B-U+200F, U+202A-U+202E, U+2066-U+2069…) and line
separators into visible escapes such as ``\\n``, ``\\x1b`` or ``\\u202e``: what is shown is
what is there, on one line. The CLI uses it for terminals, the delivery worker for logs.
"""

from __future__ import annotations

import unicodedata

_UNSAFE = frozenset({"Cc", "Cf", "Cs", "Zl", "Zp"})  # controls, format (bidi), separators
_NAMED = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


def line_safe(value: object) -> str:
    """``value`` as text that stays on one line and means what it shows."""
    text = str(value)
    if text.isprintable():
        return text
    return "".join(_escaped(c) if unicodedata.category(c) in _UNSAFE else c for c in text)


def _escaped(char: str) -> str:
    code = ord(char)
    if char in _NAMED:
        return _NAMED[char]
    if code < 0x100:
        return f"\\x{code:02x}"
    return f"\\u{code:04x}" if code < 0x10000 else f"\\U{code:08x}"
