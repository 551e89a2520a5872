"""One typed settings tree: the only place defaults live.

Sources, later ones winning: the defaults below, the TOML file in the user config dir
(``COMPILOT_CONFIG`` overrides its path), JSON in ``COMPILOT_SETTINGS`` (how a child process
inherits its parent's settings), LSP ``initializationOptions`` and
``workspace/didChangeConfiguration``. A bad value is reported by its key and the default is
kept, so a typo never takes the server down.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cattrs
import platformdirs

log = logging.getLogger(__name__)

APP = "compilot"
REQUANTIZE_TYPES = ("q8_0", "q4_0", "f16")
"""The types ``model.requantize`` may name (llama.cpp's ``LLAMA_FTYPE_MOSTLY_<NAME>``)."""


MIN_CONTEXT = 128
"""The smallest model.n_ctx that holds a useful window and completion."""
MAX_CANDIDATES = 16
"""Candidates per request at most: each costs its tokens' generation time."""
MAX_TOKENS = 2048


class RangeError(ValueError):
    """A setting outside the values it can take; the message names the key."""


def _at_least(key: str, value: float, low: float) -> None:
    if value < low:
        raise RangeError(f"{key} must be at least {low}, not {value!r}")


def _between(key: str, value: float, low: float, high: float) -> None:
    if not low <= value <= high:
        raise RangeError(f"{key} must be between {low} and {high}, not {value!r}")


def _one_of(key: str, value: str, allowed: tuple[str, ...]) -> None:
    if value not in allowed:
        raise RangeError(f"{key} must be one of {', '.join(allowed)}, not {value!r}")


@dataclass(kw_only=True)
class ModelSettings:
    """Which GGUF serves completions and how llama.cpp runs it."""

    path: str | None = None
    """A GGUF file; empty means the embedded SmolLM2-135M-Instruct Q4_1."""
    n_ctx: int = 2048
    """Context window in tokens (prompt window plus completion)."""
    n_threads: int | None = None
    """CPU threads for inference; empty means all cores."""
    n_batch: int = 256
    """Prompt tokens evaluated per llama.cpp call (also the cancellation granularity)."""
    requantize: str = "auto"
    """Serve a copy of the GGUF in another quantization type, made once in the user's cache:
    ``auto`` copies a GGUF of at most 1 GiB whose type llama.cpp's CPU kernels evaluate slowly
    (Q4_1, Q5_0, Q5_1, the embedded model's Q4_1 among them) to Q8_0, which evaluates prompts
    1.65x faster with the same weights (to 1/254 of each block's largest magnitude); ``off``
    loads the file as it is; ``q8_0``, ``q4_0`` or ``f16`` copies any file to that type."""

    def __post_init__(self) -> None:
        _one_of("model.requantize", self.requantize, ("auto", "off", *REQUANTIZE_TYPES))
        _at_least("model.n_ctx", self.n_ctx, MIN_CONTEXT)
        _at_least("model.n_batch", self.n_batch, 1)
        if self.n_threads is not None:
            _at_least("model.n_threads", self.n_threads, 1)


@dataclass(kw_only=True)
class CompletionSettings:
    """How candidates are generated, cut and ranked."""

    candidates: int = 3
    """Candidates per request; the first is greedy, the rest sampled."""
    max_tokens: int = 64
    """Tokens generated per candidate at most."""
    temperature: float = 0.6
    """Sampling temperature of candidates after the first."""
    top_k: int = 40
    top_p: float = 0.95
    seed: int = 0
    """Seed of the sampler; the same document state gives the same candidates."""
    prefix_chars: int = 3000
    """Characters before the cursor that the prompt window may hold."""
    suffix_chars: int = 1000
    """Characters after the cursor that the prompt window may hold (FIM models)."""
    cache_size: int = 256
    """Entries of the LRU cache of answered windows."""
    rank_by_syntax: bool = True
    """Rank candidates that parse (tree-sitter) first."""
    warm_up: bool = True
    """Evaluate the window in the background when a document is opened or focused or the
    cursor rests in a new place, so that the first request there is fast."""
    prefetch: bool = True
    """After a suggestion is shown, compute in the background the answer that follows
    accepting it, so that Tab and the next request is a cache hit."""
    alternatives_later: bool = False
    """An editor's request decodes the greedy candidate alone and shows it, unless it ended on
    its own and nothing of it that parses can be shown (then the others are decoded at once
    and ranked with it; a line the time limit ended is unfinished, not broken); the other
    candidates are decoded in the background afterwards (once no request came for a moment),
    recorded with the request, checked by the labeller and added to its cached answer, where
    the editor's next request (cycling through alternatives) finds them. Off by default: in
    ``bench/keystrokes.py`` it made the first request in a new place faster (p50 591 ms
    against 920) but the slowest requests while typing slower (p95 1,067 ms against 536: the
    second pass for a greedy candidate that does not parse). Off: the candidates are decoded
    side by side in the request."""
    predict_ms: float = 250.0
    """Milliseconds from a request's arrival after which an editor's suggestion ends at its
    next newline (llama.cpp's t_max_predict_ms, which llama.vim sets; counted from the arrival,
    not from the start of decoding, so that a request that spent them on its prompt ends with
    its first line): whole lines in bounded time, the rest left to the next request, which
    the prefetch computes ahead (0: no limit, only max_tokens). Candidates after the first end
    with it once the time is up, with the lines they completed. Evaluations and bootstrapping
    never use it, so their figures do not depend on the speed of the machine."""

    def __post_init__(self) -> None:
        _between("completion.candidates", self.candidates, 1, MAX_CANDIDATES)
        _between("completion.max_tokens", self.max_tokens, 1, MAX_TOKENS)
        _at_least("completion.temperature", self.temperature, 0.0)
        _at_least("completion.top_k", self.top_k, 0)
        if not 0.0 < self.top_p <= 1.0:
            raise RangeError(f"completion.top_p must be in (0, 1], not {self.top_p!r}")
        _at_least("completion.prefix_chars", self.prefix_chars, 1)
        _at_least("completion.suffix_chars", self.suffix_chars, 0)
        _at_least("completion.cache_size", self.cache_size, 0)
        _at_least("completion.predict_ms", self.predict_ms, 0.0)


@dataclass(kw_only=True)
class ContextSettings:
    """Other files in the prompt: chunks of the files opened or saved recently
    (``server/context.py``)."""

    enabled: bool = True
    as_comments: bool = False
    """Give the chunks to a model without repository tokens too, as comments before the
    window ("Compare this snippet from <path>:"). Off by default: on the embedded model they
    lifted no suggestion into compiling (``bench/context.py``) and cost a first request in a
    new place about 300 ms (``bench/keystrokes.py``). A model with repository tokens
    (Qwen2.5-Coder, StarCoder2), trained on other files in that layout, gets them either way."""
    tokens: int = 256
    """Tokens of other files' chunks a prompt may carry at most (0: none)."""
    chunk_lines: int = 24
    """Lines of a chunk at most (a top-level definition, or part of one)."""
    max_chunks: int = 64
    """Chunks the ring keeps; the oldest leave first."""
    max_similarity: float = 0.5
    """A chunk more like the window than this (Jaccard over identifiers) is left out: it
    makes the model repeat code."""

    def __post_init__(self) -> None:
        _at_least("context.tokens", self.tokens, 0)
        _at_least("context.chunk_lines", self.chunk_lines, 1)
        _at_least("context.max_chunks", self.max_chunks, 0)
        if not 0.0 < self.max_similarity <= 1.0:
            raise RangeError(f"context.max_similarity must be in (0, 1], not "
                             f"{self.max_similarity!r}")


@dataclass(kw_only=True)
class LoggingSettings:
    """What is recorded in the event store."""

    enabled: bool = True
    """Record requests, candidates and accept/reject events."""
    ignore: list[str] = field(default_factory=lambda: [
        ".env", ".env.*", "*.env", ".envrc",  # dotenv and direnv files
        "*.pem", "*.key", "*.p8", "*.p12", "*.pfx", "*.ppk", "*.jks", "*.keystore",
        "id_rsa*", "id_dsa*", "id_ecdsa*", "id_ed25519*", ".ssh/", ".gnupg/",
        ".aws/", ".docker/config.json", ".kube/config",
        ".netrc", "_netrc", ".pgpass", ".npmrc", ".pypirc", ".git-credentials", ".htpasswd",
        "credentials", "credentials.*", "client_secret*.json", "service-account*.json",
        "secrets.*", "*.tfvars", "*.tfstate", "*.tfstate.*",
    ])
    """Files that are never recorded: gitignore patterns (``!`` re-includes), matched below
    every folder of a file's path (``secrets/*`` ignores ``~/proj/secrets/x.py``); symlinks
    are followed. The default lists files that hold secrets: dotenv files, keys and
    certificates, SSH/GnuPG/AWS folders, credential files of netrc, PostgreSQL, npm, PyPI,
    git, Docker and Kubernetes, Terraform variables and state. Setting it replaces the list."""


@dataclass(kw_only=True)
class CheckSettings:
    """How accepted completions are checked with the real toolchains."""

    timeout_s: float = 10.0
    """A compiler run longer than this is stopped and reported as 'timeout'."""
    memory_mb: int = 1024
    """Address-space limit of a compiler run."""
    background: bool = True
    """Check every candidate the model generated, not only accepted ones: after the answer,
    on a low-priority thread, while the editor is idle (``feedback/labeller.py``)."""
    queue: int = 512
    """Candidates waiting for their background check at most; beyond, the oldest are dropped
    (and counted)."""
    idle_ms: int = 300
    """The editor counts as idle this long after its last completion request."""
    c_flags: list[str] = field(default_factory=list)
    """Extra gcc / g++ flags of the C and C++ compile check, to find a project's headers:
    only -I, -iquote, -isystem, -D, -U and -std= are passed (anything else could make the
    compiler load code). ``compilot bootstrap`` sets them per file from the project's
    ``compile_commands.json`` or its include folders."""
    repair: bool = True
    """When an accepted completion breaks the build, look in the background for a fix (the
    model asked to repair it, the request's other candidates) that the compiler confirms, and
    offer it as the code action "compilot: fix"."""

    def __post_init__(self) -> None:
        _at_least("checks.queue", self.queue, 1)
        _at_least("checks.idle_ms", self.idle_ms, 0)


@dataclass(kw_only=True)
class DatasetSettings:
    """How training data is built from the event store."""

    include_rejected_compiling: bool = False
    """KTO: label rejected completions that compile as undesirable (left out by default)."""
    survival_threshold: float = 0.5
    """Share of an accepted completion that must survive for it to count as desirable."""
    held_out: float = 0.1
    """Share of files (never rows) kept for evaluation."""
    synthetic_negatives: bool = True
    """DPO: for a prompt with no failing candidate, corrupt a compiling one into a negative
    that the checker confirms fails (the thesis, ch. 3.2.2)."""
    seed: int = 0
    """Order in which corruptions are tried (the split does not depend on it)."""
    dpo_pairs: str = "graded"
    """DPO pairs of one prompt's candidates: "graded" pairs any two whose graded outcomes differ
    (``feedback.grades``; the chosen one must compile), "compiles" only compiles against
    fails."""

    def __post_init__(self) -> None:
        for name in ("survival_threshold", "held_out"):
            value = getattr(self, name)
            _between(f"datasets.{name}", value, 0.0, 1.0)
        _one_of("datasets.dpo_pairs", self.dpo_pairs, ("graded", "compiles"))


LORA_TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]


@dataclass(kw_only=True)
class TrainingSettings:
    """One training round: the method, the LoRA and the optimizer (mapped onto trl's configs)."""

    method: str = "auto"
    """auto | kto | dpo | sft. auto: the first method of auto_order with enough data."""
    auto_order: list[str] = field(default_factory=lambda: ["kto", "dpo", "sft"])
    """The methods auto tries, best first: KTO on labels of both kinds (with its SFT term,
    kto_sft_weight), DPO + SFT term on preference pairs, SFT on revisions and kept completions.
    The order is bench/study.py's (README, "Measured"): after two rounds on 300-500 rows KTO +
    SFT term met every target of the study, at two thirds of DPO + SFT's training time, and kept
    HumanEval exec@1, which DPO + SFT lost in its first round."""
    base: str | None = None
    """An HF checkpoint folder to train; empty means the serving GGUF, dequantized once."""
    lora_r: int = 16
    lora_alpha: int = 32
    lora_dropout: float = 0.05
    target_modules: list[str] = field(default_factory=list)
    """Projections that get LoRA matrices (``q_proj``, ``c_fc``, ...); empty: every projection
    of a block that a llama.cpp adapter of the model's architecture carries (a llama or qwen2
    block's seven, starcoder2's six)."""
    learning_rate: float = 2e-4
    """The rate bench/study.py trained KTO and DPO + SFT term at (300-500 rows a round)."""
    epochs: float = 1.0
    max_steps: int = -1
    """Stop after this many optimizer steps (-1: run the epochs)."""
    batch_size: int = 4
    """Examples per forward pass (KTO needs at least 2: its KL term pairs completions within
    a batch). Activation memory grows with it: bench/train.py measures it."""
    gradient_accumulation: int = 2
    """Forward passes per optimizer step (an effective batch of batch_size times this)."""
    max_length: int = 256
    """Tokens of prompt plus completion; longer prompts are cut from the left."""
    prompt_tokens: int = 128
    """Tokens of prompt a training row keeps at most, cut from the left (0: as many as fit in
    max_length). The window the server sends is longer, but what a completion is learnt from
    sits near the cursor (bench/step_cost.py --store measures where the enclosing function
    starts), and a step's cost grows with every token (bench/train.py)."""
    context_tokens: int = 96
    """Tokens a training row keeps at most of the chunks of other files its request's prompt
    carried (``[context]``), whole chunks, the most relevant first, in the room max_length
    leaves after the prompt and the completion (0: rows without context)."""
    precision: str = "auto"
    """auto | bf16 | float32. auto: bfloat16 autocast where the hardware computes it natively
    (a CUDA GPU with bf16; a CPU with avx512_bf16 or amx_bf16), float32 elsewhere."""
    group_by_length: bool = True
    """Batch rows of similar length together (less padding), the batches in shuffled order."""
    boundaries: dict[str, float] = field(default_factory=lambda: {
        "healed": 3.0, "newline": 1.0, "indented": 1.0, "mid_line": 1.0})
    """Where training prompts end, as relative weights (``training/boundaries.py``): healed
    (where the server ends them), after the newline before the code, after that newline and
    the indentation, partway into the first line (as plain llama.cpp calls and other editor
    plugins send them). The default: half healed, the rest spread over the other three."""
    max_examples: int = 500
    """Rows a round trains on at most (the newest kept)."""
    min_examples: int = 8
    """A method needs at least this many rows to be chosen."""
    beta: float = 0.1
    """KTO/DPO: how far the policy may move from the reference."""
    sft_weight: float = 1.0
    """DPO: weight of the SFT term beside the sigmoid loss (CodeLutra's dual loss)."""
    kto_sft_weight: float = 1.0
    """KTO: weight of an SFT term on the desirable completions (the thesis's KTO + SFT;
    ``training/kto_sft.py``); 0 is plain KTO. bench/study.py measured 1 against plain KTO:
    the same held-out gain, more on the shifted corpus, HumanEval exec@1 kept."""
    on_policy: bool = True
    """Train on completions made by the serving adapter only (plus the user's revisions)."""
    kto_weighting: str = "none"
    """KTO: "grade" resamples each class by graded outcome (an undesirable row that does not
    parse drawn more often than one with a type error, a desirable one that passes its tests
    more often than one only kept; ``training/data.py``), "none" uses every row once.
    bench/methods.py measures both."""
    threads: int | None = None
    """CPU threads for training; empty means all cores."""
    seed: int = 0

    def __post_init__(self) -> None:
        _one_of("training.kto_weighting", self.kto_weighting, ("none", "grade"))
        _one_of("training.precision", self.precision, ("auto", "bf16", "float32"))
        _at_least("training.prompt_tokens", self.prompt_tokens, 0)
        _at_least("training.context_tokens", self.context_tokens, 0)
        _at_least("training.kto_sft_weight", self.kto_sft_weight, 0.0)
        for method in self.auto_order or [""]:
            _one_of("training.auto_order's methods", method, ("dpo", "kto", "sft"))
        for name in self.boundaries:
            _one_of("training.boundaries' names", name,
                    ("healed", "newline", "indented", "mid_line"))
        for weight in self.boundaries.values():
            _at_least("training.boundaries' weights", weight, 0.0)
        if not any(self.boundaries.values()):
            raise RangeError("training.boundaries needs a weight above 0")


@dataclass(kw_only=True)
class GateSettings:
    """When a new adapter may replace the serving one."""

    held_out_prompts: int = 40
    """Held-out collected prompts completed by both models (compile@1 must rise)."""
    humaneval: int = 20
    """HumanEval problems in the pass@1 sample (0 skips that check)."""
    pass_tolerance: float = 0.05
    """pass@1 may drop by at most this much."""
    robustness_functions: int = 10
    """Held-out functions asked for in each robustness shape (the prompt ending in the newline
    after the signature or docstring, in the body's indentation, mid-line, and with a suffix
    for FIM models), sent as a plain client sends them (0 skips that check)."""
    robustness_tolerance: float = 0.05
    """No shape's compile@1 may fall more than this below the base model's."""
    max_tokens: int = 128
    """Tokens per evaluated completion."""
    temperature: float = 0.8
    """Sampling temperature of the samples after the first (pass@k with k > 1; the Codex
    paper's 0.8)."""
    timeout_s: float = 10.0
    """Per test program run in the sandbox."""


@dataclass(kw_only=True)
class TrainerSettings:
    """The background trainer (`compilot trainer`)."""

    window: str = "02:00-06:00"
    """Local time window in which a round may start (empty: no window)."""
    min_new_events: int = 200
    """Start a round outside the window once this many new labelled candidates arrived
    (0: never outside the window)."""
    poll_s: float = 60.0
    """Seconds between looks at the clock and the store."""
    nice: int = 19
    """CPU priority of the trainer process (19: lowest)."""


@dataclass(kw_only=True)
class Settings:
    """Everything compilot can be told."""

    model: ModelSettings = field(default_factory=ModelSettings)
    completion: CompletionSettings = field(default_factory=CompletionSettings)
    context: ContextSettings = field(default_factory=ContextSettings)
    logging: LoggingSettings = field(default_factory=LoggingSettings)
    checks: CheckSettings = field(default_factory=CheckSettings)
    datasets: DatasetSettings = field(default_factory=DatasetSettings)
    training: TrainingSettings = field(default_factory=TrainingSettings)
    gate: GateSettings = field(default_factory=GateSettings)
    trainer: TrainerSettings = field(default_factory=TrainerSettings)
    data_dir: str | None = None
    """Where the event database and adapters live; empty means the XDG data dir."""

    def __post_init__(self) -> None:
        room = self.model.n_ctx // 2
        if self.completion.max_tokens > room:
            raise RangeError(f"completion.max_tokens ({self.completion.max_tokens}) must leave "
                             f"half of model.n_ctx ({self.model.n_ctx}) to the prompt: at most "
                             f"{room}")


_converter = cattrs.Converter(forbid_extra_keys=True)
SETTINGS_ENV = "COMPILOT_SETTINGS"
"""Environment variable: JSON settings applied over the config file (before editor options)."""


class SettingsError(ValueError):
    """A settings source held a value that could not be used."""


def config_path() -> Path:
    """Path of the TOML config file."""
    if env := os.environ.get("COMPILOT_CONFIG"):
        return Path(env)
    return Path(platformdirs.user_config_dir(APP)) / "config.toml"


def _merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value)
        else:
            out[key] = value
    return out


def _structure_leniently(
    raw: dict[str, Any], fallback: Settings
) -> tuple[Settings, list[str]]:
    """Structure ``raw``; drop each offending key (keeping the fallback) and say which."""
    try:
        return _converter.structure(raw, Settings), []
    except Exception as exc:  # noqa: BLE001 - cattrs raises exception groups
        problems = cattrs.transform_error(exc, path="settings")
    # Retry key by key: every valid key is applied, every bad one keeps its fallback and is
    # named with the reason (a range check says what it wants).
    good = _converter.unstructure(fallback)
    named: list[str] = []
    for section, values in raw.items():
        candidates = values.items() if isinstance(values, dict) else [(None, values)]
        for key, value in candidates:
            trial = _merge(good, {section: {key: value}} if key else {section: value})
            try:
                _converter.structure(trial, Settings)
            except Exception as exc:  # noqa: BLE001 - cattrs raises exception groups
                named += _range_errors(exc)
                continue
            good = trial
    # cattrs says only "invalid value @ settings.completion" for a failed range check.
    problems = [p for p in problems if not p.startswith("invalid value @")]
    return _converter.structure(good, Settings), named + problems


def _range_errors(exc: BaseException) -> list[str]:
    """The messages of the range checks (RangeErrors of a ``__post_init__``, which name their
    key) inside what cattrs raised."""
    if isinstance(exc, BaseExceptionGroup):
        return [m for inner in exc.exceptions for m in _range_errors(inner)]
    return [str(exc)] if isinstance(exc, RangeError) else []


def load(
    overrides: dict[str, Any] | None = None,
    *,
    base: Settings | None = None,
    path: Path | None = None,
) -> tuple[Settings, list[str]]:
    """Settings from defaults, the TOML file and ``overrides``, plus the problems found.

    Never raises for a bad value: each problem names its key and the default stays.
    """
    problems: list[str] = []
    raw: dict[str, Any] = _converter.unstructure(base or Settings())
    file = path or config_path()
    if base is None and file.is_file():
        try:
            raw = _merge(raw, tomllib.loads(file.read_text(encoding="utf-8")))
        except (tomllib.TOMLDecodeError, UnicodeDecodeError, OSError) as exc:
            problems.append(f"{file}: not a readable TOML file ({exc}); using defaults")
    if base is None and (env := os.environ.get(SETTINGS_ENV)):
        # A child process (the server's "train now") inherits its parent's effective settings.
        try:
            inherited = json.loads(env)
            if not isinstance(inherited, dict):
                raise ValueError("not a JSON object")
            raw = _merge(raw, _snake_keys(inherited))
        except ValueError as exc:
            problems.append(f"{SETTINGS_ENV}: not a JSON object of settings ({exc}); ignored")
    if overrides:
        raw = _merge(raw, _snake_keys(overrides))
    settings, bad = _structure_leniently(raw, base or Settings())
    problems += bad
    for problem in problems:
        log.warning("settings: %s", problem)
    return settings, problems


def _snake_keys(value: Any) -> Any:
    """Editors send camelCase (``maxTokens``); the settings tree is snake_case."""
    if not isinstance(value, dict):
        return value
    out = {}
    for key, sub in value.items():
        snake = "".join("_" + c.lower() if c.isupper() else c for c in str(key))
        out[snake] = _snake_keys(sub)
    return out


def as_dict(settings: Settings) -> dict[str, Any]:
    """Plain-dict form of the settings (for logs and `compilot config`)."""
    return dataclasses.asdict(settings)
