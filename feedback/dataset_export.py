"""Write a built dataset to disk with a dataset card, read it back, or push it to the HF hub.

One file per split (`train.parquet`, `test.jsonl`, or `save_to_disk` folders for arrow) and a
`README.md` whose YAML front matter (configs/data_files, dataset_info features) lets the
Hugging Face hub and `datasets.load_dataset(out_dir)` read the folder as it is. Reading back
needs no network: local files go to the packaged parquet/json builders or `load_from_disk`.
"""

from __future__ import annotations

import inspect
import time
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
from datasets import Dataset, DatasetDict, DatasetInfo, Features, load_dataset, load_from_disk
from datasets.info import DatasetInfosDict
from huggingface_hub import DatasetCard, DatasetCardData

from compilot.feedback import datasets as ds_mod
from compilot.feedback.redact import redact

FORMATS = ("parquet", "jsonl", "arrow")
CARD = "README.md"
_SUFFIX = {"parquet": ".parquet", "jsonl": ".jsonl"}
_ABOUT = {
    "kto": "prompt/completion pairs labelled desirable (true) or undesirable (false), for KTO",
    "dpo": "prompt/chosen/rejected triples, for DPO",
    "sft": "prompt/completion pairs that compile, for supervised fine-tuning",
    "events": "every completion candidate with its events, checks and survival (research)",
}


def _check_format(fmt: str) -> None:
    if fmt not in FORMATS:
        raise ValueError(f"format must be one of {', '.join(FORMATS)}, not {fmt!r}")


def split_path(out_dir: Path, split: str, fmt: str) -> Path:
    """Where ``split`` lives under ``out_dir`` in ``fmt`` (a folder for arrow)."""
    return out_dir / (split if fmt == "arrow" else split + _SUFFIX[fmt])


def _redacted(dataset_dict: DatasetDict) -> DatasetDict:
    """Defence in depth: whatever built the rows, no unredacted text leaves."""
    kind = ds_mod.kind_of(dataset_dict)
    return DatasetDict({
        split: ds_mod.to_dataset([ds_mod.redact_row(r) for r in ds.to_list()], kind)
        for split, ds in dataset_dict.items()
    })


def export(dataset_dict: DatasetDict, out_dir: Path, *, fmt: str = "parquet",
           made_with: dict[str, Any] | None = None,
           summary: dict[str, Any] | None = None) -> list[Path]:
    """Write every split of ``dataset_dict`` and a dataset card; the paths written."""
    _check_format(fmt)
    out_dir.mkdir(parents=True, exist_ok=True)
    clean = _redacted(dataset_dict)
    summary = summary or ds_mod.summary(clean)
    if fmt == "arrow":
        # One shard per split: an empty split saved with zero shards cannot be loaded back.
        clean.save_to_disk(str(out_dir), num_shards=dict.fromkeys(clean, 1))
    for split, ds in clean.items():
        if fmt == "parquet":
            ds.to_parquet(str(split_path(out_dir, split, fmt)))
        elif fmt == "jsonl":
            ds.to_json(str(split_path(out_dir, split, fmt)), lines=True, force_ascii=False)
    card = out_dir / CARD
    card.write_text(dataset_card(clean, fmt=fmt, made_with=made_with, summary=summary),
                    encoding="utf-8")
    return [split_path(out_dir, split, fmt) for split in clean] + [card]


def _card_yaml(dataset_dict: DatasetDict, fmt: str, kind: str) -> str:
    pattern = {"parquet": "{}.parquet", "jsonl": "{}.jsonl", "arrow": "{}/*.arrow"}[fmt]
    # The hub cannot load an empty split ("corresponds to no data"): list only non-empty ones.
    files = [{"split": s, "path": pattern.format(s)} for s, ds in dataset_dict.items() if len(ds)]
    data = DatasetCardData(
        language=["code"], pretty_name=f"compilot {kind}",
        tags=["code", "compiler-feedback", kind], task_categories=["text-generation"],
        configs=[{"config_name": "default", "data_files": files}] if files else None,
    )
    features = ds_mod.FEATURES[kind]
    DatasetInfosDict({"default": DatasetInfo(features=features)}).to_dataset_card_data(data)
    return data.to_yaml().rstrip("\n") + "\n"


def _table(counts: dict[str, int]) -> str:
    return ", ".join(f"{k} ({v})" for k, v in counts.items()) or "none"


def dataset_card(dataset_dict: DatasetDict, *, fmt: str, made_with: dict[str, Any] | None,
                 summary: dict[str, Any]) -> str:
    """A README.md for the hub: YAML front matter, counts, and how the data was made."""
    kind = summary["kind"]
    lines = [f"# compilot {kind} dataset", "",
             f"{_ABOUT[kind]}, exported by compilot on "
             f"{time.strftime('%Y-%m-%d', time.gmtime())} from a local completion event store.",
             "", "| split | rows | files |", "| --- | ---: | ---: |"]
    lines += [f"| {s} | {v['rows']} | {v['files']} |" for s, v in summary["splits"].items()]
    span = summary["time_range"]
    lines += [
        "", f"- Rows: {summary['rows']}",
        f"- Languages: {_table(summary['by_language'])}",
        f"- Adapter versions: {_table(summary['by_adapter'])}",
        "- Time range (request time, UTC): "
        + (f"{span['from']} to {span['to']}" if span else "no rows"),
    ]
    for key in ("by_label", "by_source", "by_outcome"):
        if key in summary:
            lines.append(f"- {key[3:].capitalize()}: {_table(summary[key])}")
    if "balance" in summary:
        lines.append(f"- KTO balance (train): {summary['balance']}")
    if made_with is not None:
        lines.append(f"- Made with: {made_with}")
    lines += ["", "## How this data was made", "", inspect.getdoc(ds_mod) or "", "",
              "## Redaction", "",
              "Secrets were replaced with `<REDACTED>` when the events were recorded and again "
              "on export: key and token shapes (private keys and PEM bodies; AWS, GitHub, "
              "Slack, Stripe, Azure, OpenAI-style and Google keys; JWTs; URL and "
              "connection-string passwords), also half-typed; the values of secret-looking "
              "names (passwords, tokens, `*_KEY`, `.env`-style `NAME=value` lines) to the end "
              "of their line; high-entropy literals. Files such as `.env`, `*.pem` and "
              "`.ssh/` were never recorded (compilot's README, Privacy, lists all). A plain-word "
              "password or a short random literal under an ordinary name can slip through. "
              "File paths are not included: `file` "
              "is a SHA-256 prefix of the document URI (a pseudonym, not an anonymisation: a "
              "guessed path can be hashed and compared). Review the data before publishing it.",
              ""]
    return redact(f"---\n{_card_yaml(dataset_dict, fmt, kind)}---\n\n" + "\n".join(lines))


def _card_features(out_dir: Path) -> Features | None:
    card = out_dir / CARD
    if not card.exists():
        return None
    infos = DatasetInfosDict.from_dataset_card_data(DatasetCard.load(card).data)
    info = infos.get("default") or next(iter(infos.values()), None)
    return info.features if info else None


def _has_rows(path: Path, fmt: str) -> bool:
    if fmt == "parquet":
        return pq.ParquetFile(path).metadata.num_rows > 0
    return bool(path.read_text(encoding="utf-8").strip())


def load(out_dir: Path, fmt: str, *, cache_dir: Path | None = None) -> DatasetDict:
    """Read an export back (offline); empty splits come back empty, with their columns."""
    _check_format(fmt)
    if fmt == "arrow":
        return load_from_disk(str(out_dir))
    paths = {s: split_path(out_dir, s, fmt) for s in ds_mod.SPLITS}
    paths = {s: p for s, p in paths.items() if p.exists()}
    if not paths:
        raise FileNotFoundError(f"no {fmt} split files in {out_dir}")
    features = _card_features(out_dir)
    if features is None and fmt == "parquet":
        features = Features.from_arrow_schema(pq.read_schema(next(iter(paths.values()))))
    full = {s: str(p) for s, p in paths.items() if _has_rows(p, fmt)}
    loaded = load_dataset("parquet" if fmt == "parquet" else "json", data_files=full,
                          features=features,
                          cache_dir=str(cache_dir) if cache_dir else None) if full else {}
    if features is None and len(full) < len(paths):
        raise ValueError(f"{out_dir} has an empty {fmt} split and no {CARD} naming its columns")
    empty: dict[str, list[Any]] = {k: [] for k in features or {}}
    return DatasetDict({s: loaded[s] if s in full else Dataset.from_dict(empty, features=features)
                        for s in paths})


def push_to_hub(dataset_dict: DatasetDict, repo: str, *, private: bool = True,
                token: str | None = None, card: str | None = None) -> None:
    """Upload to the Hugging Face hub (needs a network and a token); private by default.

    ``card`` (from ``dataset_card``) replaces the body of the README the upload writes; its
    YAML (configs, features) is kept, since it names the files the upload made.
    """
    _redacted(dataset_dict).push_to_hub(repo, private=private, token=token)
    if card is not None:
        hub_card = DatasetCard.load(repo, repo_type="dataset", token=token)
        hub_card.text = card.split("\n---\n", 1)[1] if card.startswith("---\n") else card
        hub_card.push_to_hub(repo, repo_type="dataset", token=token)
