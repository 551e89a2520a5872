"""How a prompt is laid out from token ids: fill-in-the-middle, and other files before it.

One layout for two users, so that they cannot drift apart: the engine (``Engine.prompt``, the
prompt the model is asked with) and the trainer (``training.served_tokens``, the prompt a
training row is learnt with). Other files reach a model with repository tokens as the files of
a repository, in its family's documented format (``RepoFormat``), and any other model as line
comments before the prefix (``comments``), as Copilot's neighbouring-tab snippets do.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from compilot.models import REPO_CONTROL_SPELLINGS


@dataclass(frozen=True)
class FimTokens:
    """The model's fill-in-the-middle token ids (-1: the vocabulary has no such token)."""

    prefix: int
    suffix: int
    middle: int
    repo: int = -1
    """Starts the repository's name: ``<|repo_name|>`` (Qwen2.5-Coder), ``<repo_name>``
    (StarCoder2)."""
    file_sep: int = -1
    """Starts each file of the repository: ``<|file_sep|>``, ``<file_sep>``."""

    @staticmethod
    def of(llama_cpp: Any, vocab: Any) -> FimTokens | None:
        """The prefix, suffix and middle ids llama.cpp reports for ``vocab``; None without
        all three."""
        ids = (llama_cpp.llama_vocab_fim_pre(vocab), llama_cpp.llama_vocab_fim_suf(vocab),
               llama_cpp.llama_vocab_fim_mid(vocab))
        return FimTokens(*(int(i) for i in ids)) if all(i >= 0 for i in ids) else None

    def wrap(self, prefix: list[int], suffix: list[int]) -> list[int]:
        """``<PRE> prefix <SUF> suffix <MID>`` of the two texts' ids."""
        return [self.prefix, *prefix, self.suffix, *suffix, self.middle]


@dataclass(frozen=True, kw_only=True)
class RepoFormat:
    """How a model family lays out other files of the repository before the FIM prompt."""

    after_repo: str
    """Text between the repository's name and the first file separator."""
    after_file: str
    """Text after each file's content, before the next file separator."""
    path_in_prefix: bool
    """Whether the current file's path follows the FIM prefix token (else it precedes it)."""


# Qwen2.5-Coder (its README, "Repository Level Code Infilling"; also llama.cpp's /infill,
# format_prompt_infill in tools/server):
#   <|repo_name|>{repo}\n<|file_sep|>{path}\n{text}\n ... <|file_sep|>{path}\n<|fim_prefix|>...
QWEN_REPO = RepoFormat(after_repo="\n", after_file="\n", path_in_prefix=False)
# StarCoder2 (arXiv 2402.19173, section 5, repository-context FIM):
#   <repo_name>{repo}<file_sep>{path}\n{text} ... <file_sep><fim_prefix>{path}\n{prefix}...
STARCODER2_REPO = RepoFormat(after_repo="", after_file="", path_in_prefix=True)
# llama.cpp reports only Qwen's spellings as fim_rep and fim_sep, so StarCoder2's are looked
# up by their text (they are control tokens of its vocabulary; compilot.models, which
# describes a GGUF without loading it, knows them too).
REPO_TEXTS = (REPO_CONTROL_SPELLINGS["repo"],)
FILE_SEP_TEXTS = (REPO_CONTROL_SPELLINGS["file_sep"],)


class Vocabulary:
    """The control tokens of a loaded llama.cpp model (weights or vocabulary only) that the
    layout needs: FIM, repository name, file separator, and the family's repository format."""

    def __init__(self, llama_cpp: Any, llm: Any) -> None:
        self._cpp, self._llm, self._vocab = llama_cpp, llm, llm._model.vocab
        fim = FimTokens.of(llama_cpp, self._vocab)
        self.fim = None if fim is None else FimTokens(
            fim.prefix, fim.suffix, fim.middle, repo=self.repo_token(),
            file_sep=self.file_sep_token())
        self.repo_format = self._repo_format()

    def control(self, texts: tuple[str, ...]) -> int:
        """The id of the control token spelled as one of ``texts``, or -1."""
        for text in texts:
            ids = self._llm.tokenize(text.encode(), add_bos=False, special=True)
            if len(ids) == 1 and self._cpp.llama_vocab_is_control(self._vocab, ids[0]):
                return int(ids[0])
        return -1

    def repo_token(self) -> int:
        """The repository-name token: llama.cpp's, else StarCoder2's spelling; -1: none."""
        found = int(self._cpp.llama_vocab_fim_rep(self._vocab))
        return found if found >= 0 else self.control(REPO_TEXTS)

    def file_sep_token(self) -> int:
        """The file-separator token: llama.cpp's, else StarCoder2's spelling; -1: none."""
        found = int(self._cpp.llama_vocab_fim_sep(self._vocab))
        return found if found >= 0 else self.control(FILE_SEP_TEXTS)

    def _repo_format(self) -> RepoFormat | None:
        """The family's repository layout; None without FIM or file separator tokens."""
        if self.fim is None or self.fim.file_sep < 0:
            return None
        spelled = self._llm.detokenize([self.fim.file_sep], special=True).decode(
            errors="replace")
        # Other spellings llama.cpp knows get the layout its /infill endpoint uses (Qwen's).
        return STARCODER2_REPO if spelled in FILE_SEP_TEXTS else QWEN_REPO


def repository(fim_ids: list[int], fim: FimTokens, layout: RepoFormat,
               tokenize: Callable[[str], list[int]], path: str | None,
               context: Sequence[tuple[str, str]], repo: str | None, room: int) -> list[int]:
    """``fim_ids`` (``<PRE> prefix <SUF> suffix <MID>``) after the repository's name, the
    files of ``context`` (path, text; the most relevant last) that fit in ``room`` tokens,
    each whole or left out, the least relevant first, and the current file's ``path``; the
    FIM part alone when even the names do not fit."""
    sep = fim.file_sep
    head = ([fim.repo, *tokenize(repo + layout.after_repo)]
            if repo is not None and fim.repo >= 0 else [])
    named = tokenize(f"{path}\n") if path is not None else []
    current = ([sep, fim_ids[0], *named, *fim_ids[1:]] if layout.path_in_prefix
               else [sep, *named, *fim_ids])
    room -= len(head) + len(current) - len(fim_ids)
    if room < 0:
        return fim_ids
    files: list[list[int]] = []
    for other, text in reversed(context):
        if room <= 1:
            break
        tokens = [sep, *tokenize(f"{other}\n{text}{layout.after_file}")]
        if len(tokens) <= room:
            files.append(tokens)
            room -= len(tokens)
    return head + [t for tokens in reversed(files) for t in tokens] + current


def comments(context: Sequence[tuple[str, str]], comment: str) -> str:
    """Other files' chunks (path, text) as line comments before the window, each under the
    file it came from: for a model without repository tokens."""
    parts = []
    for path, text in context:
        lines = [f"{comment} Compare this snippet from {path}:"]
        lines += [f"{comment} {line}".rstrip() for line in text.split("\n")]
        parts.append("\n".join(lines) + "\n")
    return "".join(parts)
