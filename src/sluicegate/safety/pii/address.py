"""Postal addresses as ``LOCATION``: a small grammar of how addresses are written.

spaCy's NER finds a city or a country but not ``12 Main St, Apt 4, Springfield, IL
62704``, and the number-first and name-first street forms of most European languages
not at all. An address here is a *street core* followed by the parts that trail it:

* core — ``NUM Name... Type`` (``69 Spencer Street``: USPS street-type words), ``Prefix
  Name... NUM`` (``Rue du Niger``, ``Via Roma 12``), a compound street word
  (``Heirstraat 134``, ``Kankaanpääntie 40``), ``NUM Name NUM`` (``637 Strojírenská
  1006``), a post-office box, or a US military address (``PSC 1234, Box 5678``);
* trailing parts, on the same line or after a comma or line break — unit (``Apt. 5``),
  capitalised place words (city, region, country), a state code, a postcode.

Each cue is a writing convention rather than a list of places, so unseen streets and
towns are found; a bare ``Name NUM`` (``Buerlia 227``) is too weak alone and needs a
context word such as "address" or "lives".
"""

from __future__ import annotations

from collections.abc import Iterator

import regex
from presidio_analyzer import AnalysisExplanation, LocalRecognizer, RecognizerResult
from presidio_analyzer.nlp_engine import NlpArtifacts

from sluicegate.safety.pii.entities import LOCATION

__all__ = ["AddressRecognizer"]

_NUM = r"\d{1,6}[A-Za-z]?(?:[/-]\d{1,4}[A-Za-z]?)?"
_UNIT_WORD = r"(?i:apt\.?|apartment|suite|ste\.?|unit|flat|floor|fl\.?|room|rm\.?|bldg\.?|building)"
# A capitalised word (any script); a dot only inside ("U.S") or ending a short
# abbreviation ("St.", "Mt."), so a sentence's full stop is not taken in.
_CAP = (
    rf"(?!{_UNIT_WORD}(?!\w))"
    r"(?:\p{Lu}\p{L}{0,2}\.|\p{Lu}[\p{L}\p{M}'\u2019-]*(?:\.\p{L}[\p{L}\p{M}'\u2019-]*)*)"
)
# Lower-case particles inside names: "Rue de la Paix", "Carry van Bruggenweg".
_PARTICLE = (
    r"(?:de|del|della|degli|dei|di|da|do|dos|das|du|des|la|le|les|van|von|der|den|het|"
    r"ten|ter|y|e|el|al|à|au|aux|u|na|nad|pod|pri|of|the|sur|sous|bei|am|im|an|ob|upon|"
    r"[ld]['\u2019]\p{L}+)"
)
_WORD = rf"(?:{_CAP}|{_PARTICLE}|\p{{Ll}}[\p{{L}}\p{{M}}'\u2019-]+)"
_NAMEWORD = rf"(?:{_CAP}|{_PARTICLE})"
# USPS Publication 28 street suffixes (the common ones) and their abbreviations.
_TYPE = (
    r"(?:Street|St|Str|Road|Rd|Avenue|Ave|Av|Lane|Ln|Drive|Dr|Boulevard|Blvd|Place|Pl|"
    r"Way|Court|Ct|Terrace|Ter|Row|Walks?|Crescent|Cres|Close|Squares?|Sq|Parade|"
    r"Highway|Hwy|Gardens?|Park|Circle|Cir|Trail|Trl|Parkway|Pkwy|Alley|Grove|Hills?|"
    r"Heights|Mount|Views?|Valley|Ridge|Streams?|Creek|Divide|Wells?|Burgs?|Unions?|"
    r"Mall|Mews|Greens?|Points?|Pike|Plaza|Quay|Wharf|Rise|Vale|Loop|Path|Pass|Port|"
    r"Route|Expressway|Freeway|Bridge|Brook|Bypass|Camp|Canyon|Cape|Causeway|Center|"
    r"Cliffs?|Common|Corners?|Course|Cove|Crest|Crossing|Curve|Dale|Dam|Estates?|"
    r"Extension|Falls?|Ferry|Fields?|Flats?|Fords?|Forest|Forge|Forks?|Fort|Gateway|"
    r"Glen|Harbor|Haven|Hollow|Inlet|Island|Isle|Junction|Keys?|Knolls?|Lakes?|"
    r"Landing|Light|Lock|Locks|Lodge|Manor|Meadows?|Mills?|Mission|Motorway|Mountain|"
    r"Neck|Orchard|Oval|Overpass|Pines?|Plains?|Prairie|Ramp|Ranch|Rapids?|Rest|Run|"
    r"Shoals?|Shores?|Skyway|Springs?|Spur|Station|Stravenue|Summit|Trace|Track|"
    r"Trafficway|Tunnel|Turnpike|Underpass|Viaduct|Village|Ville|Vista|Wall|Ways)\.?"
)
# Name-first street words in other languages (any case: "rue", "ul.").
_PREFIX = (
    r"(?i:rue|rua|via|viale|vicolo|piazza|piazzale|corso|largo|calle|carrer|avenida|"
    r"avda\.?|av\.|avenue|camino|paseo|plaza|praça|praca|travessa|estrada|rodovia|"
    r"alameda|strada|ulica|ul\.|aleja|al\.|chemin|allée|impasse|quai|cours|odos|"
    r"οδός|λεωφόρος|πλατεία|R\.)"
)
# Compound street words: German, Dutch, Nordic, Finnish, Hungarian, Slavic endings.
_COMPOUND = (
    r"\p{Lu}[\p{L}\p{M}-]*?(?i:straße|strasse|straat|weg|gasse|gade|vej|vænget|gatan|"
    r"gata|vägen|väg|veien|vegen|vei|veg|katu|tie|kuja|polku|utca|útja|út|allee|"
    r"alléen|plein|laan|dreef|kade|gracht|platz|damm|ufer|stígur|braut|vegur|"
    r"sokak|caddesi|cesta|ulice|iela|rakpart|chaussee)(?!\w)\.?"
)
# A whole word: "United States" is not "Unit" + "ed States".
# Street words written apart, after the name: Hungarian, Baltic, Slavic, Greek, Turkish.
_SUFFIX_WORD = (
    r"(?:u\.|utca|út|útja|tér|körút|krt\.|fasor|iela|gatve|tee|mnt\.?|prospekt|"
    r"prosp\.|str\.|sokak|sok\.|caddesi|cad\.|bulvar|bulevardi|trg|ulica|cesta|"
    r"námestie|náměstí|nám\.)"
)
_UNIT = rf"(?:{_UNIT_WORD}(?!\p{{L}})|#)\s?[\w-]+"
_POSTCODE = (
    r"(?:\d{3,6}(?:[ -]\d{2,4})?|\p{Lu}{1,2}\d[\dA-Z]?\s?\d\p{Lu}{2}|\p{Lu}\d\p{Lu}\s?\d\p{Lu}\d)"
    # a postcode ends its line or clause: not the start of a phone number
    r"(?=[ \t]*(?:[\n,.;:!?)]|$)|[ \t]+\p{L})"
)
_STREET = rf"(?:(?:{_NUM} ){{0,2}}{_NAMEWORD}(?: {_NAMEWORD}){{0,4}}(?: {_TYPE}| {_NUM}))"

_CORES: list[tuple[regex.Pattern[str], float]] = [
    # 69 Spencer Street / 2017 Wolmarans St / Suite 200, 84 Emily Renzelli Boulevard
    (
        regex.compile(
            rf"(?:\b{_UNIT},? )?\b(?:{_NUM} ){{1,2}}(?:{_NAMEWORD} ){{0,4}}{_CAP} {_TYPE}(?!\w)"
        ),
        0.85,
    ),
    # Rue du Niger / 91 avenue Jules Ferry / Via Santa Teresa degli Scalzi 71 / ul. Kładki 82
    (
        regex.compile(
            rf"(?<!\w)(?:{_UNIT},? )?(?:{_NUM} ){{0,2}}{_PREFIX} ?"
            rf"{_NAMEWORD}(?: {_NAMEWORD}){{0,4}}"
            rf"(?: {_NUM}(?!\w))?"
        ),
        0.75,
    ),
    # Heirstraat 134 / 490 Grazer Strasse / Sjötullsgatan 39: a number on either side
    (
        regex.compile(
            rf"\b(?:(?:{_NUM} ){{0,2}}(?:{_CAP} ){{0,2}}{_COMPOUND} {_NUM}(?!\w)"
            rf"|(?:{_NUM} ){{1,2}}(?:{_CAP} ){{0,2}}{_COMPOUND})"
        ),
        0.7,
    ),
    # Király u. 23 / Andrássy út 12 / Brīvības iela 5: the street word after the name
    (
        regex.compile(rf"\b(?:{_NUM} ){{0,2}}(?:{_CAP} ){{1,3}}{_SUFFIX_WORD} {_NUM}(?!\w)"),
        0.75,
    ),
    # 637 Strojírenská 1006 / Apt. 082 737 Orrspelsv 7 / 09251 Luige tee 56
    (
        regex.compile(
            rf"(?:\b{_UNIT},? )?\b(?:{_NUM} ){{1,2}}{_CAP}(?: {_WORD}){{0,3}} {_NUM}(?!\w)"
        ),
        0.7,
    ),
    # P.O. Box 50 / Unit 0148 Box 9025 / PSC 8277, Box 8816 / USNS Mercy
    (
        regex.compile(
            rf"\b(?:{_NUM} )?(?:P\.?\s?O\.?\s?Box|(?:Unit|PSC) \d+,? Box) \d+"
            r"|\b(?:USNS|USNV|USS|USCGC) \p{Lu}[\p{L}'-]+"
        ),
        0.85,
    ),
    # the corner of 99 Derry Street and Lillestøl Stream
    (
        regex.compile(
            rf"\b(?i:the )?corner of {_STREET}(?: (?:St\.?|Street))? and "
            rf"{_NAMEWORD}(?: {_NAMEWORD}){{0,3}}(?: {_TYPE}| {_NUM})"
        ),
        0.85,
    ),
    # ZIP: 94400 / postcode 1234 AB (the code alone)
    (
        regex.compile(rf"(?<=\b(?i:zip|zip code|postcode|postal code)[:#]? ?){_POSTCODE}"),
        0.6,
    ),
    # Buerlia 227: weak, a context word must lift it over the threshold.
    (regex.compile(rf"\b{_CAP}(?: {_NAMEWORD}){{0,2}} {_NUM}(?!\w)"), 0.3),
]

# "Erzsébet fasor 38. Suite 8": the full stop of a house number written the Hungarian way.
_SAME_LINE = regex.compile(rf"(?:\.? {_UNIT})+|(?: {_POSTCODE}(?!\w))")
# A place name: capitalised words, particles only between them.
_PLACE = rf"(?:{_CAP}(?: (?:{_PARTICLE} )*{_CAP})*)"
# Not a place: a word that labels the next field ("Mobile: ...", "Phone:").
_NOT_LABEL = r"(?![\w'\u2019]|[ \t]*:)"
_TAIL_SAME_LINE = regex.compile(rf"(?: {_PLACE}){{1,2}}(?: {_POSTCODE})?{_NOT_LABEL}")
_SEPARATOR = r"[ \t]*(?:,|\n)[\s,>?*•·-]*"
_SEGMENT = regex.compile(
    rf"{_SEPARATOR}(?:"
    rf"{_UNIT}"
    rf"|[APD]PO A[AEP] \d{{5}}"
    rf"|{_PLACE}(?: {_POSTCODE})?"
    # a region code and a postcode ("SO 8671"), not "..., and 260 54 Main St"
    rf"|(?!(?i:and|or|the|for|to|at|via|but|nor)\b)\p{{L}}{{2,3}} {_POSTCODE}"
    rf"|\p{{Lu}}{{2}}"
    rf"|{_POSTCODE}"
    rf"){_NOT_LABEL}"
)
_MAX_SEGMENTS = 6


class AddressRecognizer(LocalRecognizer):
    """Street addresses and post-office boxes, with their city/region/postcode lines."""

    NAME = "AddressRecognizer"
    CONTEXT = [
        "address",
        "live",
        "located",
        "locate",
        "deliver",
        "ship",
        "send",
        "sent",
        "mail",
        "street",
        "station",
        "office",
        "moved",
        "move",
        "meet",
        "visit",
        "billing",
        "corner",
        "stop",
    ]

    def __init__(self) -> None:
        super().__init__(
            supported_entities=[LOCATION],
            name=self.NAME,
            context=self.CONTEXT,
        )

    def load(self) -> None:
        pass

    def analyze(
        self,
        text: str,
        entities: list[str],
        nlp_artifacts: NlpArtifacts | None = None,
    ) -> list[RecognizerResult]:
        if LOCATION not in entities:
            return []
        spans = sorted(self._spans(text))
        merged: list[tuple[int, int, float]] = []
        for start, end, score in spans:
            if merged and start <= merged[-1][1]:
                last = merged[-1]
                merged[-1] = (last[0], max(last[1], end), max(last[2], score))
            else:
                merged.append((start, end, score))
        return [
            RecognizerResult(
                LOCATION,
                start,
                end,
                score,
                analysis_explanation=AnalysisExplanation(
                    recognizer=self.NAME, original_score=score
                ),
                recognition_metadata={
                    RecognizerResult.RECOGNIZER_NAME_KEY: self.NAME,
                    RecognizerResult.RECOGNIZER_IDENTIFIER_KEY: self.id,
                },
            )
            for start, end, score in merged
        ]

    @staticmethod
    def _spans(text: str) -> Iterator[tuple[int, int, float]]:
        for pattern, score in _CORES:
            for match in pattern.finditer(text, overlapped=False):
                start, end = match.span()
                end = _extend(text, end)
                # A full stop after an abbreviation ("UK.") more likely ends the sentence.
                if text[end - 1] == ".":
                    end -= 1
                yield start, end, score


def _extend(text: str, end: int) -> int:
    """Take the unit, place and postcode parts that follow a street core."""
    found = _SAME_LINE.match(text, end)
    if found:
        end = found.end()
    found = _TAIL_SAME_LINE.match(text, end)
    if found:
        end = found.end()
    for _ in range(_MAX_SEGMENTS):
        found = _SEGMENT.match(text, end)
        if not found:
            break
        end = found.end()
    return end
