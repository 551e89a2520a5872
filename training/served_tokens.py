"""Training rows as the token ids the server sends: llama.cpp's tokenizer of the served GGUF.

The adapter learns on ids and is applied to ids, so the ids of a training row must be the ones
the server's prompt would hold for the same text. transformers' tokenizer of the training base
does not always split text as llama.cpp does (it lacks some pre-tokenizers, e.g. deepseek-
coder's and starcoder's: the starcoder fixture's splits CR LF in two), so the rows are tokenized
here, by the served model's own vocabulary, and laid out as ``Engine.prompt`` lays out a prompt
(``server.layout``, the same code): BOS where the model takes one, then the prefix alone or,
for a model with fill-in-the-middle tokens, ``<PRE> prefix <SUF> suffix <MID>``; the chunks of
other files the request's prompt carried go before it, as the repository's files for a model
with repository tokens and as comments otherwise. transformers' tokenizer then only has to mean
the same text by each id (``base.check_base``).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from compilot.server.layout import Vocabulary, comments, repository


class ServedTokens:
    """The served GGUF's vocabulary (loaded without its weights): ids, BOS, EOS, FIM ids."""

    def __init__(self, gguf: Path) -> None:
        import llama_cpp

        self._llm = llama_cpp.Llama(model_path=str(gguf), vocab_only=True, n_ctx=8,
                                    verbose=False)
        vocab = self._llm._model.vocab
        layout = Vocabulary(llama_cpp, self._llm)
        self.fim, self.repo_format = layout.fim, layout.repo_format
        self.bos = ([llama_cpp.llama_vocab_bos(vocab)]
                    if llama_cpp.llama_vocab_get_add_bos(vocab) else [])
        self.eos = int(llama_cpp.llama_vocab_eos(vocab))
        self.path = Path(gguf)

    def ids(self, text: str) -> list[int]:
        """``text``'s ids as ``Engine.tokenize`` makes them (no BOS; special tokens as text)."""
        data = text.encode("utf-8", errors="replace")
        return self._llm.tokenize(data, add_bos=False, special=False) if data else []

    def prompt(self, prefix: str, suffix: str = "", *,
               context: Sequence[tuple[str, str]] = (), comment: str = "#") -> list[int]:
        """The prompt ids for a cursor between ``prefix`` and ``suffix``, as ``Engine.prompt``
        builds them (the texts, and the chunks of other files in ``context`` as (path, text),
        already cut to the budget by ``train.fit``); ``comment`` is the row's language's line
        comment, for a model without repository tokens."""
        if context and self.repo_format is None:
            prefix = comments(context, comment) + prefix
        if self.fim is None:
            return self.bos + self.ids(prefix)
        fim = self.fim.wrap(self.ids(prefix), self.ids(suffix))
        if not context or self.repo_format is None:
            return self.bos + fim
        # The current file's path is not recorded: the file goes unnamed after the others.
        return self.bos + repository(fim, self.fim, self.repo_format, self.ids, None, context,
                                     None, room=1 << 30)

    def close(self) -> None:
        """Free the vocabulary."""
        self._llm.close()

    def __enter__(self) -> ServedTokens:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()
