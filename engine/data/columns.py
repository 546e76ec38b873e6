"""The vocabulary ``insight init`` reads a table with: one column as inferred
(:class:`Column`) and the name and value patterns that mark ids, times, PII and sensitive
attributes. Shared by the inference (engine.data.init) and the choice of key and time
(engine.data.identity)."""

from __future__ import annotations

import re
from dataclasses import dataclass

PII_NAMES = re.compile(
    r"(^|_)(e_?mail|phone|mobile|telephone|first_?name|last_?name|full_?name|surname|name|"
    r"address|street|ssn|passport|iban|ip_?address)($|_)"
)
SENSITIVE_NAMES = re.compile(
    r"(^|_)(gender|sex|age|race|ethnicity|ethnic|religion|nationality|citizenship|marital|"
    r"married|disability|disabled|pregnan\w*|senior\w*|dependents?)($|_)"
)
EMAIL_VALUE = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
PHONE_VALUE = re.compile(r"^\+?[\d\s().-]{7,20}$")
ISO_TIME = re.compile(
    r"^\d{4}-\d{1,2}-\d{1,2}([ T]\d{1,2}:\d{2}(:\d{2}(\.\d+)?)?)?(Z|[+-]\d{2}:?\d{2})?$"
)
ID_NAMES = re.compile(r"(^|_)(id|key|uuid|guid|number|no)$")
TIME_NAMES = re.compile(r"(date|time|timestamp|_at$|_on$|day$)")
NUMERIC_SHARE = 0.95  # of non-blank cells that must parse for a text column to be numeric


@dataclass
class Column:
    name: str  # as the project uses it (snake_case)
    raw: str  # as the file has it
    kind: str  # int | double | string | timestamp | bool
    distinct: int
    non_null: int
    note: str = ""
    time_format: str = ""  # a CSV time column that is not ISO: its Spark pattern
    time_swapped: str = ""  # the other order, where every value reads both ways
