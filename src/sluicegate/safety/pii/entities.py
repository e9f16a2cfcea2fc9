"""What a detector reports: typed character spans of one text."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = [
    "CREDIT_CARD",
    "EMAIL_ADDRESS",
    "IBAN_CODE",
    "IP_ADDRESS",
    "LOCATION",
    "ORGANIZATION",
    "PERSON",
    "PHONE_NUMBER",
    "SUPPORTED_TYPES",
    "US_SSN",
    "Entity",
]

EMAIL_ADDRESS = "EMAIL_ADDRESS"
PHONE_NUMBER = "PHONE_NUMBER"
US_SSN = "US_SSN"
CREDIT_CARD = "CREDIT_CARD"
IBAN_CODE = "IBAN_CODE"
IP_ADDRESS = "IP_ADDRESS"
PERSON = "PERSON"
LOCATION = "LOCATION"
ORGANIZATION = "ORGANIZATION"

#: Presidio's entity names, so its recognizers and evaluation data need no renaming.
SUPPORTED_TYPES: frozenset[str] = frozenset(
    {
        EMAIL_ADDRESS,
        PHONE_NUMBER,
        US_SSN,
        CREDIT_CARD,
        IBAN_CODE,
        IP_ADDRESS,
        PERSON,
        LOCATION,
        ORGANIZATION,
    }
)


@dataclass(frozen=True, slots=True)
class Entity:
    """One finding: ``text[start:end]`` is ``type`` with confidence ``score`` (0..1)."""

    type: str
    start: int
    end: int
    score: float
    text: str
