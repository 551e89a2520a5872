"""Where a training row's prompt ends, and the row's tokens as the model is served them.

The server heals every prompt (``server.prompt.heal``: trailing whitespace is held back and
generated), but a plain llama.cpp call or another editor plugin sends the text as it is: a
prompt ending in the newline after a docstring, in the body's indentation, or in the middle
of a line (the shapes of ``training.robustness``). An adapter trained on healed prompts only
learns that one boundary; one demo adapter answered "```" to most prompts ending in a
newline, where the base wrote a body. So a share of the rows (``training.boundaries``) moves
the prompt's end: text passes from the front of the completion to the end of the prompt.

Moving text is not enough by itself: trl tokenizes prompt + completion in one piece and
starts the completion where the tokens of the prompt alone stop matching, so a prompt ending
in a newline would still be trained as if the newline and the indentation after it were one
token (the healed boundary, every time). ``tokenize`` instead tokenizes the prompt alone, as
the server or any client sends it to llama.cpp, and the completion alone, as the model
writes it; ``pretokenized`` makes trl's KTO and DPO trainers take those ids as they are (its
SFT trainer already does, given ``input_ids`` and ``completion_mask``).
"""

from __future__ import annotations

import random
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from compilot.languages import language_for
from compilot.server.prompt import heal
from compilot.training.robustness import mid_line

if TYPE_CHECKING:
    from datasets import Dataset

    from compilot.training.served_tokens import ServedTokens

BOUNDARIES = ("healed", "newline", "indented", "mid_line")
"""``healed``: where the server ends its prompt (before the trailing whitespace);
``newline``: after the last newline before the completion's code; ``indented``: after that
newline and the indentation; ``mid_line``: partway into the completion's first line of code
(``robustness.mid_line``)."""


def cut(prompt: str, targets: Sequence[str], boundary: str) -> tuple[str, list[str]] | None:
    """``prompt`` and its completions (one, or DPO's chosen and rejected) with the prompt
    ending at ``boundary``; None where the row has no such place (no newline before the code,
    a first line too short to cut, completions that differ before it)."""
    if boundary not in BOUNDARIES:
        raise ValueError(f"unknown prompt boundary {boundary!r} (one of {', '.join(BOUNDARIES)})")
    healed, held = heal(prompt)
    rests = [held + target for target in targets]
    if boundary == "healed":
        return healed, rests
    first = rests[0]
    lead = len(first) - len(first.lstrip())
    line_start = first.rfind("\n", 0, lead) + 1
    if boundary in ("newline", "indented") and not line_start:
        return None
    if boundary == "newline":
        at = line_start
    elif boundary == "indented":
        at = lead
    else:
        end = first.find("\n", lead)
        line = first[line_start:end if end >= 0 else len(first)]
        if len(line.strip()) < 4:
            return None
        at = line_start + mid_line(line)
    moved = first[:at]
    if not first[at:].strip() or any(not rest.startswith(moved) or not rest[at:].strip()
                                     for rest in rests):
        return None
    return healed + moved, [rest[at:] for rest in rests]


def weights(boundaries: Mapping[str, float]) -> dict[str, float]:
    """``training.boundaries`` checked: known names, weights not negative, some positive."""
    unknown = sorted(set(boundaries) - set(BOUNDARIES))
    if unknown or any(w < 0 for w in boundaries.values()) or not any(boundaries.values()):
        raise ValueError(f"training.boundaries must weigh {', '.join(BOUNDARIES)} (weights >= 0, "
                         f"at least one > 0); not {dict(boundaries)}")
    return {name: float(w) for name, w in boundaries.items() if w > 0}


def draw(count: int, boundaries: Mapping[str, float], seed: int) -> list[str]:
    """A boundary for each of ``count`` rows, drawn in proportion to the weights (the same
    draw for the same seed)."""
    chosen = weights(boundaries)
    return random.Random(seed).choices(list(chosen), weights=list(chosen.values()), k=count)


def tokenize(rows: Dataset, method: str, served: ServedTokens) -> Dataset:
    """Rows of text (``train.fit``'s) as the served model's token ids: the prompt as the
    server builds it (with the row's suffix for a FIM model, after the chunks of other files
    its ``context`` kept), each completion tokenized alone
    with the end-of-text token after it (what trl appends).

    KTO: prompt_ids, completion_ids, label; DPO: prompt_ids, chosen_ids, rejected_ids; SFT:
    input_ids and completion_mask (the loss on the completion only).
    """
    from datasets import Dataset

    eos = [served.eos]
    targets = ("chosen", "rejected") if method == "dpo" else ("completion",)
    out: dict[str, list[Any]] = {}
    for row in rows:
        context = [(c["path"], c["text"]) for c in row.get("context") or []]
        prompt = served.prompt(row["prompt"], row.get("suffix") or "", context=context,
                               comment=language_for(row.get("language")).comment or "#")
        ids = {t: served.ids(row[t]) + eos for t in targets}
        if method == "sft":
            values: dict[str, Any] = {
                "input_ids": prompt + ids["completion"],
                "completion_mask": [0] * len(prompt) + [1] * len(ids["completion"])}
        else:
            values = {"prompt_ids": prompt, **{f"{t}_ids": ids[t] for t in targets}}
            if method == "kto":
                values["label"] = row["label"]
        for key, value in values.items():
            out.setdefault(key, []).append(value)
    return Dataset.from_dict(out)


def pretokenized(trainer: type) -> type:
    """``trainer`` (trl's KTOTrainer or DPOTrainer, or a subclass) taking rows that already
    hold ``tokenize``'s ids as they are; rows of text still go through trl's own
    preparation. What trl does after tokenizing is kept: rows whose prompt alone fills
    max_length are dropped, and KTO's mismatched completions for its KL estimate are the
    completions rotated by one within each batch."""

    class Pretokenized(trainer):
        def _prepare_dataset(self, dataset: Any, processing_class: Any, args: Any,
                             dataset_name: str) -> Any:
            if "prompt_ids" not in dataset.column_names:
                return super()._prepare_dataset(dataset, processing_class, args, dataset_name)
            if args.max_length is not None:
                dataset = dataset.filter(lambda row: len(row["prompt_ids"]) < args.max_length)
            if getattr(self, "calculate_KL", False):
                def rotate(batch: dict[str, list[Any]]) -> dict[str, list[Any]]:
                    completions = batch["completion_ids"]
                    batch["KL_completion_ids"] = completions[-1:] + completions[:-1]
                    return batch

                dataset = dataset.map(rotate, batched=True,
                                      batch_size=args.per_device_train_batch_size)
            return dataset

    Pretokenized.__name__ = Pretokenized.__qualname__ = f"Pretokenized{trainer.__name__}"
    return Pretokenized
