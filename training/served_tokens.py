"""Training rows as the token ids the server sends: llama.cpp's tokenizer of the served GGUF.

The adapter learns on ids and is applied to ids, so the ids of a training row must be the ones
the server's prompt would hold for the same text. transformers' tokenizer of the training base
does not always split text as llama.cpp does (it lacks some pre-tokenizers, e.g. deepseek-
coder's and starcoder's: the starcoder fixture's splits CR LF in two), so the rows are tokenized
here, by the served model's own vocabulary, and laid out as ``Engine.prompt`` lays out a prompt:
BOS where the model takes one, then the prefix alone or, for a model with fill-in-the-middle
tokens, ``<PRE> prefix <SUF> suffix <MID>``. transformers' tokenizer then only has to mean the
same text by each id (``base.check_base``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from compilot.server.engine import FimTokens


class ServedTokens:
    """The served GGUF's vocabulary (loaded without its weights): ids, BOS, EOS, FIM ids."""

    def __init__(self, gguf: Path) -> None:
        import llama_cpp

        self._llm = llama_cpp.Llama(model_path=str(gguf), vocab_only=True, n_ctx=8,
                                    verbose=False)
        vocab = self._llm._model.vocab
        self.fim = FimTokens.of(llama_cpp, vocab)
        self.bos = ([llama_cpp.llama_vocab_bos(vocab)]
                    if llama_cpp.llama_vocab_get_add_bos(vocab) else [])
        self.eos = int(llama_cpp.llama_vocab_eos(vocab))
        self.path = Path(gguf)

    def ids(self, text: str) -> list[int]:
        """``text``'s ids as ``Engine.tokenize`` makes them (no BOS; special tokens as text)."""
        data = text.encode("utf-8", errors="replace")
        return self._llm.tokenize(data, add_bos=False, special=False) if data else []

    def prompt(self, prefix: str, suffix: str = "") -> list[int]:
        """The prompt ids for a cursor between ``prefix`` and ``suffix``, as ``Engine.prompt``
        builds them (the texts already cut to the budget by ``train.fit``)."""
        if self.fim is None:
            return self.bos + self.ids(prefix)
        return self.bos + self.fim.wrap(self.ids(prefix), self.ids(suffix))

    def close(self) -> None:
        """Free the vocabulary."""
        self._llm.close()

    def __enter__(self) -> ServedTokens:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()
