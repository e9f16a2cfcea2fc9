"""Typed placeholders, one numbering per request, and the reversible mask's round trip."""

from __future__ import annotations

from sluicegate.safety.pii import Entity, Mask, redact


def entity(text: str, value: str, kind: str, nth: int = 0) -> Entity:
    start = -1
    for _ in range(nth + 1):
        start = text.index(value, start + 1)
    return Entity(kind, start, start + len(value), 0.9, value)


def test_placeholders_are_typed_and_numbered_per_type() -> None:
    text = "Mail ann@x.org or bob@y.org, ask Ann Lee, call +44 20 7946 0958"
    found = [
        entity(text, "ann@x.org", "EMAIL_ADDRESS"),
        entity(text, "bob@y.org", "EMAIL_ADDRESS"),
        entity(text, "Ann Lee", "PERSON"),
        entity(text, "+44 20 7946 0958", "PHONE_NUMBER"),
    ]
    redacted, mask = redact(text, found, "redact")
    assert redacted == "Mail <EMAIL_1> or <EMAIL_2>, ask <PERSON_1>, call <PHONE_1>"
    assert mask.originals == {}  # "redact" forgets the values


def test_same_value_same_placeholder_across_texts_of_one_request() -> None:
    mask = Mask(reversible=True)
    first = "Ann Lee wrote to Bo Chan."
    second = "Reply to Ann Lee today."
    one, _ = redact(
        first, [entity(first, "Ann Lee", "PERSON"), entity(first, "Bo Chan", "PERSON")], mask=mask
    )
    two, _ = redact(second, [entity(second, "Ann Lee", "PERSON")], mask=mask)
    assert one == "<PERSON_1> wrote to <PERSON_2>."
    assert two == "Reply to <PERSON_1> today."


def test_repeated_value_in_one_text() -> None:
    text = "Ann or Ann?"
    found = [entity(text, "Ann", "PERSON"), entity(text, "Ann", "PERSON", nth=1)]
    assert redact(text, found)[0] == "<PERSON_1> or <PERSON_1>?"


def test_placeholder_already_in_the_text_is_not_reused() -> None:
    text = "Literally <EMAIL_1> and a@b.io"
    redacted, mask = redact(text, [entity(text, "a@b.io", "EMAIL_ADDRESS")], "mask")
    assert redacted == "Literally <EMAIL_1> and <EMAIL_2>"
    assert mask.restore(redacted) == text


def test_mask_round_trip() -> None:
    text = "I am Ann Lee, card 4111 1111 1111 1111, IBAN GB82WEST12345698765432."
    found = [
        entity(text, "Ann Lee", "PERSON"),
        entity(text, "4111 1111 1111 1111", "CREDIT_CARD"),
        entity(text, "GB82WEST12345698765432", "IBAN_CODE"),
    ]
    redacted, mask = redact(text, found, "mask")
    assert "Ann" not in redacted and "4111" not in redacted and "GB82" not in redacted
    assert mask.restore(redacted) == text
    answer = "Dear <PERSON_1>, your card <CREDIT_CARD_1> is fine; <UNKNOWN_3> stays."
    assert mask.restore(answer) == (
        "Dear Ann Lee, your card 4111 1111 1111 1111 is fine; <UNKNOWN_3> stays."
    )


def test_no_entities_returns_text_unchanged() -> None:
    redacted, mask = redact("nothing here", [], "mask")
    assert redacted == "nothing here"
    assert mask.restore("nothing <here>") == "nothing <here>"
