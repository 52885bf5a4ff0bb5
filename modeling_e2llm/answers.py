"""The answer format the model is trained to produce, and its parser.

An answer is free-text reasoning followed by one ``Key: value`` line per field::

    Reasoning: alpha power is low against this subject's baseline, ...
    Emotion: sadness
    Valence: negative

The label line is what label scoring continues (:data:`LABEL_PREFIX`). Parsing never
guesses: a missing field, or a value outside the allowed set, leaves the field ``None``
and the answer counts as unparseable for it.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

REASONING_KEY = "Reasoning"
LABEL_KEY = "Emotion"
LABEL_PREFIX = f"{LABEL_KEY}: "


def format_answer(fields: Mapping[str, str], rationale: str | None = None) -> str:
    """Assistant text: an optional ``Reasoning:`` paragraph then one ``Key: value`` line per field."""
    lines = [f"{REASONING_KEY}: {rationale.strip()}"] if rationale else []
    lines += [f"{key}: {value}" for key, value in fields.items()]
    return "\n".join(lines)


@dataclass
class ParsedAnswer:
    """What could be read from a generated answer. `label` is None when it could not be parsed."""

    label: str | None
    rationale: str | None
    fields: dict[str, str | None] = field(default_factory=dict)

    @property
    def parseable(self) -> bool:
        return self.label is not None


def _field_pattern(key: str) -> re.Pattern:
    return re.compile(rf"^\s*\**{re.escape(key)}\**\s*[:=]\s*(?P<value>.+?)\s*$", re.IGNORECASE | re.MULTILINE)


def _match_choice(value: str, choices: Sequence[str]) -> str | None:
    cleaned = value.strip().strip(".*\"'`").strip().lower()
    matches = [c for c in choices if c.lower() == cleaned]
    return matches[0] if len(matches) == 1 else None


def parse_answer(
    text: str,
    label_names: Sequence[str],
    extra_fields: Mapping[str, Sequence[str]] | None = None,
) -> ParsedAnswer:
    """Read the label (one of `label_names`, case-insensitive) and optional extra fields from `text`.

    When the label line occurs several times with different values, the answer is ambiguous
    and the label is None.
    """
    if extra_fields is not None and not isinstance(extra_fields, Mapping):
        raise ValueError(f"extra_fields= must map a field name to its allowed values (e.g. {{'Valence': ['positive', "
                         f"'negative']}}), got {type(extra_fields).__name__}")
    values = {m.group("value") for m in _field_pattern(LABEL_KEY).finditer(text)}
    labels = {_match_choice(v, label_names) for v in values}
    label = labels.pop() if len(labels) == 1 else None
    rationale_match = re.search(
        rf"{REASONING_KEY}\s*:\s*(?P<text>.*?)(?=^\s*\w+\s*:|\Z)", text, re.IGNORECASE | re.MULTILINE | re.DOTALL
    )
    rationale = rationale_match.group("text").strip() if rationale_match else None
    fields: dict[str, str | None] = {}
    for key, choices in (extra_fields or {}).items():
        found = [_match_choice(m.group("value"), choices) for m in _field_pattern(key).finditer(text)]
        fields[key] = found[0] if len(set(found)) == 1 else None
    return ParsedAnswer(label=label, rationale=rationale or None, fields=fields)


__all__ = ["LABEL_KEY", "LABEL_PREFIX", "REASONING_KEY", "ParsedAnswer", "format_answer", "parse_answer"]
