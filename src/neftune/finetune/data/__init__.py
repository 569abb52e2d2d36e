"""Data for ``neftune train`` / ``neftune eval``: generated tasks and user data loaders.

Part of ``neftune.finetune``: may import the library and the rest of ``finetune``.
"""

from .formats import DataError, Record, examples_to_records, load_records, parse_record, records_to_examples
from .tasks import (
    FAMILIES,
    PRESETS,
    SPLIT_NAMES,
    AnswerKind,
    Example,
    SplitConfig,
    TaskFamily,
    Template,
    build_splits,
    check_answer,
    resolve_heldout_families,
)

__all__ = [
    "FAMILIES",
    "PRESETS",
    "SPLIT_NAMES",
    "AnswerKind",
    "DataError",
    "Example",
    "Record",
    "SplitConfig",
    "TaskFamily",
    "Template",
    "build_splits",
    "check_answer",
    "examples_to_records",
    "load_records",
    "parse_record",
    "records_to_examples",
    "resolve_heldout_families",
]
