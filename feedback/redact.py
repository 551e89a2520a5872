"""Secrets never reach the store or an export: replace them before anything is written."""

from __future__ import annotations

import math
import re
from collections import Counter

PLACEHOLDER = "<REDACTED>"

# Token shapes published by their issuers (AWS access key ids, GitHub's ghp_/gho_/ghs_/
# github_pat_, Slack's xox?-, OpenAI-style sk-, Google API keys AIza...).
_PATTERNS: list[tuple[str, re.Pattern[str]]] = [
    (
        "private-key",
        re.compile(
            r"-----BEGIN [A-Z0-9 ]*PRIVATE KEY-----.*?(?:-----END [A-Z0-9 ]*PRIVATE KEY-----|\Z)",
            re.S,
        ),
    ),
    ("aws-access-key", re.compile(r"\b(?:AKIA|ASIA|AGPA|AIDA|AROA|ANPA)[A-Z0-9]{16}\b")),
    (
        "aws-secret",
        re.compile(r"(?i)(aws_?secret_?(?:access_?)?key\s*[:=]\s*['\"]?)[A-Za-z0-9/+=]{40}"),
    ),
    ("github-token", re.compile(r"\b(?:gh[pousr]_[A-Za-z0-9]{36,}|github_pat_[A-Za-z0-9_]{50,})")),
    ("slack-token", re.compile(r"\bxox[abprs]-[A-Za-z0-9-]{10,}")),
    ("openai-key", re.compile(r"\bsk-(?:proj-|ant-)?[A-Za-z0-9_-]{20,}")),
    ("google-api-key", re.compile(r"\bAIza[0-9A-Za-z_-]{35}\b")),
    ("gcp-service-account", re.compile(r'("private_key_id"\s*:\s*")[0-9a-f]{40}')),
    ("jwt", re.compile(r"\beyJ[A-Za-z0-9_-]{10,}\.eyJ[A-Za-z0-9_-]{10,}\.[A-Za-z0-9_-]{10,}")),
    (
        "url-credentials",
        re.compile(r"(\b[a-z][a-z0-9+.-]*://[^\s:/@'\"]+:)[^\s@/'\"]+(?=@)"),
    ),
]

# `password = "..."`, `api_key: '...'`, `secret_token="..."` and the like.
_ASSIGNMENT = re.compile(
    r"""(?ix)
    (\b[\w.-]*(?:passw(?:or)?d|passwd|pwd|secret|token|api_?key|apikey|auth_?key|
        access_?key|private_?key|client_?secret|credentials?)[\w.-]*
     ['"]?\s*(?::=|=|:|=>)\s*[rbuf]?)
    (['"])([^'"\n]{4,})\2
    """
)

# A quoted literal that looks like random key material (Shannon entropy per character).
_STRING = re.compile(r"""(['"])([A-Za-z0-9+/=_\-.]{20,})\1""")
_ENTROPY_BITS = 4.0


def _entropy(text: str) -> float:
    counts = Counter(text)
    n = len(text)
    return -sum(c / n * math.log2(c / n) for c in counts.values())


def _looks_random(text: str) -> bool:
    classes = sum(
        bool(re.search(p, text)) for p in (r"[a-z]", r"[A-Z]", r"[0-9]", r"[+/=_\-.]")
    )
    return classes >= 3 and _entropy(text) >= _ENTROPY_BITS


def redact(text: str) -> str:
    """``text`` with every secret it holds replaced by ``<REDACTED>``."""
    if not text:
        return text
    for _name, pattern in _PATTERNS:
        if pattern.groups:
            text = pattern.sub(lambda m: m.group(1) + PLACEHOLDER, text)
        else:
            text = pattern.sub(PLACEHOLDER, text)
    text = _ASSIGNMENT.sub(
        lambda m: m.group(0) if m.group(3) == PLACEHOLDER else f"{m.group(1)}{m.group(2)}"
        f"{PLACEHOLDER}{m.group(2)}",
        text,
    )
    text = _STRING.sub(
        lambda m: f"{m.group(1)}{PLACEHOLDER}{m.group(1)}" if _looks_random(m.group(2))
        else m.group(0),
        text,
    )
    return text
