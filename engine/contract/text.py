"""Text from specs and files, made safe to show on a terminal.

A name, a group, a path or an error quoting them can hold control characters: an escape
sequence would clear the screen, move the cursor or set the window title; a bidi override
would show text in another order than it is. `printable` shows each such character as an
escape (`\\x1b`, `\\u202e`) instead. Markup is the other half: rich and Textual read `[...]`
as styling, so user text reaches them as plain text (see engine.parent.tables.plain and the
TUI's widgets), never as markup. Stdlib only: both processes and the validator use it.
"""

from __future__ import annotations

import re

# C0 and C1 controls, DEL, and the bidirectional overrides / isolates (the "trojan source" set)
_UNSAFE = re.compile("[\x00-\x1f\x7f-\x9f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]")
_UNSAFE_KEEPING_NEWLINES = re.compile("[\x00-\x09\x0b-\x1f\x7f-\x9f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]")
_SURROGATE = re.compile("[\ud800-\udfff]")


def _escape(match: re.Match) -> str:
    code = ord(match.group())
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def printable(value: object, newlines: bool = False) -> str:
    """`value` as text with every control character shown as an escape (newlines kept when
    asked: a log tail); lone surrogates, which no terminal can encode, too."""
    text = value if isinstance(value, str) else str(value)
    text = (_UNSAFE_KEEPING_NEWLINES if newlines else _UNSAFE).sub(_escape, text)
    return _SURROGATE.sub(_escape, text)


def unsafe_character(text: str, allow: str = "") -> str | None:
    """The first control character or lone surrogate in `text` (not in `allow`), escaped, or None."""
    for character in text:
        if character not in allow and (_UNSAFE.match(character) or _SURROGATE.match(character)):
            code = ord(character)
            return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"
    return None
