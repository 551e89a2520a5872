"""Training rounds on the embedded model with real data: KTO and DPO move the model's
preferences the right way, a round registers and gates its adapter, a killed round changes
nothing, a worse adapter is refused, and the background trainer starts rounds."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import torch

from compilot import round_lock
from compilot.feedback import dataset_export as fe
from compilot.feedback import datasets as fd
from compilot.feedback.store import Store
from compilot.models import embedded_model_path
from compilot.paths import DataDir
from compilot.pointer import BASE
from compilot.settings import DatasetSettings, Settings, TrainingSettings
from compilot.training import data, precision, train
from compilot.training.evaluate import Prompt
from compilot.training.registry import AdapterStatus, Registry
from compilot.training.rounds import evaluate_pair, judge
from tests.adapters import random_adapter

SMALL = TrainingSettings(max_steps=4, batch_size=4, gradient_accumulation=1, max_length=128,
                         learning_rate=1e-3, min_examples=4)


def copy_store(collected: Path, dest: Path) -> Path:
    """A private copy of the collected data dir's database (tests add rounds to it)."""
    dest.mkdir(parents=True, exist_ok=True)
    src = sqlite3.connect(collected / "events.db")
    out = sqlite3.connect(dest / "events.db")
    with out:
        src.backup(out)
    src.close()
    out.close()
    return dest


def config(root: Path, base: Path, **sections: dict[str, Any]) -> dict[str, str]:
    """Environment for a `compilot` child: its data dir and a small TOML config."""
    values: dict[str, dict[str, Any]] = {
        "datasets": {"held_out": 0.25},
        "training": {"base": str(base), "max_steps": 3, "batch_size": 4,
                     "gradient_accumulation": 1, "max_length": 128, "learning_rate": 5e-4,
                     "min_examples": 4},
        "gate": {"held_out_prompts": 3, "humaneval": 2, "max_tokens": 24},
    }
    for name, extra in sections.items():
        values[name] = {**values.get(name, {}), **extra}
    lines = []
    for name, table in values.items():
        lines.append(f"[{name}]")
        lines += [f"{k} = {json.dumps(v)}" for k, v in table.items()]
    (root / "config.toml").write_text("\n".join(lines) + "\n")
    return {**os.environ, "COMPILOT_DATA_DIR": str(root),
            "COMPILOT_CONFIG": str(root / "config.toml")}


def compilot(env: dict[str, str], *args: str, timeout: float = 280) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "compilot", *args], env=env, timeout=timeout,
                          capture_output=True, text=True, check=False)


def settings_for(held_out: float = 0.25) -> Settings:
    s = Settings()
    s.datasets.held_out = held_out
    s.training = SMALL
    return s


def completion_logprobs(model: Any, tokenizer: Any, prompt: str, completion: str) -> float:
    """Mean log-probability per token of ``completion`` after ``prompt``."""
    p = tokenizer(prompt, add_special_tokens=False)["input_ids"]
    full = tokenizer(prompt + completion, add_special_tokens=False)["input_ids"]
    start = next((i for i, (a, b) in enumerate(zip(p, full, strict=False)) if a != b),
                 min(len(p), len(full)))
    ids = torch.tensor([full])
    with torch.no_grad():
        logits = model(ids).logits[0, :-1].float()
    logp = torch.log_softmax(logits, -1).gather(1, ids[0, 1:, None])[:, 0]
    return float(logp[start - 1:].mean())


def margin(model: Any, tokenizer: Any, rows: Any, good: str, bad: str | None = None) -> float:
    """Mean log-prob of desirable minus undesirable completions (KTO: by label; DPO: chosen
    minus rejected)."""
    if bad is None:  # KTO rows
        scores = {True: [], False: []}
        for r in rows:
            scores[r["label"]].append(completion_logprobs(model, tokenizer, r["prompt"],
                                                          r["completion"]))
        return sum(scores[True]) / len(scores[True]) - sum(scores[False]) / len(scores[False])
    return sum(completion_logprobs(model, tokenizer, r["prompt"], r[good])
               - completion_logprobs(model, tokenizer, r["prompt"], r[bad])
               for r in rows) / len(rows)


def trained_and_base(base: Path, adapter: Path) -> tuple[Any, Any]:
    from peft import PeftModel

    from compilot.training.base import load_base

    model, tokenizer = load_base(base)
    return PeftModel.from_pretrained(model, adapter).eval(), tokenizer


# -- choosing a method --------------------------------------------------------------------------

@pytest.mark.parametrize("requested, counts, method", [
    pytest.param("auto", {"pairs": 9, "desirable": 5, "undesirable": 5, "sft": 3}, "kto",
                 id="labels-first-kto"),
    pytest.param("auto", {"pairs": 9, "desirable": 9, "undesirable": 0, "sft": 3}, "dpo",
                 id="one-label-pairs-dpo"),
    pytest.param("auto", {"pairs": 2, "desirable": 5, "undesirable": 5}, "kto",
                 id="labels-kto"),
    pytest.param("auto", {"pairs": 0, "desirable": 20, "undesirable": 0, "sft": 9}, "sft",
                 id="one-label-revisions-sft"),
    pytest.param("kto", {"pairs": 50, "desirable": 5, "undesirable": 5}, "kto", id="asked"),
])
def test_choose(requested: str, counts: dict[str, int], method: str) -> None:
    choice = train.choose(requested, counts, 8)
    assert choice.method == method
    assert choice.reason


@pytest.mark.parametrize("order, counts, method, why", [
    pytest.param(("kto", "dpo", "sft"), {"pairs": 50, "desirable": 9, "undesirable": 9},
                 "kto", "9 desirable and 9 undesirable labels: KTO, the first of "
                 "training.auto_order = kto, dpo, sft with enough data", id="kto-first"),
    pytest.param(("kto", "dpo", "sft"), {"pairs": 50, "desirable": 30, "undesirable": 0},
                 "dpo", "(kto: not enough)", id="kto-lacks-a-label"),
    pytest.param(("sft", "dpo"), {"pairs": 50, "sft": 8}, "sft", "8 revisions", id="sft"),
])
def test_auto_follows_the_configured_order(order: tuple[str, ...], counts: dict[str, int],
                                           method: str, why: str) -> None:
    choice = train.choose("auto", counts, 8, order)
    assert choice.method == method
    assert why in choice.reason


def test_the_default_order_is_the_studys_and_names_kto_s_sft_term() -> None:
    """bench/study.py ranked KTO + SFT term first (README): the settings' default and
    choose()'s agree, and the reason says the KTO round carries its SFT term."""
    settings = TrainingSettings()
    assert settings.auto_order == list(train.AUTO_ORDER) == ["kto", "dpo", "sft"]
    assert settings.kto_sft_weight == 1.0
    choice = train.choose("auto", {"pairs": 50, "desirable": 9, "undesirable": 9}, 8,
                          settings.auto_order, settings.kto_sft_weight)
    assert choice.method == "kto"
    assert "KTO with an SFT term (weight 1), the first of training.auto_order = kto, dpo, sft" \
        in choice.reason
    plain = train.choose("auto", {"desirable": 9, "undesirable": 9}, 8, settings.auto_order)
    assert "SFT term" not in plain.reason


def test_an_order_with_an_unknown_method_is_refused() -> None:
    with pytest.raises(ValueError, match="auto_order"):
        TrainingSettings(auto_order=["dpo", "ppo"])
    with pytest.raises(train.TrainingError, match="auto_order"):
        train.choose("auto", {"pairs": 9}, 8, ())


@pytest.mark.parametrize("requested, counts, message", [
    pytest.param("auto", {"pairs": 1, "desirable": 3, "undesirable": 0, "sft": 2},
                 "not enough data", id="too-little"),
    pytest.param("ppo", {}, "training.method", id="unknown-method"),
])
def test_choose_refuses(requested: str, counts: dict[str, int], message: str) -> None:
    with pytest.raises(train.TrainingError, match=message):
        train.choose(requested, counts, 8)


def test_kto_needs_a_batch_of_two(tmp_path: Path, base_checkpoint: Path) -> None:
    from datasets import Dataset

    rows = Dataset.from_dict({"prompt": ["def f():\n    "] * 2, "completion": ["return 1"] * 2,
                              "label": [True, False]})
    with pytest.raises(train.TrainingError, match="batch_size"):
        train.train("kto", rows, base=base_checkpoint, model_path=embedded_model_path(),
                    out=tmp_path,
                    settings=TrainingSettings(batch_size=1))


# -- real training steps ------------------------------------------------------------------------

def test_kto_moves_the_preference_toward_desirable(collected: Path, base_checkpoint: Path,
                                                   tmp_path: Path) -> None:
    from safetensors.numpy import load_file

    round_data = data.from_store(Store.in_dir(DataDir(collected)), settings_for(0.0), serving=BASE,
                                 serving_since=None)
    rows = round_data.rows["kto"]
    assert set(rows["label"]) == {True, False}, round_data.counts()
    weights = {k: round_data.balance[k] for k in ("desirable_weight", "undesirable_weight")}
    report = train.train("kto", rows, base=base_checkpoint, model_path=embedded_model_path(),
                         out=tmp_path / "peft",
                         settings=SMALL, kto_weights=weights)
    assert report.method == "kto" and report.steps == SMALL.max_steps
    assert report.hyperparameters["precision"] == precision.choose("auto").name
    assert 0 < report.trainable_params < report.total_params / 10
    assert report.examples_per_s > 0 and report.peak_memory_mb > 0 and report.train_s > 0
    saved = load_file(tmp_path / "peft" / "adapter_model.safetensors")
    assert saved and all("lora_" in k for k in saved)  # the base stayed frozen: only LoRA saved
    assert all(abs(v).max() > 0 for k, v in saved.items() if "lora_B" in k)  # B starts at 0

    model, tokenizer = trained_and_base(base_checkpoint, tmp_path / "peft")
    fitted, _ = train.fit(rows, "kto", tokenizer, SMALL.max_length)
    after = margin(model, tokenizer, fitted, "completion")
    with model.disable_adapter():
        before = margin(model, tokenizer, fitted, "completion")
    assert after > before, (before, after)


def test_dpo_round_trains_registers_and_gates(collected: Path, base_checkpoint: Path,
                                              tmp_path: Path) -> None:
    root = copy_store(collected, tmp_path / "data")
    env = config(root, base_checkpoint)
    done = compilot(env, "train", "--method", "dpo", "--json")
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout)
    version = result["version"]
    assert result["choice"]["method"] == "dpo"
    report = result["report"]
    assert report["steps"] == 3 and report["hyperparameters"]["sft_weight"] == 1.0
    registry = Registry(root / "adapters")
    info = registry.info(version)
    assert info.method == "dpo" and info.parent == BASE
    assert info.training["trainable_params"] == report["trainable_params"]
    assert (registry.root / version / "adapter.gguf").stat().st_size > 0
    for role in ("serving", "candidate"):
        figures = result["evaluation"][role]
        assert 1 <= figures["held_out"]["prompts"] <= 3
        assert figures["humaneval"]["problems"] == 2
    assert info.evaluation["verdict"] == result["verdict"]
    assert info.status == ("promoted" if result["promoted"] else "rejected")
    assert registry.current() == (version if result["promoted"] else BASE)

    # The preference moved: chosen over rejected, more than the base prefers it.
    rows = data.from_store(Store.in_dir(DataDir(root)), settings_for(), serving=BASE,
                           serving_since=None).rows["dpo"]
    model, tokenizer = trained_and_base(base_checkpoint, registry.root / version / "peft")
    fitted, _ = train.fit(rows, "dpo", tokenizer, 128)
    after = margin(model, tokenizer, fitted, "chosen", "rejected")
    with model.disable_adapter():
        before = margin(model, tokenizer, fitted, "chosen", "rejected")
    assert after > before, (before, after)


@pytest.mark.parametrize("fmt", ["parquet", "jsonl"])
def test_train_from_an_exported_dataset(collected: Path, base_checkpoint: Path, tmp_path: Path,
                                        fmt: str) -> None:
    store = Store.in_dir(DataDir(collected))
    built = fd.build(store, fd.Selection(kind="sft"), DatasetSettings(held_out=0.25))
    fe.export(built, tmp_path / "ds", fmt=fmt)
    root = tmp_path / "data"
    root.mkdir()
    env = config(root, base_checkpoint, training={"max_steps": 1})
    target = tmp_path / "ds" if fmt == "parquet" else tmp_path / "ds" / "train.jsonl"
    done = compilot(env, "train", "--dataset", str(target), "--no-promote", "--json")
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout)
    assert result["choice"]["method"] == "sft"
    assert result["source"] == str(target)
    registry = Registry(root / "adapters")
    assert registry.info(result["version"]).status is AdapterStatus.CANDIDATE
    assert registry.current() == BASE


def test_a_killed_round_changes_nothing(collected: Path, base_checkpoint: Path,
                                        tmp_path: Path) -> None:
    root = copy_store(collected, tmp_path / "data")
    env = config(root, base_checkpoint, training={"max_steps": 200})
    adapters = root / "adapters"
    proc = subprocess.Popen([sys.executable, "-m", "compilot", "train", "--quiet"], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and not any(adapters.glob(".staging-*/peft")):
            assert proc.poll() is None, "the round ended before it could be killed"
            time.sleep(0.2)
        time.sleep(3)  # well inside the training steps
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(30)
    registry = Registry(adapters)
    assert registry.current() == BASE
    assert registry.versions() == []
    assert [p.name for p in registry.clean()]  # the next start removes the leftovers
    assert not any(adapters.glob(".staging-*"))
    with round_lock.round_locked(DataDir(root)):  # the kernel dropped the lock
        pass


# -- the gate -----------------------------------------------------------------------------------

def _eval(version: str, compile1: float | None, pass1: float | None = None,
          raw1: float | None = None) -> Any:
    from compilot.training.evaluate import Evaluation

    return Evaluation(version, {} if compile1 is None else {"compile@1": compile1},
                      {} if pass1 is None else {"pass@1": pass1},
                      {} if raw1 is None else {"held_out": {"compile@1": raw1}})


@pytest.mark.parametrize("serving, candidate, promoted, why", [
    pytest.param((0.5, 0.2), (0.7, 0.2), True, "0.500 -> 0.700", id="better"),
    pytest.param((0.5, None), (0.5, None), False, "does not beat", id="tie"),
    pytest.param((0.5, 0.2), (0.4, 0.3), False, "does not beat", id="worse-compile"),
    pytest.param((0.5, 0.30), (0.8, 0.20), False, "pass@1 fell", id="pass-drop"),
    pytest.param((0.5, 0.30), (0.8, 0.27), True, "pass@1", id="pass-within-tolerance"),
    pytest.param((None, None), (0.9, None), False, "no held-out", id="no-held-out"),
    pytest.param((0.9, 0.1, 0.4), (0.9, 0.1, 0.8), True, "raw 0.400 -> 0.800",
                 id="tie-shown-raw-better"),
    pytest.param((0.9, 0.1, 0.4), (0.9, 0.1, 0.4), False, "does not beat", id="tie-both"),
    pytest.param((0.9, 0.3, 0.4), (0.9, 0.1, 0.8), False, "pass@1 fell",
                 id="tie-shown-raw-better-pass-drop"),
    pytest.param((0.9, None, 0.9), (0.8, None, 1.0), False, "does not beat",
                 id="raw-never-outweighs-a-worse-shown"),
])
def test_judge(serving: tuple, candidate: tuple, promoted: bool, why: str) -> None:
    ok, reason = judge(_eval("s", *serving), _eval("c", *candidate), Settings().gate)
    assert ok is promoted
    assert why in reason


def test_the_gate_refuses_a_worse_adapter(tmp_path: Path) -> None:
    from compilot.server.prompt import window
    from compilot.training.corpus import stdlib_holes

    bad = random_adapter(embedded_model_path(), tmp_path, scale=0.6, seed=1)  # writes garbage
    prompts = []
    for task in stdlib_holes(4, seed=11):  # windows, as the store holds them
        win = window(task.document, len(task.prefix), prefix_chars=1500, suffix_chars=500)
        prompts.append(Prompt(win.prefix, win.suffix, "python"))
    settings = Settings()
    settings.gate.humaneval, settings.gate.max_tokens = 2, 24
    serving, candidate = evaluate_pair(settings, embedded_model_path(), (BASE, None),
                                       ("bad", bad), prompts)
    assert serving.held_out["compile@1"] > candidate.held_out["compile@1"], (serving, candidate)
    ok, why = judge(serving, candidate, settings.gate)
    assert not ok and "does not beat" in why


# -- the background trainer ---------------------------------------------------------------------

def test_the_trainer_starts_a_round_when_enough_new_labels(collected: Path,
                                                           base_checkpoint: Path,
                                                           tmp_path: Path) -> None:
    root = copy_store(collected, tmp_path / "data")
    env = config(root, base_checkpoint, training={"max_steps": 1},
                 gate={"humaneval": 0, "held_out_prompts": 2},
                 trainer={"window": "", "min_new_events": 5, "poll_s": 0.1})
    done = compilot(env, "trainer", "--once")
    assert done.returncode == 0, done.stderr[-3000:]
    log = (root / "trainer.log").read_text()
    assert "starting a round:" in log and "new labelled completions" in log
    assert "round finished: ok" in log, log[-3000:]
    state = json.loads((root / "trainer-state.json").read_text())
    assert state["last_outcome"] == "ok"
    assert len(Registry(root / "adapters").versions()) == 1
    # Nothing new since: the next look starts nothing.
    again = compilot(env, "trainer", "--once")
    assert again.returncode == 0
    assert "no round due" in (root / "trainer.log").read_text()


@pytest.mark.parametrize("training, message", [
    pytest.param({"target_modules": ["q_proj", "lm_head"]}, "training.target_modules",
                 id="target-llama-cpp-cannot-apply"),
    pytest.param({"max_length": 20}, "training.max_length", id="nothing-fits"),
])
def test_a_round_that_fails_says_why_and_leaves_nothing(collected: Path, base_checkpoint: Path,
                                                        tmp_path: Path, training: dict,
                                                        message: str) -> None:
    root = copy_store(collected, tmp_path / "data")
    env = config(root, base_checkpoint, training={"max_steps": 1, **training})
    done = compilot(env, "train", "--method", "sft", "--quiet")
    assert done.returncode == 1
    assert message in done.stderr, done.stderr[-2000:]
    adapters = root / "adapters"
    assert not any(adapters.glob(".staging-*")) and Registry(adapters).versions() == []
