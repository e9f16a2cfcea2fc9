"""The PII detector end to end: quality on a labelled slice, offline, context words.

``tests/fixtures/pii_slice.json``: 60 rows of ``shared/data/pii/presidio_generated_small.json``
(presidio-research, MIT) and 40 rows made offline by presidio-evaluator's generator
(seed 7). The full figures come from ``sluicegate eval pii DATA``; here a floor a little
under the measured ones guards against regressions.
"""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from sluicegate.safety.pii import PiiDetector, protect_body
from sluicegate.safety.pii.evaluate import evaluate, load_examples

pytestmark = pytest.mark.slow

SLICE = Path(__file__).parent.parent / "fixtures" / "pii_slice.json"


def refuse(*args: Any, **kwargs: Any) -> None:
    raise AssertionError(f"network access attempted: {args}")


@pytest.fixture(scope="module")
def detector() -> Iterator[PiiDetector]:
    # Built with every socket refused: loading the model and the recognizers, and
    # detecting, must not reach for the network (no model download, no suffix list).
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(socket.socket, "connect", refuse)
        patch.setattr(socket, "create_connection", refuse)
        patch.setattr(socket, "getaddrinfo", refuse)
        built = PiiDetector()
        built.detect("Mail ann@example.com or call +1 212 555 0100, Ann Lee, Paris.")
        yield built


def test_f1_on_the_slice(detector: PiiDetector) -> None:
    examples, excluded = load_examples(SLICE)
    report = evaluate(detector.detect, examples)
    # Measured: exact 0.755, overlap 0.854 (micro over the supported types).
    assert report.exact["ALL"].f1 >= 0.74, report.format()
    assert report.overlap["ALL"].f1 >= 0.84, report.format()
    for kind in ("CREDIT_CARD", "EMAIL_ADDRESS", "IBAN_CODE", "IP_ADDRESS", "US_SSN"):
        assert report.exact[kind].f1 == 1.0, report.format()
    assert {"DATE_TIME", "TITLE"} <= set(excluded)


def test_entities_and_context(detector: PiiDetector) -> None:
    text = (
        "Hi, I'm Maria Gonzalez from Acme Widgets Ltd. Call me on 0494 41 18 24 or mail "
        "maria.g@example.org; card 4111 1111 1111 1111. I live at 12 Baker Street, London."
    )
    found = {(e.type, e.text) for e in detector.detect(text)}
    assert found >= {
        ("PERSON", "Maria Gonzalez"),
        ("ORGANIZATION", "Acme Widgets Ltd."),
        ("PHONE_NUMBER", "0494 41 18 24"),
        ("EMAIL_ADDRESS", "maria.g@example.org"),
        ("CREDIT_CARD", "4111 1111 1111 1111"),
        ("LOCATION", "12 Baker Street, London"),
    }, found
    # The same digits with no word about phones are not taken for a phone number.
    assert not [
        e for e in detector.detect("Order 0494 41 18 24 shipped.") if e.type == "PHONE_NUMBER"
    ]
    assert detector.detect("") == [] and detector.detect("  \n") == []


@pytest.mark.parametrize(
    "text, expected",
    [
        # where someone travels to is a place, whatever NER made of the name
        ("Mr. Novak flew to Dornberk on Monday morning.", ("LOCATION", "Dornberk")),
        ("We moved to Guarulhos last year.", ("LOCATION", "Guarulhos")),
        # first name, middle initial, last name: a person, not an organisation
        ("Lejla H Jonsson will be talking in the conference", ("PERSON", "Lejla H Jonsson")),
        # a name already found as a person is the same person again
        ("My name is Vojtěch Soukup but everyone calls me Vojtěch", ("PERSON", "Vojtěch")),
    ],
)
def test_names_retyped_by_context(
    detector: PiiDetector, text: str, expected: tuple[str, str]
) -> None:
    assert expected in {(e.type, e.text) for e in detector.detect(text)}


def test_a_name_ends_at_its_line(detector: PiiDetector) -> None:
    found = detector.detect("Name: Lucas Barber\nAddress: 12 Elm Street, Leeds")
    assert [(e.type, e.text) for e in found] == [
        ("PERSON", "Lucas Barber"),
        ("LOCATION", "12 Elm Street, Leeds"),
    ]


def test_body_round_trip_with_the_real_detector(detector: PiiDetector) -> None:
    body = {
        "model": "m",
        "messages": [
            {"role": "user", "content": "My name is Ann Lee, e-mail ann.lee@example.com."},
            {"role": "user", "content": [{"type": "text", "text": "Again: ann.lee@example.com"}]},
        ],
    }
    result = protect_body(body, detector.detect, "mask")
    sent = result.body["messages"]
    assert sent[0]["content"] == "My name is <PERSON_1>, e-mail <EMAIL_1>."
    assert sent[1]["content"][0]["text"] == "Again: <EMAIL_1>"
    restorer = result.mask.stream_restorer()
    chunks = ["Sure <PERS", "ON_1>, I wrote to <EMA", "IL_1>."]
    answer = "".join(restorer.feed(c) for c in chunks) + restorer.flush()
    assert answer == "Sure Ann Lee, I wrote to ann.lee@example.com."
