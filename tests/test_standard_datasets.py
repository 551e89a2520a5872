"""Issue 13: `compilot train --dataset` takes trl's standard formats, not only compilot's exports.

Before: a plain KTO jsonl (prompt, completion, label) was refused as "not a compilot dataset".
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from datasets import Dataset, DatasetDict

from compilot.settings import Settings
from compilot.training import data
from compilot.training.registry import AdapterStatus, Registry
from tests.test_training import compilot, config

BODIES = [
    ("def add(a, b):\n    return", " a + b", " a - b"),
    ("def square(x):\n    return", " x * x", " x + x"),
    ("def first(items):\n    return", " items[0]", " items[1]"),
    ("def last(items):\n    return", " items[-1]", " items[0]"),
    ("def negate(x):\n    return", " -x", " x"),
    ("def is_even(n):\n    return", " n % 2 == 0", " n % 2 == 1"),
]


def kto_rows() -> list[dict[str, Any]]:
    return [row for prompt, good, bad in BODIES for row in (
        {"prompt": prompt, "completion": good, "label": True},
        {"prompt": prompt, "completion": bad, "label": False})]


def write_jsonl(path: Path, rows: list[dict[str, Any]]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_a_trl_kto_jsonl_is_read_with_defaults_and_a_held_out_share(tmp_path: Path) -> None:
    settings = Settings()
    settings.datasets.held_out = 0.34
    round_data = data.from_path(write_jsonl(tmp_path / "kto.jsonl", kto_rows()), settings)
    train = round_data.rows["kto"]
    assert set(train.column_names) >= {"prompt", "completion", "label", "suffix", "file"}
    assert set(train["source"]) == {"dataset"}
    held = {p.prefix for p in round_data.held_out}
    assert held, "no prompt set aside for the gate"
    assert not held & set(train["prompt"]), "the gate would score prompts it trains on"


@pytest.mark.parametrize(("kind", "rows"), [
    ("dpo", [{"prompt": p, "chosen": g, "rejected": b} for p, g, b in BODIES]),
    ("sft", [{"prompt": p, "completion": g} for p, g, _ in BODIES]),
])
@pytest.mark.parametrize("fmt", ["jsonl", "parquet", "arrow", "save_to_disk"])
def test_each_standard_kind_and_format_is_read(tmp_path: Path, kind: str,
                                               rows: list[dict[str, Any]], fmt: str) -> None:
    table = Dataset.from_list(rows)
    if fmt == "jsonl":
        path = write_jsonl(tmp_path / "d.jsonl", rows)
    elif fmt == "parquet":
        path = tmp_path / "d.parquet"
        table.to_parquet(str(path))
    elif fmt == "arrow":
        table.save_to_disk(str(tmp_path / "saved"))
        path = next((tmp_path / "saved").glob("*.arrow"))
    else:
        path = tmp_path / "dict"
        DatasetDict({"train": table, "test": table.select([0])}).save_to_disk(str(path))
    settings = Settings()
    settings.datasets.held_out = 0.34
    round_data = data.from_path(path, settings)
    assert list(round_data.rows) == [kind]
    if fmt == "save_to_disk":  # its own test split serves the gate
        assert [p.prefix for p in round_data.held_out] == [BODIES[0][0]]
        assert len(round_data.rows[kind]) == len(rows)


@pytest.mark.parametrize(("rows", "named"), [
    pytest.param([{"prompt": "p", "answer": "a"}], "SFT, which lacks completion",
                 id="missing-column"),
    pytest.param([{"prompt": "p", "completion": "c", "label": "yes"}], "label is string, not bool",
                 id="label-not-bool"),
    pytest.param([{"prompt": [{"role": "user", "content": "hi"}], "completion": "c"}],
                 "conversational", id="conversational"),
])
def test_a_dataset_that_does_not_fit_names_what_is_wrong(tmp_path: Path,
                                                          rows: list[dict[str, Any]],
                                                          named: str) -> None:
    path = write_jsonl(tmp_path / "bad.jsonl", rows)
    with pytest.raises(ValueError, match="Accepted: a compilot export, or trl's") as caught:
        data.from_path(path, Settings())
    assert named in str(caught.value)


def test_a_trl_kto_jsonl_trains(tmp_path: Path, base_checkpoint: Path) -> None:
    """Was: refused as "not a compilot dataset (columns ['completion', 'label', 'prompt'])"."""
    path = write_jsonl(tmp_path / "kto.jsonl", kto_rows())
    root = tmp_path / "data"
    root.mkdir()
    env = config(root, base_checkpoint, training={"max_steps": 1}, datasets={"held_out": 0.34})
    done = compilot(env, "train", "--dataset", str(path), "--method", "kto", "--no-promote",
                    "--json")
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout)
    assert result["choice"]["method"] == "kto"
    assert Registry(root / "adapters").info(result["version"]).status is AdapterStatus.CANDIDATE
