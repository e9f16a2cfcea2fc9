"""Patterns of the well-known attack families, in English and German (some Spanish, French).

Each family is one compiled alternation searched on normalised, lower-cased text.
The patterns name an *object* of the attack (instructions, rules, system prompt...)
as well as the verb, so that "can I ignore this warning?" stays clean. They feed the
classifier as features and decide alone only for the ``STRONG`` families.
"""

from __future__ import annotations

import re
from functools import cache

import numpy as np
import numpy.typing as npt

from sluicegate.safety.injection.features import MAX_SCAN, Prepared, prepare

__all__ = ["FAMILIES", "MAX_WINDOWS", "SCAN_CHARS", "STRONG", "hits"]

_PRIOR = (
    r"(?:previous|prior|preceding|above|earlier|former|initial|original|foregoing|old|"
    r"existing|system|all|any|every|your|developer|developers|creator|operator|admin)"
)
_ORDERS = (
    r"(?:instructions?|directives?|rules|guidelines|prompts?|commands?|orders|tasks|"
    r"context|constraints|restrictions|programming|information|messages|guidance|"
    r"policies|training|conversation|limitations|filters|safeguards)"
)
_VERB_IGNORE = (
    r"(?:ignore|disregard|forget|skip|bypass|override|overwrite|neglect|abandon|drop|"
    r"discard|set aside|pay no attention to|do not follow|don'?t follow|stop following|"
    r"leave\W+\w+\W+behind|throw out|delete|erase|unlearn)"
)

_FAMILIES: dict[str, list[str]] = {
    "override": [
        rf"\b{_VERB_IGNORE}\W+(?:\w+\W+){{0,3}}?{_PRIOR}\W+(?:\w+\W+){{0,2}}?{_ORDERS}\b",
        rf"\b{_VERB_IGNORE}\W+(?:about\W+)?(?:everything|all)\W+(?:(?:that\W+)?(?:was|you)\W+)?"
        r"(?:before|above|said|were told|previously|so far|prior|until now)\b",
        rf"\b{_VERB_IGNORE}\W+everything\b(?=\W+(?:and|now|we|you|i|tell|say|write|print|start|from|then)\b)",
        r"\b(?:new|updated|real|actual|additional)\W+(?:system\W+)?instructions?\s*[:\-]",
        rf"\b(?:previous|prior|above|earlier|all)\W+(?:\w+\W+)?{_ORDERS}\W+(?:are|is|were)\W+"
        r"(?:now\W+)?(?:void|null|cancel+ed|irrelevant|obsolete|overridden|invalid|no longer)",
        r"\bstop\W+everything\b",
        # German
        r"\b(?:ignorier\w*|vergiss|vergessen\s+sie|missachte\w*|übergehe\w*)\W+(?:\w+\W+){0,3}?(?:alle\w*|vorherige\w*|bisherige\w*|obige\w*|vorangegangene\w*|deine\w*|ihre\w*|die)\W+(?:\w+\W+)?(?:anweisung\w*|instruktion\w*|befehl\w*|aufgabe\w*|aufträge|regel\w*|informationen|vorgaben)",
        r"\b(?:vergiss|vergessen\s+sie)\W+alles\b",
        r"\babweichend\W+(?:zu|von)\W+(?:den\W+)?(?:vorherigen|bisherigen|obigen)\b",
        r"\balle\W+(?:vorherigen|bisherigen|vorangegangenen)\W+(?:\w+\W+)?(?:informationen|anweisungen|aufgaben)\W+(?:sind|aus)\b",
        # Spanish, French
        r"\b(?:olvida|olvide|ignora|ignore)\W+(?:todo|todas\W+las\W+instrucciones|las\W+instrucciones)\b",
        r"\b(?:ignorez?|oubliez?)\W+(?:toutes\W+)?(?:les|vos)\W+instructions\b",
    ],
    "roleplay": [
        r"\bdo\W+anything\W+now\b",
        r"\b(?:dan|dude|stan|aim|apophis|developer|god|jailbreak|evil|chaos|opposite|unrestricted|unfiltered)\W+mode\b",
        r"\bjailbr(?:eak|oken)\w*\b",
        r"\b(?:you\W+are|you'?re|you\W+will\W+be)\W+(?:now\W+)?(?:no\W+longer|not|free\W+(?:of|from))\W+(?:\w+\W+){0,3}?(?:bound|restricted|limited|constrained|confined|censored)",
        r"\b(?:freed|broken\W+free|break\W+free)\W+(?:\w+\W+){0,3}?(?:confines|restrictions|limitations|rules|constraints)",
        r"\b(?:no|without\W+any|without|free\W+of|free\W+from)\W+(?:\w+\W+)?(?:restrictions|filters|filtering|limitations|censorship|guidelines|ethics|morals|moral\W+(?:\w+\W+)?constraints)\b(?=.{0,120}\b(?:you|act|respond|answer|pretend|character|mode|ai|model)\b)",
        r"\b(?:stay|remain|keep)\W+in\W+character\b",
        r"\b(?:pretend|imagine|act\W+as\W+if|suppose)\W+(?:\w+\W+){0,3}?(?:have\W+no|without|don'?t\W+have|no\W+longer\W+have)\W+(?:\w+\W+)?(?:rules|restrictions|filters|limitations|guidelines|ethics|morals|programming|content\W+polic\w+)",
        r"\b(?:evil|unfiltered|uncensored|unrestricted|amoral|unethical|rogue|immoral)\W+(?:ai|assistant|chatbot|bot|model|version|twin|alter\W+ego|persona|confidant|gpt)\b",
        r"\b(?:as\W+an?|you\W+are\W+an?)\W+ai\W+(?:\w+\W+){0,2}?without\W+(?:any\W+)?(?:ethics|morals|restrictions|filters)",
        r"\bfrom\W+now\W+on\W+(?:,\W*)?you\W+(?:are|will|must|shall)\W+(?:\w+\W+){0,2}?(?:act|be|respond|answer|pretend|reply|play|simulate)\b",
        r"\b(?:openai|anthropic|content)\W+(?:\w+\W+)?polic(?:y|ies)\W+(?:\w+\W+){0,3}?(?:doesn'?t|does\W+not|no\W+longer|don'?t)\W+apply",
        r"\bstell\W+dir\W+vor\W+(?:\w+\W+){0,3}?(?:böse|ohne\W+regeln|ohne\W+einschränkungen)",
        r"\bjetzt\W+bist\W+du\b",
    ],
    "exfiltration": [
        r"\b(?:reveal|show|print|repeat|output|display|tell\W+me|give\W+me|write\W+(?:out|down)|list|spell\W+out|leak|dump|return|recite|share|summari[sz]e|translate|what\W+(?:is|are|were|was))\W+(?:\w+\W+){0,3}?(?:your|the|my|all|these|those)\W+(?:\w+\W+)?(?:system\W+prompt|system\W+message|initial\W+prompt|original\W+prompt|hidden\W+prompt|secret\W+(?:prompt|instructions|password|key|word)|prompt\W+texts?|(?:previous|prior|above|initial|original|first|hidden|secret|system|given|preceding)\W+instructions)",
        r"\b(?:repeat|print|output|show|display|write)\W+(?:\w+\W+){0,2}?(?:everything|all|the\W+(?:text|words|content|instructions))\W+(?:\w+\W+){0,2}?(?:above|before\W+this|so\W+far|preceding)",
        r"\bwhat\W+(?:is|was)\W+(?:written|said|stated)\W+above\b",
        r"\b(?:print|output|repeat|show)\W+(?:\w+\W+)?(?:above|previous|preceding|prior|initial)\W+(?:\w+\W+)?(?:instructions|prompt|text|messages)\b",
        r"\b(?:your|the)\W+(?:instructions|prompt)\W+(?:\w+\W+){0,3}?(?:verbatim|word\W+for\W+word|in\W+full)\b",
        r"\bbegin\w*\W+(?:\w+\W+){0,3}?with\W+[\"'“]?you\W+are\b",
        r"\b(?:what|tell\W+me)\W+(?:\w+\W+){0,3}?(?:password|secret\W+word|secret\W+key)\b(?=.{0,120}\b(?:not\W+(?:to\W+)?reveal|told\W+you|developers?|instructions)\b)",
        r"\b(?:zeige?|gib|nenne|wiederhole)\W+(?:\w+\W+){0,2}?(?:deine\w*|ihre\w*|alle\w*|die)\W+(?:\w+\W+)?(?:prompt\w*|anweisung\w*|instruktion\w*|systemnachricht\w*|texte)",
    ],
}

#: Word beginnings (a word's first five letters, or all of a shorter word) at least one
#: of which occurs in any text a family's pattern matches. The text's words are hashed
#: at once with numpy and looked up; the pattern then runs only on windows around
#: the hits, so clean text costs microseconds and any text a bounded amount.
_TRIGGERS: dict[str, tuple[str, ...]] = {
    "override": (
        "ignor",
        "disre",
        "forge",
        "forgo",
        "skip",
        "bypas",
        "overr",
        "overw",
        "negle",
        "aband",
        "drop",
        "disca",
        "aside",
        "atten",
        "behin",
        "throw",
        "delet",
        "erase",
        "unlea",
        "instr",
        "previ",
        "stop",
        "vergi",
        "verge",
        "missa",
        "überg",
        "abwei",
        "vorhe",
        "bishe",
        "voran",
        "alle",
        "olvid",
        "oubli",
    ),
    "roleplay": (
        "anyth",
        "mode",
        "jailb",
        "bound",
        "restr",
        "limit",
        "censo",
        "filte",
        "guide",
        "ethic",
        "moral",
        "chara",
        "prete",
        "imagi",
        "evil",
        "rogue",
        "ai",
        "openai",
        "anthr",
        "stell",
        "jetzt",
        "uncen",
        "unfil",
        "unres",
        "amora",
        "uneth",
        "immor",
    ),
    "exfiltration": (
        "promp",
        "instr",
        "passw",
        "secre",
        "above",
        "prece",
        "verba",
        "begin",
        "anwei",
        "texte",
    ),
}
# How far before and after a trigger the family's pattern may start and end.
_BEFORE = 100
_AFTER = 200
#: Trigger words looked at per family (half from each end); beyond them the classifier must do.
MAX_WINDOWS = 24
#: Longer texts are searched in their first and last halves of this many characters.
SCAN_CHARS = MAX_SCAN

#: Family name -> compiled pattern, for lower-cased text.
FAMILIES: dict[str, re.Pattern[str]] = {
    name: re.compile("|".join(f"(?:{p})" for p in patterns), re.DOTALL)
    for name, patterns in _FAMILIES.items()
}
#: Families precise enough to block without the classifier's agreement.
STRONG = frozenset({"override", "exfiltration"})


def hits(text: str | Prepared) -> list[str]:
    """The families whose pattern occurs in ``text`` (normalised), in FAMILIES order."""
    prepared = text if isinstance(text, Prepared) else prepare(text, SCAN_CHARS)
    slots = (prepared.beginnings * _MIX) >> np.uint64(64 - _TABLE_BITS)
    found = []
    for name, pattern in FAMILIES.items():
        # A table slot shared by chance only costs a pattern search that finds nothing.
        at = prepared.starts[_trigger_tables()[name][slots]]
        if len(at) > MAX_WINDOWS:  # the first and the last ones: attacks sit at either end
            at = np.concatenate((at[: MAX_WINDOWS // 2], at[-(MAX_WINDOWS // 2) :]))
        if len(at) and _search(pattern, prepared.text, at.tolist()):
            found.append(name)
    return found


_TABLE_BITS = 16
_MIX = np.uint64(0x9E3779B97F4A7C15)


@cache
def _trigger_tables() -> dict[str, npt.NDArray[np.bool_]]:
    tables = {}
    for name, words in _TRIGGERS.items():
        table = np.zeros(1 << _TABLE_BITS, dtype=np.bool_)
        beginnings = prepare(" ".join(words)).beginnings
        table[(beginnings * _MIX) >> np.uint64(64 - _TABLE_BITS)] = True
        tables[name] = table
    return tables


def _search(pattern: re.Pattern[str], text: str, positions: list[int]) -> bool:
    start, end = max(0, positions[0] - _BEFORE), positions[0] + _AFTER
    for at in positions[1:]:
        if at - _BEFORE > end:
            if pattern.search(text, start, end):
                return True
            start = at - _BEFORE
        end = at + _AFTER
    return pattern.search(text, start, end) is not None
