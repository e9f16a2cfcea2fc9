"""The pattern recognizers: checksums (Luhn, IBAN), shapes, and no network on any path."""

from __future__ import annotations

import socket
from typing import Any

import pytest

from sluicegate.safety.pii.address import AddressRecognizer
from sluicegate.safety.pii.ner import CompanyRecognizer, NameContextRecognizer
from sluicegate.safety.pii.recognizers import (
    OfflineEmailRecognizer,
    PhonePatternRecognizer,
    pattern_recognizers,
)


def found(text: str, kind: str, min_score: float = 0.4) -> list[str]:
    """What the recognizers find, before context words raise scores (the detector's job)."""
    results = []
    for recognizer in [*pattern_recognizers(), AddressRecognizer()]:
        if kind in recognizer.supported_entities:
            # No NLP artifacts: Presidio's recognizers accept None though typed otherwise.
            results += recognizer.analyze(text, [kind], None)  # type: ignore[arg-type]
    return sorted({text[r.start : r.end] for r in results if r.score >= min_score})


@pytest.mark.parametrize(
    "number",
    [
        "4111 1111 1111 1111",  # Visa, grouped
        "4111-1111-1111-1111",
        "5500005555555559",  # Mastercard
        "2223000048400011",  # Mastercard 2-series
        "378282246310005",  # Amex, 15 digits
        "4318699938677496498",  # Visa, 19 digits
    ],
)
def test_luhn_valid_cards_are_found(number: str) -> None:
    assert found(f"my card {number} expired", "CREDIT_CARD") == [number]


@pytest.mark.parametrize("number", ["4111 1111 1111 1112", "5500005555555550", "378282246310006"])
def test_luhn_invalid_cards_are_not(number: str) -> None:
    assert found(f"my card {number} expired", "CREDIT_CARD") == []


def test_iban_checksum() -> None:
    assert found("pay to GB82WEST12345698765432 now", "IBAN_CODE") == ["GB82WEST12345698765432"]
    assert found("pay to DE89 3704 0044 0532 0130 00", "IBAN_CODE") == [
        "DE89 3704 0044 0532 0130 00"
    ]
    assert found("pay to GB83WEST12345698765432 now", "IBAN_CODE") == []


def test_ssn_and_ip() -> None:
    assert found("my SSN is 643-21-6917", "US_SSN") == ["643-21-6917"]
    assert found("my SSN is 000-21-6917", "US_SSN") == []  # no SSN starts with 000
    assert found("from 192.168.10.4 and ::1", "IP_ADDRESS") == ["192.168.10.4", "::1"]
    assert found("version 1.2.3.999", "IP_ADDRESS") == []


@pytest.mark.parametrize(
    "text, number",
    [
        ("call me on (07) 5331 0577 please", "(07) 5331 0577"),
        ("Fax: +41 (0)61 827 54 80", "+41 (0)61 827 54 80"),
        ("0494 41 18 24-Office", "0494 41 18 24"),
        ("mobile 650-752-7354x549", "650-752-7354x549"),
        ("Phone: 0413-7966539", "0413-7966539"),
    ],
)
def test_phone_shapes(text: str, number: str) -> None:
    assert found(text, "PHONE_NUMBER", min_score=0) == [number]


def test_bare_digit_runs_need_a_context_word() -> None:
    recognizer = PhonePatternRecognizer()
    results = recognizer.analyze("order 123 456 789 shipped", ["PHONE_NUMBER"], None)
    assert all(r.score < 0.4 for r in results)
    assert recognizer.analyze("on 2020-01-31 we met", ["PHONE_NUMBER"], None) == []


def test_email_suffix_is_checked_offline() -> None:
    recognizer = OfflineEmailRecognizer()
    text = "write to LeaVLind@superrito.com or x@y.notatld"
    hits = recognizer.analyze(text, ["EMAIL_ADDRESS"])
    assert [text[r.start : r.end] for r in hits] == ["LeaVLind@superrito.com"]


@pytest.mark.parametrize(
    "text, address",
    [
        ("I live at 12 Baker Street, London, UK.", "12 Baker Street, London, UK"),
        ("Send it to 46 Rue du Niger, Tunis", "46 Rue du Niger, Tunis"),
        ("Ship to Heirstraat 134, Gent", "Heirstraat 134, Gent"),
        (
            "Ann Lee\n\n637 Strojírenská 1006\n Apt. 5\n Svratka\n Czech Republic 45098",
            "637 Strojírenská 1006\n Apt. 5\n Svratka\n Czech Republic 45098",
        ),
        ("PSC 8277, Box 8816\nAPO AE 81278", "PSC 8277, Box 8816\nAPO AE 81278"),
        # "United" is a word, not the unit "Unit ed"
        ("Ship to 12 Aspen Court, Quincy, United States.", "12 Aspen Court, Quincy, United States"),
        ("Suite 200, 100 Main St, Boston", "Suite 200, 100 Main St, Boston"),
        ("The bus station is on Király u. 23.", "Király u. 23"),
        ("Erzsébet fasor 38. Suite 861, Budapest", "Erzsébet fasor 38. Suite 861, Budapest"),
        (
            "04606 Höhenweg 131\n Hergiswil bei Willisau\n Switzerland",
            "04606 Höhenweg 131\n Hergiswil bei Willisau\n Switzerland",
        ),
        # the label of the next field is not a town
        ("12 Long Street\nLondon\nMobile: 07700 900123", "12 Long Street\nLondon"),
    ],
)
def test_addresses(text: str, address: str) -> None:
    assert found(text, "LOCATION") == [address]


def test_two_addresses_in_a_list_stay_two() -> None:
    # "and 260" is not a region code and a postcode
    text = "PSC 1158, Box 5621\nAPO AE 05242, and 260 Elm Street"
    assert found(text, "LOCATION") == ["260 Elm Street", "PSC 1158, Box 5621\nAPO AE 05242"]


@pytest.mark.parametrize(
    "text, company",
    [
        ("The Centamin PLC office is here", ["Centamin PLC"]),
        ("Alaska Air Group, Inc. said so", ["Alaska Air Group, Inc."]),
        (
            "3M Company and Merrill Lynch & Co. Inc. agreed",
            ["3M Company", "Merrill Lynch & Co. Inc."],
        ),
    ],
)
def test_companies_by_legal_form(text: str, company: list[str]) -> None:
    hits = CompanyRecognizer().analyze(text, ["ORGANIZATION"], None)
    assert [text[r.start : r.end] for r in hits] == company


def test_a_name_after_a_title_stops_before_the_address() -> None:
    text = "Mrs. Ann Lee Apt. 4, 12 Elm Street"
    hits = NameContextRecognizer().analyze(text, ["PERSON"], None)
    assert [text[r.start : r.end] for r in hits] == ["Ann Lee"]


def test_no_recognizer_touches_the_network(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*args: Any, **kwargs: Any) -> None:
        raise AssertionError(f"network access attempted: {args}")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setattr(socket, "getaddrinfo", refuse)
    text = "mail a.b@example.co.uk, call +1 212 555 0100, card 4111 1111 1111 1111"
    for recognizer in pattern_recognizers():
        recognizer.analyze(text, recognizer.supported_entities, None)  # type: ignore[arg-type]
    assert found(text, "EMAIL_ADDRESS") == ["a.b@example.co.uk"]
