"""A round's data: training rows of each kind and held-out prompts, from the store or a file.

From the store, rounds are on-policy (SEED, CodeLutra): KTO and DPO rows are the completions of
the adapter that is serving, plus the user's revisions made since it was promoted (a revision
is the user's fix, good data whichever model erred). An exported dataset (``compilot export``:
a folder of split files, or one parquet / jsonl file) is used as it is.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from compilot.feedback import datasets as fd
from compilot.settings import Settings
from compilot.training.evaluate import Prompt, prompts_from_rows

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
    where = f"the event store ({store.path})"
    if tr.on_policy:
        where += f", completions served by {serving} and revisions since"
    return RoundData(rows, prompts_from_rows(held, settings.gate.held_out_prompts), where,
                     fd.kto_balance(rows["kto"]))


def _load_path(path: Path) -> Any:
    from datasets import DatasetDict, load_dataset

    from compilot.feedback import dataset_export as fe

    if path.is_dir():
        for fmt in ("parquet", "jsonl", "arrow"):
            try:
                return fe.load(path, fmt)
            except FileNotFoundError:
                continue
        raise FileNotFoundError(f"{path}: no train/test split files (parquet, jsonl or arrow)")
    builder = {".parquet": "parquet", ".jsonl": "json", ".json": "json"}.get(path.suffix)
    if builder is None:
        raise ValueError(f"{path}: not a parquet or jsonl file")
    if not path.is_file():
        raise FileNotFoundError(f"dataset not found: {path}")
    return DatasetDict({"train": load_dataset(builder, data_files=str(path), split="train")})


def from_path(path: Path, settings: Settings) -> RoundData:
    """The rows of an exported dataset (its kind read from its columns)."""
    loaded = _load_path(Path(path))
    kind = fd.kind_of(loaded)
    if kind == "events":
        raise ValueError(f"{path} is an events table; export kto, dpo or sft to train on")
    train = _newest(loaded["train"], settings.training.max_examples) if "train" in loaded else None
    if train is None or not len(train):
        raise ValueError(f"{path} has no training rows")
    test = loaded["test"] if "test" in loaded else []
    held = prompts_from_rows(test, settings.gate.held_out_prompts) if len(test) else []
    balance = fd.kto_balance(train) if kind == "kto" else {}
    return RoundData({kind: train}, held, str(path), balance)
