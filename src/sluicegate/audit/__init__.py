"""The audit log: a hash-chained, checkpoint-signed, append-only record of every call.

``AuditLog`` (writer.py) is what the gateway holds; ``verify`` (verify.py) is what
``sluicegate audit verify`` runs. entry.py says what an entry holds, chain.py how
entries are chained and signed, store.py and files.py how they are kept on disk,
retention.py how old files are archived and deleted without breaking the chain.
"""

from sluicegate.audit.chain import Checkpoint, HmacSigner
from sluicegate.audit.store import AuditError, ChainStore, Rotation
from sluicegate.audit.verify import Report, verify, verify_all
from sluicegate.audit.writer import AuditLog

__all__ = [
    "AuditError",
    "AuditLog",
    "ChainStore",
    "Checkpoint",
    "HmacSigner",
    "Report",
    "Rotation",
    "verify",
    "verify_all",
]
