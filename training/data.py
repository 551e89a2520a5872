"""A round's data: training rows of each kind and held-out prompts, from the store or a file.

From the store, rounds are on-policy (SEED, CodeLutra): KTO and DPO rows are the completions of
the adapter that is serving, plus the user's revisions made since it was promoted (a revision
is the user's fix, good data whichever model erred). An exported dataset (``compilot export``:
a folder of split files, or one parquet / jsonl file) is used as it is.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from compilot.feedback import datasets as fd
from compilot.feedback.grades import Grade
from compilot.settings import Settings
from compilot.training.evaluate import Prompt, prompts_from_rows
from compilot.training.robustness import Item, robustness_set

if TYPE_CHECKING:
    from datasets import Dataset

    from compilot.feedback.store import Store


@dataclass
class RoundData:
    """Training rows by kind (train split only) and the held-out prompts."""

    rows: dict[str, Dataset]
    held_out: list[Prompt]
    source: str
    """Where the rows came from (the store and its filter, or the file)."""
    balance: dict[str, Any] = field(default_factory=dict)
    robustness: list[Item] = field(default_factory=list)
    """The robustness set, from the functions of the held-out rows."""

    def counts(self) -> dict[str, int]:
        """What ``train.choose`` decides on."""
        kto = self.rows.get("kto")
        labels = list(kto["label"]) if kto is not None and len(kto) else []
        return {"pairs": len(self.rows["dpo"]) if "dpo" in self.rows else 0,
                "desirable": labels.count(True), "undesirable": labels.count(False),
                "sft": len(self.rows["sft"]) if "sft" in self.rows else 0}


def _newest(rows: Dataset, limit: int) -> Dataset:
    if len(rows) <= limit:
        return rows
    times = rows["created_at"]
    order = sorted(range(len(rows)), key=lambda i: -times[i])[:limit]
    return rows.select(sorted(order))


GRADE_WEIGHTS: dict[bool, dict[Grade, float]] = {
    False: {Grade.DOES_NOT_PARSE: 1.0, Grade.TYPE_ERROR: 0.6, Grade.UNRESOLVED: 0.3,
            Grade.COMPILES: 0.3, Grade.KEPT: 0.3, Grade.PASSES_TESTS: 0.3},
    True: {Grade.PASSES_TESTS: 1.0, Grade.KEPT: 0.7, Grade.COMPILES: 0.5,
           Grade.UNRESOLVED: 0.3, Grade.TYPE_ERROR: 0.3, Grade.DOES_NOT_PARSE: 0.3},
}
"""How much a KTO row of each label weighs by its grade: CodeRL's graded reward (-1 compile
error, -0.6 runtime error, -0.3 failed test, +1 pass) read as a weight, the further from the
boundary the heavier. A row without a grade weighs 0.5."""


def by_grade(rows: Dataset, seed: int) -> Dataset:
    """KTO rows resampled within each label by ``GRADE_WEIGHTS`` (with replacement, as many
    as there were: the class balance, and so trl's class weights, stay as they are)."""
    labels, grades = rows["label"], rows["grade"]
    rng = random.Random(seed)
    picked: list[int] = []
    for label in (False, True):
        members = [i for i, v in enumerate(labels) if v is label]
        if members:
            weights = [GRADE_WEIGHTS[label].get(Grade(g), 0.5) if g is not None else 0.5
                       for g in (grades[i] for i in members)]
            picked += rng.choices(members, weights=weights, k=len(members))
    return rows.select(sorted(picked))


def from_store(store: Store, settings: Settings, *, serving: str,
               serving_since: float | None) -> RoundData:
    """The round's rows from the event store; ``serving`` is the serving adapter version and
    ``serving_since`` when it started serving (None: always, as for the base)."""
    tr = settings.training
    rows: dict[str, Dataset] = {}
    held: list[dict[str, Any]] = []
    for kind in ("kto", "dpo", "sft"):
        built = fd.build(store, fd.Selection(kind=kind), settings.datasets)
        train = built["train"]
        if tr.on_policy:
            train = train.filter(lambda r, since=serving_since or 0.0: r["adapter"] == serving
                                 or (r["source"] == "revision" and r["created_at"] >= since))
        rows[kind] = _newest(train, tr.max_examples)
        held.extend(built["test"])
    if tr.kto_weighting == "grade" and len(rows["kto"]):
        rows["kto"] = by_grade(rows["kto"], tr.seed)
    where = f"the event store ({store.path})"
    if tr.on_policy:
        where += f", completions served by {serving} and revisions since"
    return RoundData(rows, prompts_from_rows(held, settings.gate.held_out_prompts), where,
                     fd.kto_balance(rows["kto"]), robustness_set(held, settings))


# trl's standard formats (https://huggingface.co/docs/trl/dataset_formats), "standard" not
# "conversational": the columns each needs, in the order a kind is recognised.
STANDARD: dict[str, tuple[str, ...]] = {
    "kto": ("prompt", "completion", "label"),
    "dpo": ("prompt", "chosen", "rejected"),
    "sft": ("prompt", "completion"),
}
_ACCEPTED = ("a compilot export, or trl's standard formats: KTO (prompt, completion, label), "
             "DPO (prompt, chosen, rejected), SFT (prompt, completion); as jsonl, parquet, an "
             ".arrow file, or a folder (train/test split files, or a `datasets` save_to_disk "
             "folder)")


def _load_path(path: Path) -> Any:
    from datasets import Dataset, DatasetDict, load_dataset, load_from_disk

    from compilot.feedback import dataset_export as fe

    if path.is_dir():
        if (path / "dataset_dict.json").is_file() or (path / "dataset_info.json").is_file():
            loaded = load_from_disk(str(path))
            return loaded if isinstance(loaded, DatasetDict) else DatasetDict({"train": loaded})
        for fmt in ("parquet", "jsonl", "arrow"):
            try:
                return fe.load(path, fmt)
            except FileNotFoundError:
                continue
        raise FileNotFoundError(f"{path}: no train/test split files (parquet, jsonl or arrow)")
    if not path.is_file():
        raise FileNotFoundError(f"dataset not found: {path}")
    if path.suffix == ".arrow":
        return DatasetDict({"train": Dataset.from_file(str(path))})
    builder = {".parquet": "parquet", ".jsonl": "json", ".json": "json"}.get(path.suffix)
    if builder is None:
        raise ValueError(f"{path}: not a dataset file; expected {_ACCEPTED}")
    return DatasetDict({"train": load_dataset(builder, data_files=str(path), split="train")})


def _kind_of(columns: set[str], path: Path) -> str:
    """The kind of a loaded dataset: compilot's own columns, else trl's standard ones; a
    ValueError naming what is missing otherwise."""
    for kind in ("events", "kto", "dpo", "sft"):
        if set(fd.FEATURES[kind]) <= columns:
            return kind
    for kind, needed in STANDARD.items():
        if set(needed) <= columns:
            return kind
    closest = min(STANDARD.items(), key=lambda kv: len(set(kv[1]) - columns))
    missing = [c for c in closest[1] if c not in columns]
    raise ValueError(f"{path}: columns {sorted(columns)} are not a dataset to train on; "
                     f"closest is {closest[0].upper()}, which lacks {', '.join(missing)}. "
                     f"Accepted: {_ACCEPTED}")


def _check_types(rows: Dataset, kind: str, path: Path) -> None:
    """Each needed column holds what trl expects: text, and for KTO's label a bool."""
    wrong = []
    for column in STANDARD[kind]:
        feature = rows.features[column]
        dtype = getattr(feature, "dtype", None)
        want = "bool" if column == "label" else "string"
        if dtype != want and not (want == "string" and dtype == "large_string"):
            shown = dtype or type(feature).__name__
            if want == "string" and not dtype:
                shown += " (conversational rows, lists of messages, are not supported)"
            wrong.append(f"{column} is {shown}, not {want}")
    if wrong:
        raise ValueError(f"{path}: {'; '.join(wrong)}. Accepted: {_ACCEPTED}")


_DEFAULTS: dict[str, Any] = {
    "suffix": "", "language": "", "adapter": "", "source": "dataset", "origin": "dataset",
    "created_at": 0.0, "grade": None, "chosen_grade": None, "rejected_grade": None,
    "context": []}


def standard(loaded: Any, path: Path, held_out: float) -> tuple[str, Any]:
    """(kind, the splits with compilot's columns) of a loaded dataset. Columns it lacks of
    compilot's metadata get defaults (no suffix, language, adapter or grade; source and
    origin "dataset"; time 0; file: a hash of the prompt), so an export made before a column
    existed still trains. Without a test split, a ``held_out`` share of the prompts is set
    aside as one, by that hash: rows of one prompt stay on one side."""
    from datasets import DatasetDict

    first = next(iter(loaded.values()))
    kind = _kind_of(set(first.column_names), path)
    if kind == "events" or set(fd.FEATURES[kind]) <= set(first.column_names):
        return kind, loaded
    _check_types(first, kind, path)

    columns = [c for c in fd.FEATURES[kind] if c in first.column_names]

    def rows_of(split: Any) -> list[dict[str, Any]]:
        return [{**_DEFAULTS, "file": fd.file_id(row["prompt"]),
                 **{c: row[c] for c in columns}} for row in split]

    splits = {name: rows_of(split) for name, split in loaded.items()}
    if "test" not in splits:
        rows = splits.pop("train", [])
        splits = {"train": [r for r in rows if fd.split_of(r["file"], held_out) == "train"],
                  "test": [r for r in rows if fd.split_of(r["file"], held_out) == "test"]}
    return kind, DatasetDict({name: fd.to_dataset(rows, kind)
                              for name, rows in splits.items() if name in fd.SPLITS})


def from_path(path: Path, settings: Settings) -> RoundData:
    """The rows of a dataset file or folder: a compilot export, or trl's standard formats
    (``STANDARD``); its kind read from its columns. The gate's held-out prompts come from its
    test split (set aside from its rows when it has none), never from rows it trains on."""
    path = Path(path)
    kind, loaded = standard(_load_path(path), path, settings.datasets.held_out)
    if kind == "events":
        raise ValueError(f"{path} is an events table; export kto, dpo or sft to train on")
    train = _newest(loaded["train"], settings.training.max_examples) if "train" in loaded else None
    if train is None or not len(train):
        raise ValueError(f"{path} has no training rows")
    if kind == "kto" and settings.training.kto_weighting == "grade":
        train = by_grade(train, settings.training.seed)
    test = loaded["test"] if "test" in loaded else []
    held = prompts_from_rows(test, settings.gate.held_out_prompts) if len(test) else []
    balance = fd.kto_balance(train) if kind == "kto" else {}
    return RoundData({kind: train}, held, str(path), balance, robustness_set(test, settings))
