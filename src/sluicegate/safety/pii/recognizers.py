"""Presidio pattern recognizers for the structured types, configured to work offline.

Presidio's own recognizers are used where they validate (credit-card Luhn, IBAN
checksum, IP parsing, SSN invalid ranges); two are replaced:

* e-mail: Presidio's calls ``tldextract.extract``, which downloads the public-suffix
  list on first use. Ours checks the suffix against the snapshot tldextract ships
  (``suffix_list_urls=()``, no cache directory), so no code path reaches the network;
* phone: python-phonenumbers only finds numbers valid in a fixed list of regions, while
  prompts carry numbers from anywhere written anyhow. Ours takes any digit-group
  shape of 7 to 15 digits and lets context words ("call", "fax", "mobile"...) decide.
"""

from __future__ import annotations

import re
from functools import cache

import tldextract
from presidio_analyzer import EntityRecognizer, Pattern, PatternRecognizer
from presidio_analyzer.predefined_recognizers import (
    CreditCardRecognizer,
    EmailRecognizer,
    IbanRecognizer,
    IpRecognizer,
    UsSsnRecognizer,
)

from sluicegate.safety.pii.entities import PHONE_NUMBER

__all__ = ["OfflineEmailRecognizer", "PhonePatternRecognizer", "pattern_recognizers"]


@cache
def _suffixes() -> tldextract.TLDExtract:
    return tldextract.TLDExtract(suffix_list_urls=(), cache_dir=None, fallback_to_snapshot=True)


class OfflineEmailRecognizer(EmailRecognizer):
    """Presidio's e-mail pattern, with the public-suffix check done on the bundled list."""

    def validate_result(self, pattern_text: str) -> bool:
        return _suffixes()(pattern_text).fqdn != ""


class WideCreditCardRecognizer(CreditCardRecognizer):
    """Presidio's Luhn-checked card recognizer, for every 12-19 digit card number.

    Presidio's own pattern covers only some issuer prefixes (no Mastercard 2-series, no
    12-digit Maestro, no 19-digit Visa); the Luhn check keeps random digit runs out.
    """

    PATTERNS = [
        Pattern(
            "card 4x4",
            r"(?<![\d-])[1-6]\d{3}([ -]?)\d{4}\1\d{4}\1\d{4}(?:\1?\d{1,3})?(?![\d-])",
            0.5,
        ),
        Pattern("card 4-6-5", r"(?<![\d-])3\d{3}([ -])\d{6}\1\d{4,5}(?![\d-])", 0.5),
        Pattern("card digits", r"(?<![\d-])[1-6]\d{11,18}(?![\d-])", 0.3),
    ]

    def __init__(self) -> None:
        super().__init__(patterns=self.PATTERNS, context=[*self.CONTEXT, "account"])


_GROUPS = (
    r"\d{1,10}(?:[ .-]\d{1,8}){0,5}"
    r"(?:[ ]?(?:x|ext\.?)[ ]?\d{1,5})?"  # extension
    r"(?![\w.-]*\d)"
)
#: Starts with ``+CC`` or ``(area)``: numbers other than phones rarely do.
_PHONE_MARKED = r"(?<![\w+.-])(?:\+\d{1,3}[ .-]?(?:\(0\)[ ]?)?|\(\d{1,5}\)[ .-]?)" + _GROUPS
_PHONE_BARE = r"(?<![\w+.(-])" + _GROUPS
_DATE = re.compile(r"\d{4}[-./]\d{1,2}[-./]\d{1,2}|\d{1,2}[-./]\d{1,2}[-./]\d{2,4}")


class PhonePatternRecognizer(PatternRecognizer):
    """Phone numbers in any national layout: digit groups, optional ``+CC``, ``(area)``.

    A bare digit-group run is weak evidence (it could be an order number), so it scores
    below the detector's threshold unless a context word is near.
    """

    CONTEXT = [
        "phone",
        "call",
        "tel",
        "mobile",
        "cell",
        "fax",
        "office",
        "desk",
        "contact",
        "reach",
        "text",
        "sms",
        "whatsapp",
        "dial",
        "ring",
        "number",
        "message",
        "answer",
    ]

    def __init__(self) -> None:
        super().__init__(
            supported_entity=PHONE_NUMBER,
            name="PhonePatternRecognizer",
            patterns=[
                Pattern("phone +cc or (area)", _PHONE_MARKED, 0.5),
                Pattern("phone digit groups", _PHONE_BARE, 0.3),
            ],
            context=self.CONTEXT,
        )

    def validate_result(self, pattern_text: str) -> bool | None:
        number = re.split(r"\s?(?:x|ext)", pattern_text)[0]
        digits = sum(c.isdigit() for c in number)
        if not 7 <= digits <= 15 or _DATE.fullmatch(number):
            return False
        # One unbroken run of digits: more likely an ID or an amount than a phone.
        if number.isdigit() and len(number) < 10:
            return False
        return None


def pattern_recognizers() -> list[EntityRecognizer]:
    """The recognizers for the structured types, each built once per detector."""
    return [
        OfflineEmailRecognizer(),
        WideCreditCardRecognizer(),
        IbanRecognizer(),
        IpRecognizer(),
        UsSsnRecognizer(),
        PhonePatternRecognizer(),
    ]
