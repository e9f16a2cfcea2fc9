"""The streaming restorer: placeholders split across chunks at every possible position."""

from __future__ import annotations

import itertools
import random

from sluicegate.safety.pii import Mask


def make_mask() -> Mask:
    mask = Mask(reversible=True)
    mask.placeholder("PERSON", "Ann Lee")
    mask.placeholder("EMAIL_ADDRESS", "ann@x.org")
    for n in range(2, 12):  # <EMAIL_2> .. <EMAIL_11>: "<EMAIL_1" is a prefix of "<EMAIL_11>"
        mask.placeholder("EMAIL_ADDRESS", f"u{n}@x.org")
    return mask


ANSWER = "Hi <PERSON_1>! Mail <EMAIL_1> or <EMAIL_11>; 3 < 4, <b>bold</b>, <PERSON_9> <"


def stream(mask: Mask, chunks: list[str]) -> str:
    restorer = mask.stream_restorer()
    return "".join(restorer.feed(chunk) for chunk in chunks) + restorer.flush()


def test_one_split_at_every_position() -> None:
    mask = make_mask()
    expected = mask.restore(ANSWER)
    assert "Ann Lee" in expected and "u11@x.org" in expected and "<PERSON_9>" in expected
    for cut in range(len(ANSWER) + 1):
        assert stream(mask, [ANSWER[:cut], ANSWER[cut:]]) == expected, cut


def test_two_splits_at_every_pair_of_positions() -> None:
    mask = make_mask()
    expected = mask.restore(ANSWER)
    for a, b in itertools.combinations(range(len(ANSWER) + 1), 2):
        assert stream(mask, [ANSWER[:a], ANSWER[a:b], ANSWER[b:]]) == expected, (a, b)


def test_character_by_character_and_random_chunks() -> None:
    mask = make_mask()
    expected = mask.restore(ANSWER)
    assert stream(mask, list(ANSWER)) == expected
    rng = random.Random(5)
    for _ in range(200):
        cuts = sorted(rng.sample(range(1, len(ANSWER)), rng.randint(1, 12)))
        chunks = [ANSWER[i:j] for i, j in zip([0, *cuts], [*cuts, len(ANSWER)], strict=True)]
        assert stream(mask, chunks) == expected


def test_text_is_released_as_soon_as_it_cannot_be_a_placeholder() -> None:
    restorer = make_mask().stream_restorer()
    assert restorer.feed("Hello <PER") == "Hello "
    assert restorer.feed("SON_1") == ""
    assert restorer.feed("> and <b") == "Ann Lee and <b"
    assert restorer.feed("ye") == "ye"
    assert restorer.flush() == ""


def test_partial_placeholder_at_the_end_is_flushed_as_is() -> None:
    restorer = make_mask().stream_restorer()
    assert restorer.feed("cut off <EMAI") == "cut off "
    assert restorer.flush() == "<EMAI"
