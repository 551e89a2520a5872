"""Training prompts that end where plain clients end them, tokenized as they are sent: the
healed boundary of the server, the newline, the indentation and mid-line, with the prompt and
the completion each tokenized alone and the trainers taking those ids as they are."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from datasets import Dataset

from compilot.languages import language_for
from compilot.models import embedded_model_path
from compilot.server.completion import context_prompt
from compilot.server.context import Choice, Chunk
from compilot.server.engine import Engine
from compilot.settings import ModelSettings, RangeError, TrainingSettings
from compilot.training import train
from compilot.training.boundaries import BOUNDARIES, cut, draw, pretokenized, tokenize
from compilot.training.corpus import Hole
from compilot.training.robustness import shapes
from compilot.training.served_tokens import ServedTokens

PROMPT = 'import os\n\n\ndef area(width, height):\n    """The area of a rectangle."""\n    '
BODY = "total = width * height\n    return total\n"


@pytest.fixture(scope="module")
def tokenizer(base_checkpoint: Path) -> Any:
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(base_checkpoint)


@pytest.fixture(scope="module")
def served() -> Iterator[ServedTokens]:
    with ServedTokens(embedded_model_path()) as tokens:
        yield tokens


@pytest.fixture(scope="module")
def engine() -> Iterator[Engine]:
    engine = Engine(embedded_model_path(), ModelSettings(n_ctx=512))
    yield engine
    engine.llm.close()


def test_each_boundary_moves_text_from_the_completion_to_the_prompt() -> None:
    found = {b: cut(PROMPT, [BODY], b) for b in BOUNDARIES}
    assert all(f is not None and f[0] + f[1][0] == PROMPT + BODY for f in found.values())
    ends = {b: f[0] for b, f in found.items() if f}
    assert ends["healed"].endswith('rectangle."""')
    assert ends["newline"].endswith('rectangle."""\n')
    assert ends["indented"].endswith('"""\n    ')
    assert found["mid_line"] and found["mid_line"][0].endswith("    total = ")
    assert found["healed"] and found["healed"][1] == ["\n    " + BODY]


def test_the_boundaries_are_the_robustness_sets_shapes() -> None:
    """What the gate asks in each shape is what the training rows end in."""
    hole = Hole("area", "area.py", PROMPT, "\n\nprint(area(2, 3))\n", BODY)
    asked = {item.shape: item.prompt.prefix for item in shapes(hole, "python", fim=False)}
    assert set(asked) == {"newline", "indented", "mid_line"}
    for shape, prefix in asked.items():
        found = cut(PROMPT, [BODY], shape)
        assert found is not None and found[0] == prefix, shape


def test_a_row_without_the_place_has_no_such_boundary() -> None:
    # The cursor in the middle of a line: no newline before the code.
    assert cut("x = ", ["compute(1)"], "newline") is None
    assert cut("x = ", ["compute(1)"], "indented") is None
    assert cut("x = ", ["compute(1)"], "mid_line") == ("x = compute(", ["1)"])
    # A first line too short to cut.
    assert cut("def f():\n    ", ["x\n"], "mid_line") is None
    # DPO: chosen and rejected must share what moves into the prompt.
    assert cut("def f():\n    ", ["return total + 1\n", "pass\n"], "mid_line") is None
    assert cut("def f():\n    ", ["return total + 1\n", "return None\n"],
               "mid_line") == ("def f():\n    return ", ["total + 1\n", "None\n"])
    assert cut("def f():\n    ", ["return total + 1\n", "pass\n"],
               "indented") == ("def f():\n    ", ["return total + 1\n", "pass\n"])
    with pytest.raises(ValueError, match="unknown prompt boundary"):
        cut(PROMPT, [BODY], "middle")


def test_the_draw_follows_the_weights_and_the_seed() -> None:
    drawn = draw(2000, {"healed": 3, "newline": 1, "indented": 1, "mid_line": 0}, seed=1)
    counts = Counter(drawn)
    assert set(counts) == {"healed", "newline", "indented"}
    assert 0.55 < counts["healed"] / 2000 < 0.65
    assert drawn == draw(2000, {"healed": 3, "newline": 1, "indented": 1, "mid_line": 0}, 1)
    with pytest.raises(ValueError, match="training.boundaries"):
        draw(3, {"healed": 0}, 0)


def test_settings_refuse_unknown_boundaries() -> None:
    with pytest.raises(RangeError, match="training.boundaries"):
        TrainingSettings(boundaries={"healed": 1.0, "start": 1.0})
    with pytest.raises(RangeError, match="training.boundaries"):
        TrainingSettings(boundaries={"healed": -1.0})
    with pytest.raises(RangeError, match="training.boundaries"):
        TrainingSettings(boundaries={"healed": 0.0})


def rows(count: int = 24) -> Dataset:
    return Dataset.from_dict({
        "prompt": [PROMPT.replace("area", f"area_{i}") for i in range(count)],
        "completion": [BODY.replace("total", f"total_{i}") for i in range(count)],
        "label": [i % 2 == 0 for i in range(count)]})


def test_fit_varies_the_boundary_and_says_which(tokenizer: Any) -> None:
    weights = {"healed": 1.0, "newline": 1.0, "indented": 1.0, "mid_line": 1.0}
    fitted, dropped = train.fit(rows(), "kto", tokenizer, 256, boundaries=weights, seed=1)
    assert dropped == 0 and set(fitted["boundary"]) == set(BOUNDARIES)
    for before, after in zip(rows(), fitted, strict=True):
        assert after["prompt"] + after["completion"] == before["prompt"] + before["completion"]
        assert cut(before["prompt"], [before["completion"]], after["boundary"]) == (
            after["prompt"], [after["completion"]])
    healed, _ = train.fit(rows(), "kto", tokenizer, 256)
    assert set(healed["boundary"]) == {"healed"}


def test_prompt_and_completion_are_tokenized_alone(served: ServedTokens, engine: Engine) -> None:
    """The prompt's ids are the server's own prompt for the same text (``Engine.prompt``), and a
    prompt ending in a newline is trained on the newline token an unhealed client sends;
    tokenized together, as trl does, the newline would merge with the indentation after it."""
    prompt, (completion,) = cut(PROMPT, [BODY], "newline") or ("", [""])
    row = Dataset.from_dict({"prompt": [prompt], "completion": [completion], "label": [True]})
    ids = tokenize(row, "kto", served)[0]
    sent = engine.prompt(prompt, "", max_tokens=16)
    assert ids["prompt_ids"] == sent
    assert ids["completion_ids"] == engine.tokenize(completion) + [engine.llm.token_eos()]
    joint = engine.prompt(prompt + completion, "", max_tokens=16)
    assert joint[:len(sent)] != sent  # what trl's split would have trained on instead

    sft = tokenize(row, "sft", served)[0]
    assert sft["input_ids"] == ids["prompt_ids"] + ids["completion_ids"]
    assert sft["completion_mask"] == [0] * len(sent) + [1] * len(ids["completion_ids"])
    pair = Dataset.from_dict({"prompt": [prompt], "chosen": [completion],
                              "rejected": ["    pass\n"]})
    dpo = tokenize(pair, "dpo", served)[0]
    assert dpo["prompt_ids"] == sent and dpo["chosen_ids"] == ids["completion_ids"]
    assert engine.llm.detokenize(dpo["rejected_ids"], special=True) == b"    pass\n<|im_end|>"


def choice_of(chunks: list[dict[str, str]]) -> Choice:
    return Choice(tuple(Chunk(uri=f"file:///w/{c['path']}", path=c["path"], start=0,
                              text=c["text"], names=frozenset()) for c in chunks))


def test_training_rows_carry_the_context_as_the_server_laid_it_out(
        tokenizer: Any, served: ServedTokens, engine: Engine) -> None:
    """A row's chunks of other files are kept whole, the most relevant (the last) first,
    within ``context_tokens`` and ``max_length``; its prompt ids are then the server's own
    prompt with that context (``context_prompt``: comments before the window, for a model
    without repository tokens)."""
    chunks = [{"path": f"pkg/m{i}.py", "text": f"def helper_{i}(x):\n    return x + {i}"}
              for i in range(6)]
    row = Dataset.from_dict({"prompt": [PROMPT], "completion": [BODY], "label": [True],
                             "language": ["python"], "context": [chunks]})
    fitted, dropped = train.fit(row, "kto", tokenizer, 256, prompt_tokens=128,
                                context_tokens=100)
    kept = fitted[0]["context"]
    assert dropped == 0 and 0 < len(kept) < len(chunks)
    assert kept == chunks[len(chunks) - len(kept):]
    ids = tokenize(fitted, "kto", served)[0]
    sent = context_prompt(engine, fitted[0]["prompt"], "", 16, language_for("python"),
                          choice_of(kept), None)
    assert ids["prompt_ids"] == sent
    assert "Compare this snippet from pkg/m5.py" in engine.llm.detokenize(sent).decode()
    assert len(ids["prompt_ids"]) + len(ids["completion_ids"]) <= 256

    for max_length in (72, 64):  # the prompt first: the context takes what is left
        short, _ = train.fit(row, "kto", tokenizer, max_length, prompt_tokens=128,
                             context_tokens=100)
        assert len(short[0]["context"]) < len(kept)
        short_ids = tokenize(short, "kto", served)[0]
        assert len(short_ids["prompt_ids"]) + len(short_ids["completion_ids"]) <= max_length
    off, _ = train.fit(row, "kto", tokenizer, 256, prompt_tokens=128)
    assert off[0]["context"] == []


@pytest.mark.parametrize("method", ["kto", "dpo"])
def test_the_trainers_take_the_ids_as_they_are(base_checkpoint: Path, tokenizer: Any,
                                               served: ServedTokens, tmp_path: Path,
                                               method: str) -> None:
    from trl import DPOTrainer, KTOTrainer

    from compilot.training.base import load_base
    from compilot.training.gguf_adapter import targets

    settings = TrainingSettings(batch_size=4, max_steps=1, max_length=128)
    data = rows(8)
    if method == "dpo":
        data = Dataset.from_dict({"prompt": data["prompt"], "chosen": data["completion"],
                                  "rejected": ["pass\n"] * len(data)})
    weights = dict.fromkeys(BOUNDARIES, 1.0)
    fitted, _ = train.fit(data, method, tokenizer, 128, boundaries=weights, seed=0)
    ids = tokenize(fitted, method, served)
    model, _ = load_base(base_checkpoint)
    config = train._config(method, settings, tmp_path, {})
    trainer_class = pretokenized(KTOTrainer if method == "kto" else DPOTrainer)
    trainer = trainer_class(model=model, args=config, train_dataset=ids,
                            processing_class=tokenizer,
                            peft_config=train.lora_config(settings, targets(model, "llama")))
    prepared = trainer.train_dataset
    assert prepared["prompt_ids"] == ids["prompt_ids"]
    if method == "kto":
        completions = ids["completion_ids"]
        assert prepared["completion_ids"] == completions
        # The KL estimate's mismatched completions: rotated by one within each batch of 4.
        assert prepared["KL_completion_ids"][:4] == [completions[3], *completions[:3]]
    else:
        assert prepared["chosen_ids"] == ids["chosen_ids"]
        assert prepared["rejected_ids"] == ids["rejected_ids"]


def test_a_round_reports_its_boundaries(base_checkpoint: Path, tmp_path: Path) -> None:
    settings = TrainingSettings(batch_size=2, gradient_accumulation=1, max_steps=1,
                                max_length=128, boundaries=dict.fromkeys(BOUNDARIES, 1.0))
    report = train.train("sft", rows(8), base=base_checkpoint, model_path=embedded_model_path(),
                         out=tmp_path / "peft",
                         settings=settings)
    assert sum(report.boundaries.values()) == report.examples == 8
    assert len(report.boundaries) > 1
    assert report.hyperparameters["boundaries"] == settings.boundaries
