"""What compilot knows about each language: grammar, block style, stop strings."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import PurePosixPath

# Text that ends generation in any language: markdown fences (the embedded chat model closes
# its code block and goes on in prose) and the chat/FIM control tokens models leak as text.
COMMON_STOPS = (
    "```",
    "<|endoftext|>",
    "<|im_end|>",
    "<|im_start|>",
    "<|file_separator|>",
    "<file_sep>",
    "<|fim_",
    "<fim_",
    "<｜fim",
)


@dataclass(frozen=True)
class Language:
    """One language as the post-processor and ranker see it."""

    id: str
    """The LSP languageId."""
    grammar: str | None
    """tree-sitter-language-pack name; None: no syntax ranking."""
    blocks: str = "braces"
    """'indent' (Python) or 'braces': how the end of a block shows."""
    comment: str = "//"
    stops: tuple[str, ...] = field(default=COMMON_STOPS)


_LANGUAGES = {
    lang.id: lang
    for lang in (
        Language("python", "python", blocks="indent", comment="#",
                 stops=COMMON_STOPS + ("\nif __name__",)),
        Language("c", "c"),
        Language("cpp", "cpp"),
        Language("java", "java"),
        Language("javascript", "javascript"),
        Language("javascriptreact", "javascript"),
        Language("typescript", "typescript"),
        Language("typescriptreact", "tsx"),
        Language("go", "go"),
        Language("rust", "rust"),
    )
}

_EXTENSIONS = {
    ".py": "python", ".pyi": "python", ".c": "c", ".h": "c", ".cc": "cpp", ".cpp": "cpp",
    ".cxx": "cpp", ".hpp": "cpp", ".hh": "cpp", ".java": "java", ".js": "javascript",
    ".mjs": "javascript", ".cjs": "javascript", ".jsx": "javascriptreact",
    ".ts": "typescript", ".tsx": "typescriptreact", ".go": "go", ".rs": "rust",
}


# More languages with syntax checks only (no stop rules or compiler): LSP languageId -> pack
# grammar. An allowlist, not "whatever the pack has": some of the pack's grammars never return
# on ordinary input (cobol on "x" was seen to hang) and py-tree-sitter 0.26 has no parse
# timeout. Each entry is exercised by tests/test_syntax.py.
SYNTAX_ONLY = {"ruby": "ruby", "php": "php", "lua": "lua", "shellscript": "bash",
               "kotlin": "kotlin", "csharp": "csharp"}


def language_for(language_id: str | None, uri: str = "") -> Language:
    """The language of a document: its languageId, else its file extension.

    A few more languages get tree-sitter syntax checks only (SYNTAX_ONLY); any other language
    gets no grammar: completions are still offered, unranked by syntax.
    """
    if language_id and language_id in _LANGUAGES:
        return _LANGUAGES[language_id]
    by_ext = _EXTENSIONS.get(PurePosixPath(uri).suffix.lower())
    if by_ext and not language_id:
        return _LANGUAGES[by_ext]
    name = language_id or "plaintext"
    return Language(name, SYNTAX_ONLY.get(name), blocks="braces", comment="")
