"""The append-only, hash-chained audit log of served decisions: the writer (segments,
rotation, heads), the chain format, the verifier, what a decision records, and readers
(record by record, or a time window column-wise for the monitor)."""

from engine.audit.chain import FORMAT, encode, genesis, record_hash
from engine.audit.records import audit_inputs, decision_record
from engine.audit.verify import (
    SegmentCheck,
    VerifyResult,
    read_records,
    segments,
    verify,
    verify_segment,
)
from engine.audit.writer import AuditWriter, layout_id

__all__ = [
    "FORMAT",
    "AuditWriter",
    "SegmentCheck",
    "VerifyResult",
    "audit_inputs",
    "decision_record",
    "encode",
    "genesis",
    "layout_id",
    "read_records",
    "record_hash",
    "segments",
    "verify",
    "verify_segment",
]
