"""CaseOps: a lossless text transform that moves ASCII capitalisation into four operator characters.

From PR #1729 (romeerp; ``lossless_caps_caseops_v1``), used by every record from #1729 to #1855 (spec
``frontier-1855.md`` §2.1). Each maximal run ``w`` of ASCII letters ``[A-Za-z]`` is rewritten; every other
character (non-ASCII letters included) is copied:

* all lowercase: ``w`` unchanged;
* two or more letters, all uppercase: ``ALLCAPS + lower(w)``;
* first letter uppercase, the rest lowercase (one-letter ``"A"`` included): ``TITLE + lower(w)``;
* anything else: ``TITLE`` if ``w[0]`` is uppercase, then ``lower(w[0])``, then each later letter
  lowercased, with ``CAPNEXT`` before each one that was uppercase.

The operators are the private-use characters TITLE U+E001, ALLCAPS U+E002, CAPNEXT U+E003 and ESC U+E004;
a literal operator character in the input is written as ``ESC`` + that character. "The NASA Launch" becomes
``TITLE the ALLCAPS nasa TITLE launch`` and "iPhone" ``i CAPNEXT phone``.

:func:`decode` is strict: it accepts exactly the strings :func:`encode` produces and raises
:class:`CaseOpsError` naming the position of anything else (a dangling or misplaced operator, an ASCII
capital, a non-canonical spelling such as ``ALLCAPS a`` for "A"). :func:`original_byte_counts` replays the
decoder over a tokenizer's piece surfaces to credit each piece with the *original* UTF-8 bytes it stands
for; the per-token byte sidecar (:mod:`golf.data.sidecar`) is built from it by
:mod:`golf.data.caseops_tokenizer`.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

TITLE, ALLCAPS, CAPNEXT, ESC = "\ue001", "\ue002", "\ue003", "\ue004"
OPERATORS = (TITLE, ALLCAPS, CAPNEXT, ESC)  # the tokenizer's reserved pieces 4..7, in this order
NAME = "caseops"

_OPERATOR_SET = frozenset(OPERATORS)
# an operator character, or a whole ASCII word holding at least one capital (lowercase words stay as they
# are); the look-behind anchors each word match at the word's first letter, so matching is linear
_ENCODE_RE = re.compile(r"[\ue001-\ue004]|(?<![A-Za-z])[a-z]*[A-Z][A-Za-z]*")
# ESC and the character it protects | an optional word marker and a run of (CAPNEXT?) lowercase letters |
# a marker left over (not followed by a lowercase letter)
_DECODE_RE = re.compile(r"\ue004(.?)|([\ue001\ue002]?)((?:\ue003?[a-z])+)|([\ue001-\ue003])", re.DOTALL)
_CAPITAL_RE = re.compile(r"[A-Z]")
_HAS_OPERATOR_RE = re.compile(r"[\ue001-\ue004]")
_NAMES = {TITLE: "TITLE", ALLCAPS: "ALLCAPS", CAPNEXT: "CAPNEXT", ESC: "ESC"}


class CaseOpsError(ValueError):
    """A string is not a valid CaseOps encoding (the message gives the position)."""


def _encode_match(m: re.Match) -> str:
    w = m.group()
    if w in _OPERATOR_SET:
        return ESC + w
    lower = w.lower()
    if len(w) >= 2 and w.isupper():
        return ALLCAPS + lower
    if w[1:].islower() or len(w) == 1:  # the regex guarantees a capital, so here w[0] is it
        return TITLE + lower
    head = TITLE + lower[0] if w[0].isupper() else w[0]
    return head + _CAPITAL_RE.sub(lambda c: CAPNEXT + c.group().lower(), w[1:])


def encode(text: str) -> str:
    """The CaseOps encoding of ``text`` (total: defined for every string)."""
    return _ENCODE_RE.sub(_encode_match, text)


def _decode_match(m: re.Match) -> str:
    escaped, marker, body, stray = m.groups()
    if escaped is not None:
        if not escaped:
            raise CaseOpsError(f"ESC at position {m.start()} ends the text; it must protect one character")
        return escaped
    if stray is not None:
        raise CaseOpsError(
            f"{_NAMES[stray]} at position {m.start()} is not followed by a lowercase ASCII letter"
        )
    letters = []
    capital = marker != ""
    for ch in body:
        if ch == CAPNEXT:
            capital = True
            continue
        letters.append(ch.upper() if capital else ch)
        capital = marker == ALLCAPS
    return "".join(letters)


def decode(text: str) -> str:
    """Invert :func:`encode`; raises :class:`CaseOpsError` on any string :func:`encode` cannot produce."""
    out = _DECODE_RE.sub(_decode_match, text)
    again = encode(out)
    if again != text:
        pos = next((i for i, (a, b) in enumerate(zip(again, text)) if a != b), min(len(again), len(text)))
        found = repr(text[pos]) if pos < len(text) else "the end"
        raise CaseOpsError(
            f"not a canonical CaseOps encoding at position {pos} (found {found}; "
            f"the encoder writes {again[pos:pos + 2]!r} there)"
        )
    return out


def original_byte_counts(surfaces: Iterable[str]) -> list[int]:
    """Original UTF-8 bytes behind each piece, from the pieces' surfaces (spans of the encoded text).

    Replays the decoder across piece boundaries: an unescaped operator counts 0 bytes (ESC too), the
    character an ESC protects counts its UTF-8 length, every other character counts its UTF-8 length
    (an ASCII letter 1, whatever its case). An empty surface (the leading pieces of a byte-fallback run)
    counts 0; the piece that carries the character gets all of its bytes. Raises :class:`CaseOpsError`
    when the last surface ends on an ESC.
    """
    counts = []
    escaped = False
    for s in surfaces:
        if not escaped and (s.isascii() or not _HAS_OPERATOR_RE.search(s)):
            counts.append(len(s) if s.isascii() else len(s.encode("utf-8")))
            continue
        n = 0
        for ch in s:
            if escaped:
                n += len(ch.encode("utf-8"))
                escaped = False
            elif ch == ESC:
                escaped = True
            elif ch not in _OPERATOR_SET:
                n += len(ch.encode("utf-8"))
        counts.append(n)
    if escaped:
        raise CaseOpsError("the last piece ends on an ESC with no character after it")
    return counts
