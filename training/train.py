"""The learning step of a round: KTO, DPO (+ an SFT term) or SFT with trl, on a peft LoRA.

- KTO (Ethayarajh et al. 2024) on (prompt, completion, label): the thesis's compiles /
  does-not-compile labels. Its KL estimate pairs completions inside a batch, so it needs a
  per-device batch of at least 2; desirable and undesirable weights come from the data's
  balance (``feedback.datasets.kto_balance``). With ``training.kto_sft_weight``, plus an SFT
  term on the desirable side (``training.kto_sft``: the thesis's KTO + SFT).
- DPO on (prompt, chosen, rejected) with ``loss_type=["sigmoid", "sft"]``: CodeLutra's dual loss
  (the preference term plus likelihood on the chosen side, weighted by ``sft_weight``).
- SFT on the user's revisions (SEED: train on minimal fixes of the model's own errors), with
  the loss on the completion only.

Each row's prompt ends where ``training.boundaries`` draws it (healed as the server sends it,
or after the newline, the indentation or mid-line as plain clients do), and the prompt and the
completion are tokenized each alone (``training.boundaries``): the tokens trained on are the
tokens a client sends.

A round continues the serving adapter when there is one (the rounds iterate, as SEED and
CodeLutra do); the reference model of KTO/DPO is the base with the adapter switched off.
"""

from __future__ import annotations

import logging
import math
import resource
import time
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from compilot.languages import language_for
from compilot.server.layout import comments
from compilot.settings import TrainingSettings
from compilot.training.precision import choose as choose_precision

if TYPE_CHECKING:
    from datasets import Dataset

log = logging.getLogger(__name__)

METHODS = ("kto", "dpo", "sft")
COLUMNS = {"kto": ("prompt", "completion", "label"), "dpo": ("prompt", "chosen", "rejected"),
           "sft": ("prompt", "completion")}
"""What each trainer is given (the datasets' metadata columns stay behind)."""
MIN_PROMPT_TOKENS = 16
"""A row whose completion leaves less than this much prompt within max_length is dropped."""


class TrainingError(ValueError):
    """A round cannot train as configured; the message names the setting or the data."""


@dataclass(frozen=True)
class Choice:
    """Which method a round uses, and why."""

    method: str
    reason: str


AUTO_ORDER = ("kto", "dpo", "sft")
"""``training.auto_order``'s default, the ranking bench/study.py measured: labels (KTO with its
SFT term), then pairs (DPO + SFT term), then revisions alone."""


def choose(requested: str, counts: dict[str, int], min_examples: int,
           order: Sequence[str] = AUTO_ORDER, kto_sft_weight: float = 0.0) -> Choice:
    """The method for ``requested`` ("auto" or a method) given the rows at hand.

    ``counts``: ``pairs`` (DPO rows), ``desirable`` and ``undesirable`` (KTO labels), ``sft``
    (revisions and accepted compiling completions). auto takes the first method of ``order``
    (``training.auto_order``: the ranking bench/study.py measured) that has enough rows: DPO
    ``min_examples`` pairs, KTO as many labels of both kinds together (it needs both), SFT as
    many revisions and kept completions. ``kto_sft_weight`` (``training.kto_sft_weight``) is
    named in the reason when KTO carries its SFT term.
    """
    pairs, good, bad, sft = (counts.get(k, 0) for k in ("pairs", "desirable", "undesirable",
                                                         "sft"))
    unknown = [m for m in order if m not in METHODS]
    if unknown or not order:
        raise TrainingError(f"training.auto_order must list methods of {', '.join(METHODS)}; "
                            f"not {list(order)}")
    if requested != "auto":
        if requested not in METHODS:
            raise TrainingError(f"training.method must be auto, {', '.join(METHODS)}; "
                                f"not {requested!r}")
        have = {"kto": good + bad, "dpo": pairs, "sft": sft}[requested]
        return Choice(requested, f"{requested} was asked for ({have} rows)")
    enough = {
        "dpo": (pairs >= min_examples, f"{pairs} preference pairs (>= {min_examples}): DPO "
                                       "with an SFT term on the chosen side"),
        "kto": (bool(good and bad and good + bad >= min_examples),
                f"{good} desirable and {bad} undesirable labels: KTO"
                + (f" with an SFT term (weight {kto_sft_weight:g})" if kto_sft_weight else "")),
        "sft": (sft >= min_examples, f"{sft} revisions and kept completions: SFT"),
    }
    skipped: list[str] = []
    for method in order:
        ok, why = enough[method]
        if ok:
            before = f" ({'; '.join(skipped)})" if skipped else ""
            return Choice(method, f"{why}, the first of training.auto_order = "
                                  f"{', '.join(order)} with enough data{before}")
        skipped.append(f"{method}: not enough")
    raise TrainingError(
        f"not enough data for a round: {pairs} pairs, {good} desirable and {bad} undesirable "
        f"labels, {sft} revisions (each method needs training.min_examples = {min_examples}; "
        "KTO needs both labels)")


@dataclass
class Report:
    """What a training run did and cost (the LoRA trade-off tables of the course project)."""

    method: str
    examples: int
    dropped: int
    """Rows left out because their completion did not fit in max_length."""
    steps: int
    epochs: float
    trainable_params: int
    total_params: int
    wall_s: float
    """Whole run: tokenization, reference log-probs and training."""
    train_s: float
    examples_per_s: float
    """Training examples processed per second of the training loop."""
    peak_memory_mb: float
    """Peak resident memory of the process (CPU) or peak CUDA memory allocated."""
    loss: float | None
    boundaries: dict[str, int] = field(default_factory=dict)
    """Rows per prompt boundary (``training.boundaries``): where their prompts ended."""
    hyperparameters: dict[str, Any] = field(default_factory=dict)
    metrics: dict[str, float] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        """The report as plain data (JSON, adapter metadata)."""
        return asdict(self)


def lora_config(settings: TrainingSettings, available: Sequence[str]) -> Any:
    """The peft LoRA config of the settings (plain LoRA: what llama.cpp can apply) for a model
    whose adapter can carry the projections ``available`` (``gguf_adapter.targets``)."""
    from peft import LoraConfig

    wanted = list(settings.target_modules) or list(available)
    unsupported = sorted(set(wanted) - set(available))
    if unsupported or not wanted:
        raise TrainingError(f"training.target_modules has {unsupported or 'nothing'}: a "
                            f"llama.cpp adapter of this model can carry {sorted(available)}")
    if settings.lora_r < 1 or settings.lora_alpha <= 0:
        raise TrainingError(f"training.lora_r ({settings.lora_r}) and training.lora_alpha "
                            f"({settings.lora_alpha}) must be positive")
    return LoraConfig(r=settings.lora_r, lora_alpha=settings.lora_alpha,
                      lora_dropout=settings.lora_dropout, target_modules=wanted, bias="none",
                      task_type="CAUSAL_LM")


def fit(rows: Dataset, method: str, tokenizer: Any, max_length: int,
        prompt_tokens: int = 0, boundaries: Mapping[str, float] | None = None,
        seed: int = 0, fim: bool = False, context_tokens: int = 0) -> tuple[Dataset, int]:
    """Rows as a client prompts the model, cut from the left to fit ``max_length`` and to at
    most ``prompt_tokens`` of prompt (0: no limit but max_length).

    A row's ``context`` (the chunks of other files its request's prompt carried) keeps, of
    the room ``max_length`` leaves after the prompt and the completion, at most
    ``context_tokens`` (0: none): whole chunks, the most relevant (the last) first, as
    ``Engine.prompt`` keeps them; ``served_tokens`` lays them out before the prompt.

    ``fim``: the model takes fill-in-the-middle prompts, so a row's ``suffix`` is part of its
    prompt: cut from the right to at most a quarter of the prompt's budget, as
    ``Engine.prompt`` cuts it, the prefix taking the rest but the three FIM tokens. Without it
    the suffix is left as it is (``served_tokens`` leaves it out of the ids).

    Each row's prompt ends where ``boundaries`` (``training.boundaries``: weights of
    ``training.boundaries.BOUNDARIES``) draws it to; None: every row healed. Healed is where
    the server ends its prompts: the prompt's trailing whitespace moves to the front of the
    completion (``server.prompt.heal``). The others move text the other way, as plain clients
    send it; a row with no such place (no newline before its code) stays healed. The
    ``boundary`` column says which each row got. trl truncates from the right (keep_start),
    which would cut the completion, the part the loss is about; a completion prompt is a
    window before the cursor, whose oldest text matters least. Rows whose completion alone
    leaves less than MIN_PROMPT_TOKENS are dropped.
    """
    from datasets import Dataset, Value

    from compilot.training.boundaries import cut, draw

    targets = ("chosen", "rejected") if method == "dpo" else ("completion",)
    drawn = draw(len(rows), boundaries, seed) if boundaries else ["healed"] * len(rows)
    columns = [c for c in rows.column_names if c != "boundary"]
    kept: dict[str, list[Any]] = {c: [] for c in [*columns, "boundary"]}
    dropped = 0
    for row, boundary in zip(rows, drawn, strict=True):
        found = cut(row["prompt"], [row[t] for t in targets], boundary)
        if found is None:
            boundary = "healed"
            found = cut(row["prompt"], [row[t] for t in targets], boundary)
        assert found is not None  # healing always has a place
        prompt, completions = found
        texts = dict(zip(targets, completions, strict=True))
        longest = max(len(tokenizer(text, add_special_tokens=False)["input_ids"])
                      for text in texts.values())
        total = budget = max_length - longest - 2  # BOS / EOS
        if budget < MIN_PROMPT_TOKENS:
            dropped += 1
            continue
        if prompt_tokens:
            budget = min(budget, prompt_tokens)
        used = 0
        suffix = row.get("suffix")
        if fim and suffix:
            enc = tokenizer(suffix, add_special_tokens=False, return_offsets_mapping=True)
            offsets = enc["offset_mapping"]
            keep = min(len(offsets), budget // 4)
            suffix = suffix[:offsets[keep - 1][1]] if keep else ""
            budget -= keep + 3
            used = keep + 3
        enc = tokenizer(prompt, add_special_tokens=False, return_offsets_mapping=True)
        offsets = enc["offset_mapping"]
        start = offsets[len(offsets) - budget][0] if len(offsets) > budget else 0
        for column in columns:
            kept[column].append(texts.get(column, row[column]))
        kept["prompt"][-1] = prompt[start:]
        if fim and "suffix" in kept:
            kept["suffix"][-1] = suffix
        if "context" in kept:
            room = min(context_tokens, total - used - min(len(offsets), budget))
            kept["context"][-1] = _context_within(row["context"] or [], row.get("language"),
                                                  tokenizer, room)
        kept["boundary"].append(boundary)
    features = rows.features.copy()
    features["boundary"] = Value("string")
    return Dataset.from_dict(kept, features=features), dropped


def _context_within(chunks: list[dict[str, str]], language: str | None, tokenizer: Any,
                    room: int) -> list[dict[str, str]]:
    """The chunks of ``chunks`` that fit in ``room`` tokens laid out (as comments, which
    cost at least as much as a repository's file separator and path), each whole or left
    out, the least relevant (the first) first; in their order."""
    comment = language_for(language).comment or "#"
    kept: list[dict[str, str]] = []
    for chunk in reversed(chunks):
        text = comments([(chunk["path"], chunk["text"])], comment)
        cost = len(tokenizer(text, add_special_tokens=False)["input_ids"]) + 1
        if cost <= room:
            kept.append(chunk)
            room -= cost
    return kept[::-1]


def order_by_length(rows: Dataset, method: str, tokenizer: Any, batch_size: int, seed: int,
                    group: int = 16) -> Dataset:
    """Rows in an order where each batch of ``batch_size`` holds rows of similar length.

    trl pads a batch to its longest row, so a short row batched with a long one costs as much
    as the long one. As transformers' LengthGroupedSampler does: shuffle, sort each run of
    ``group`` batches by length, then shuffle the order of the batches, so that an epoch
    neither starts with the long rows nor runs from short to long. The trainers then read the
    rows in this order (KTO always reads sequentially: its KL pairs are fixed in advance).
    """
    import random

    targets = ("chosen", "rejected") if method == "dpo" else ("completion",)
    lengths = [len(tokenizer(row["prompt"], add_special_tokens=False)["input_ids"])
               + max(len(tokenizer(row[t], add_special_tokens=False)["input_ids"])
                     for t in targets)
               for row in rows]
    rng = random.Random(seed)
    order = rng.sample(range(len(lengths)), len(lengths))
    run = batch_size * group
    ranked = [i for start in range(0, len(order), run)
              for i in sorted(order[start:start + run], key=lambda i: -lengths[i])]
    batches = [ranked[start:start + batch_size] for start in range(0, len(ranked), batch_size)]
    rng.shuffle(batches)
    return rows.select([i for batch in batches for i in batch])


def _peak_memory_mb() -> float:
    import torch

    if torch.cuda.is_available():
        return torch.cuda.max_memory_allocated() / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def _config(method: str, settings: TrainingSettings, out: Path, extra: dict[str, Any],
            bf16: bool = False) -> Any:
    """Trl's config for ``method``: our settings mapped onto it, the rest trl's defaults."""
    import torch
    from trl import DPOConfig, KTOConfig, SFTConfig

    if settings.batch_size < (2 if method == "kto" else 1):
        raise TrainingError(f"training.batch_size is {settings.batch_size}; KTO needs at least "
                            "2 (its KL term pairs completions within a batch)")
    cuda = torch.cuda.is_available()
    common = dict(
        output_dir=str(out),
        per_device_train_batch_size=settings.batch_size,
        gradient_accumulation_steps=settings.gradient_accumulation,
        learning_rate=settings.learning_rate,
        num_train_epochs=settings.epochs,
        max_steps=settings.max_steps,
        max_length=settings.max_length,
        lr_scheduler_type="linear",
        warmup_steps=0,
        logging_steps=1,
        save_strategy="no",
        report_to="none",
        disable_tqdm=True,
        seed=settings.seed,
        use_cpu=not cuda,
        bf16=bf16,  # autocast: the weights and the optimizer stay float32 (training.precision)
        # Gradient checkpointing trades time for memory that a 135M model does not need.
        gradient_checkpointing=False,
        dataloader_num_workers=0,
        # The rows come in order_by_length's order; KTO reads sequentially in any case.
        train_sampling_strategy="sequential" if settings.group_by_length or method == "kto"
        else "random",
    )
    if method == "kto":
        return KTOConfig(**common, beta=settings.beta, **extra)
    if method == "dpo":
        return DPOConfig(**common, beta=settings.beta, loss_type=["sigmoid", "sft"],
                         loss_weights=[1.0, settings.sft_weight], **extra)
    return SFTConfig(**common, completion_only_loss=True, **extra)


def _log_losses() -> Any:
    """A callback sending the training logs to our logger (the trainer's log file)."""
    from transformers import TrainerCallback

    class LogLosses(TrainerCallback):
        def on_log(self, args: Any, state: Any, control: Any, logs: Any = None,
                   **kw: Any) -> None:
            if logs:
                log.info("step %d: %s", state.global_step,
                         {k: round(v, 5) if isinstance(v, float) else v
                          for k, v in logs.items()})

    return LogLosses()


def _trainer(method: str, settings: TrainingSettings) -> Callable[..., Any]:
    """The trainer class of ``method``, taking ``boundaries.tokenize``'s rows."""
    from functools import partial

    from trl import DPOTrainer, KTOTrainer, SFTTrainer

    from compilot.training.boundaries import pretokenized

    if method == "kto" and settings.kto_sft_weight:
        from compilot.training.kto_sft import trainer_class

        return partial(pretokenized(trainer_class()), sft_weight=settings.kto_sft_weight)
    if method == "sft":
        return SFTTrainer  # takes input_ids and completion_mask as they are
    return pretokenized({"kto": KTOTrainer, "dpo": DPOTrainer}[method])


def train(method: str, rows: Dataset, *, base: Path, model_path: Path, out: Path,
          settings: TrainingSettings, parent: Path | None = None,
          kto_weights: dict[str, float] | None = None,
          callbacks: Sequence[Any] = ()) -> Report:
    """Train a LoRA with ``method`` on ``rows`` and save the PEFT adapter in ``out``.

    ``base`` is the HF checkpoint of the GGUF ``model_path`` the adapter is for
    (``training.base.training_base``); the rows become that GGUF's token ids, laid out as the
    server prompts it (``served_tokens``). ``parent`` a PEFT adapter to continue (the serving
    one). ``kto_weights``: desirable_weight / undesirable_weight.
    """
    import torch
    from peft import PeftModel
    from transformers import PrinterCallback

    from compilot.training.base import load_base
    from compilot.training.boundaries import tokenize
    from compilot.training.gguf_adapter import architecture_of, targets
    from compilot.training.served_tokens import ServedTokens

    started = time.perf_counter()
    if method not in METHODS:
        raise TrainingError(f"unknown method {method!r} (one of {', '.join(METHODS)})")
    missing = [c for c in COLUMNS[method] if c not in rows.column_names]
    if missing:
        raise TrainingError(f"{method} needs columns {COLUMNS[method]}; missing {missing}")
    if settings.threads:
        torch.set_num_threads(settings.threads)
    torch.manual_seed(settings.seed)
    model, tokenizer = load_base(base)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    served = ServedTokens(model_path)
    rows = rows.select_columns([*COLUMNS[method], *(c for c in ("suffix", "context", "language")
                                                    if c in rows.column_names)])
    rows, dropped = fit(rows, method, tokenizer, settings.max_length, settings.prompt_tokens,
                        boundaries=settings.boundaries, seed=settings.seed,
                        fim=served.fim is not None, context_tokens=settings.context_tokens)
    if len(rows) < (2 if method == "kto" else 1):
        raise TrainingError(f"{dropped} of {dropped + len(rows)} rows do not fit in "
                            f"training.max_length = {settings.max_length}; raise it")
    if settings.group_by_length:
        rows = order_by_length(rows, method, tokenizer, settings.batch_size, settings.seed)
    boundaries = dict(Counter(rows["boundary"]))
    log.info("prompt boundaries: %s", boundaries)
    precision = choose_precision(settings.precision)
    log.info("training in %s: %s", precision.name, precision.reason)
    if parent is not None:
        model = PeftModel.from_pretrained(model, parent, is_trainable=True)
        peft_config = None
    else:
        arch = architecture_of(model)
        peft_config = lora_config(settings, targets(model, arch))
    extra = dict(kto_weights or {}) if method == "kto" else {}
    config = _config(method, settings, out / "trainer", extra, bf16=precision.bf16)
    with served:
        tokenized = tokenize(rows, method, served)
    trainer = _trainer(method, settings)(model=model, args=config, train_dataset=tokenized,
                               processing_class=tokenizer, peft_config=peft_config,
                               callbacks=[_log_losses(), *callbacks])
    trainer.remove_callback(PrinterCallback)  # prints every log dict to stdout
    trainable, total = trainer.model.get_nb_trainable_parameters()
    result = trainer.train()
    trainer.model.save_pretrained(out)
    losses = [e["loss"] for e in trainer.state.log_history if "loss" in e]
    metrics = {k: float(v) for k, v in result.metrics.items() if isinstance(v, int | float)}
    train_s = metrics.get("train_runtime", time.perf_counter() - started)
    seen = min(len(rows) * config.num_train_epochs,
               trainer.state.global_step * settings.batch_size * settings.gradient_accumulation)
    hyper = {k: getattr(settings, k) for k in (
        "lora_r", "lora_alpha", "lora_dropout", "target_modules", "learning_rate", "epochs",
        "max_steps", "batch_size", "gradient_accumulation", "max_length", "prompt_tokens",
        "group_by_length", "boundaries", "beta", "seed")}
    hyper["target_modules"] = sorted(trainer.model.peft_config["default"].target_modules)
    hyper["precision"] = precision.name
    if method == "dpo":
        hyper["sft_weight"] = settings.sft_weight
    if method == "kto":
        hyper["kto_sft_weight"] = settings.kto_sft_weight
    hyper.update(extra)
    if parent is not None:
        hyper["continued_from"] = str(parent)
    return Report(
        method=method, examples=len(rows), dropped=dropped, steps=trainer.state.global_step,
        epochs=round(float(trainer.state.epoch or 0.0), 4), trainable_params=int(trainable),
        total_params=int(total), wall_s=round(time.perf_counter() - started, 2),
        train_s=round(train_s, 2),
        examples_per_s=round(seen / train_s, 3) if train_s > 0 else math.nan,
        peak_memory_mb=round(_peak_memory_mb(), 1),
        loss=round(losses[-1], 5) if losses else None, boundaries=boundaries,
        hyperparameters=hyper, metrics=metrics)
