"""PII detection and redaction: Presidio's analyzer with offline recognizers and spaCy NER.

Build a :class:`PiiDetector` once at start-up; per request, :func:`protect_body`
finds (and, by mode, replaces) PII in every text of an OpenAI body, and the returned
:class:`Mask` restores masked values in the answer (:meth:`Mask.stream_restorer` for
streams). ``sluicegate eval pii DATA`` (:func:`evaluate.main`) measures quality.
"""

from sluicegate.safety.pii.body import BodyMode, BodyResult, protect_body
from sluicegate.safety.pii.detector import PiiDetector
from sluicegate.safety.pii.entities import SUPPORTED_TYPES, Entity
from sluicegate.safety.pii.redact import Mask, Mode, StreamRestorer, redact

__all__ = [
    "SUPPORTED_TYPES",
    "BodyMode",
    "BodyResult",
    "Entity",
    "Mask",
    "Mode",
    "PiiDetector",
    "StreamRestorer",
    "protect_body",
    "redact",
]
