"""The CaseOps transform: the spec's examples, exact round trips on random text, a strict decoder, and the
byte accounting over piece surfaces."""

from __future__ import annotations

import random

import pytest

from golf.data.caseops import ALLCAPS, CAPNEXT, ESC, TITLE, CaseOpsError, decode, encode, original_byte_counts

# ASCII letters of both cases (often, so that words of every case pattern occur), the operators and the
# private-use character next to them, digits, punctuation, whitespace, accented / full-width / Greek /
# CJK letters, a combining mark, an astral emoji and a no-break space
ALPHABET = ("aAbBcCxXyYzZ" * 4 + TITLE + ALLCAPS + CAPNEXT + ESC + "\ue000\ue005" + "0129 .,'-_\n\t\r"
            + "éÉßñÑΣσ中文Ａｚ\u0301\U0001F600\u00a0\u3000")
OPERATOR_HEAVY = "aAbB" + TITLE + ALLCAPS + CAPNEXT + ESC + " é1"


def _random_text(rng: random.Random, alphabet: str, max_len: int) -> str:
    return "".join(rng.choice(alphabet) for _ in range(rng.randint(0, max_len)))


@pytest.mark.parametrize("text,encoded", [
    ("The NASA Launch", f"{TITLE}the {ALLCAPS}nasa {TITLE}launch"),
    ("iPhone", f"i{CAPNEXT}phone"),
    ("A", f"{TITLE}a"),
    ("a", "a"),
    ("I am OK", f"{TITLE}i am {ALLCAPS}ok"),
    ("McDonald", f"{TITLE}mc{CAPNEXT}donald"),
    ("HTTPServer", f"{TITLE}h{CAPNEXT}t{CAPNEXT}t{CAPNEXT}p{CAPNEXT}server"),
    ("aBC", f"a{CAPNEXT}b{CAPNEXT}c"),
    ("ABc", f"{TITLE}a{CAPNEXT}bc"),
    ("x2Y", f"x2{TITLE}y"),  # digits end a word
    ("ÉLAN Été", f"É{ALLCAPS}lan Été"),  # only ASCII letters are touched
    (f"x{TITLE}y", f"x{ESC}{TITLE}y"),  # a literal operator is escaped; it also ends the word
    (f"{ESC}{ESC}", f"{ESC}{ESC}{ESC}{ESC}"),
    ("\ue000Ab", f"\ue000{TITLE}ab"),  # the private-use neighbour is an ordinary character
    ("", ""),
])
def test_spec_examples_encode_and_decode(text, encoded):
    assert encode(text) == encoded
    assert decode(encoded) == text


def test_round_trip_on_random_text():
    rng = random.Random(20260427)
    for _ in range(4000):
        text = _random_text(rng, ALPHABET, 40)
        assert decode(encode(text)) == text, repr(text)


def test_decoder_accepts_exactly_what_the_encoder_writes():
    """Random operator-heavy strings: each is either refused or the encoding of what it decodes to."""
    rng = random.Random(7)
    accepted = refused = 0
    for _ in range(4000):
        s = _random_text(rng, OPERATOR_HEAVY, 10)
        try:
            out = decode(s)
        except CaseOpsError:
            refused += 1
            continue
        accepted += 1
        assert encode(out) == s, repr(s)
    assert accepted > 200 and refused > 200  # both sides of the grammar were exercised


@pytest.mark.parametrize("encoded,match", [
    (f"{ALLCAPS}a", r"position 0"),  # one capital is TITLE, not ALLCAPS
    (f"{TITLE}{CAPNEXT}a", r"position 1 \(found '\\ue003'"),  # "A" is TITLE a
    (f"ab{TITLE}cd", r"position 2"),  # would merge into one word "abCd", written ab CAPNEXT cd
    (f"{CAPNEXT}ab", r"position 0"),  # a capital first letter is TITLE
    (f"{ALLCAPS}ab{CAPNEXT}c", r"position 3"),  # "ABC" is ALLCAPS abc
    ("Ab", r"position 0"),  # an ASCII capital never appears in an encoding
    (f"{ESC}a", r"position 0"),  # only operators are escaped
    (f"x{ESC}", r"ESC at position 1 ends the text"),
    (f"ab{TITLE}", r"TITLE at position 2 is not followed"),
    (f"{CAPNEXT}1", r"CAPNEXT at position 0"),
])
def test_decoder_refuses_non_canonical_input(encoded, match):
    with pytest.raises(CaseOpsError, match=match):
        decode(encoded)


def test_byte_counts_replay_the_decoder():
    # original text: "The NASA " + "é" (2 bytes: an empty lead piece then the carrier) + literal TITLE (3)
    # + full-width "Ａ" (3 bytes; NFKC would make it 1)
    surfaces = [TITLE, "the", " ", ALLCAPS, "nasa", " ", "", "é", ESC, TITLE, "Ａ"]
    assert original_byte_counts(surfaces) == [0, 3, 1, 0, 4, 1, 0, 2, 0, 3, 3]
    # the same accounting when operators share a surface with other characters, across piece boundaries
    assert original_byte_counts([f" {ALLCAPS}ok{ESC}", f"{ESC}x"]) == [3, 4]
    text = f"The NASA é{TITLE}Ａ"
    assert sum(original_byte_counts(surfaces)) == len(text.encode("utf-8")) == 17
    with pytest.raises(CaseOpsError, match="ends on an ESC"):
        original_byte_counts(["a", ESC])


def test_byte_counts_of_whole_encodings_are_utf8_lengths():
    rng = random.Random(3)
    for _ in range(500):
        text = _random_text(rng, ALPHABET, 30)
        enc = encode(text)
        cut = sorted(rng.sample(range(len(enc) + 1), min(3, len(enc) + 1)))
        pieces = [enc[a:b] for a, b in zip([0, *cut], [*cut, len(enc)])]
        assert sum(original_byte_counts(pieces)) == len(text.encode("utf-8")), repr(text)
