"""Secrets never reach the store or an export: replace them before anything is written.

The server records the window around the cursor on every request, so a secret is seen while it
is typed: every prefix of it, its string not yet closed, its key's BEGIN line scrolled out of
the window (issue 12). So the redactor masks regions, not only whole tokens:

1. **Token shapes** published by their issuers, also cut short: a distinctive start (`AKIA`,
   `sk_live_`, `ghp_`, `xoxb-`, `eyJ`, ...) and a few characters are enough; the values of
   `AccountKey=` / `Password=` in connection strings, `Bearer` / `Basic` credentials, URL
   passwords, `<password>` elements.
2. **Assignments to a secret-looking name** (`password`, `token`, `api_key`, `*_KEY`, ...):
   a closed string's contents; an unclosed string, or an unquoted value that does not read as
   code (a name, a call, a number), from the value to the end of its line. A `NAME=value` line
   (`.env`, shell, INI without spaces) is masked whatever its value.
3. **Key material without a name**: PEM bodies (lines of base64) without their header, quoted
   high-entropy literals, closed or running to the end of the line.

Masking is line-bounded. A text that is canonical JSON (the store writes diagnostics as
``json.dumps``) is redacted string by string, so that masking never eats its structure.
"""

from __future__ import annotations

import json
import math
import re
from collections import Counter
from typing import Any

PLACEHOLDER = "<REDACTED>"

# Token shapes published by their issuers, each accepting a prefix of the token so that one
# being typed is caught too. Sources: AWS IAM identifiers ("unique ID prefixes"), GitHub's
# token formats (ghp_/gho_/ghu_/ghs_/ghr_, github_pat_), Slack (xoxb-/xoxp-/...), Stripe API
# keys (sk_/rk_/pk_ + live_/test_, whsec_), OpenAI (sk-proj-, sk-ant- for Anthropic), Google
# API keys (AIza), JWTs (base64url of '{"' is 'eyJ'), Azure storage connection strings.
_PATTERNS: list[tuple[str, re.Pattern[str]]] = [
    (
        "private-key",
        re.compile(
            r"-----BEGIN [A-Z0-9 ]*PRIVATE KEY(?: BLOCK)?-----.*?"
            r"(?:-----END [A-Z0-9 ]*PRIVATE KEY(?: BLOCK)?-----|\Z)",
            re.S,
        ),
    ),
    (
        "aws-access-key",
        re.compile(r"\b(?:AKIA|ASIA|ABIA|ACCA|AGPA|AIDA|AIPA|ANPA|ANVA|AROA|APKA|ASCA)"
                   r"[A-Z0-9]{4,16}(?![A-Z0-9])"),
    ),
    (
        "aws-secret",
        re.compile(r"(?i)(aws_?secret_?(?:access_?)?key['\"]?\s*[:=]\s*['\"]?)"
                   r"[A-Za-z0-9/+=]{4,40}(?![A-Za-z0-9/+=.(\[])"),
    ),
    ("github-token", re.compile(r"\b(?:gh[pousr]_[A-Za-z0-9]{4,}|github_pat_[A-Za-z0-9_]{4,})")),
    ("slack-token", re.compile(r"\bxox[abeprs]-[A-Za-z0-9-]{3,}")),
    ("stripe-key", re.compile(r"\b(?:[spr]k_(?:live|test)_[A-Za-z0-9]*|whsec_[A-Za-z0-9]{4,})")),
    (
        "openai-key",
        re.compile(r"\bsk-(?:(?:proj|ant|svcacct|admin)-[A-Za-z0-9_-]*|[A-Za-z0-9_-]{20,}"
                   r"|[A-Za-z0-9]{6,}\Z)"),
    ),
    ("google-api-key", re.compile(r"\bAIza[0-9A-Za-z_-]{4,35}")),
    ("gcp-service-account", re.compile(r'("private_key_id"\s*:\s*")[0-9a-f]{1,40}')),
    ("jwt", re.compile(r"\beyJ[A-Za-z0-9_-]{6,}(?:\.[A-Za-z0-9_-]*){0,2}")),
    (
        "connection-string",
        # `AccountKey=...;` anywhere, `Password=...` as a field of one (`;Password=`).
        re.compile(r"(?i)(\b(?:AccountKey|SharedAccessKey|SharedAccessSignature)=|"
                   r"[;'\"][ \t]*(?:Password|Pwd)[ \t]*=)(?![{$%])[^;'\"\r\n]+"),
    ),
    (
        "authorization-header",
        re.compile(r"(?i)(\b(?:bearer|basic)[ \t]+)(?=[A-Za-z0-9._~+/-]*\d)"
                   r"[A-Za-z0-9._~+/-]{8,}=*"),
    ),
    (
        "xml-element",
        # `<password>...</password>`, the element's text up to its end tag or line's end.
        re.compile(r"(?i)((?<![\w:])<[\w.:-]*(?:passw(?:or)?d|secret|token|api_?key"
                   r"|private_?key|credentials?)>)(?=[^\s'\"`<])[^<\r\n]+(?=</|\r?$)", re.M),
    ),
    (
        "url-credentials",
        # `scheme://user:password@`, and while typed (no `@` yet) unless it reads as a port.
        re.compile(r"(\b[a-z][a-z0-9+.-]*://[^\s:/@'\"]+:)(?:[^\s@/'\"]+(?=@)"
                   r"|(?!\d+(?![A-Za-z])|[%<{$:*])[^\s@/'\"`<>]+(?=['\"`]|\s|$))", re.M),
    ),
]

# Names whose value is a secret: `password`, `db_pass`, `api_key`, `clientSecret`, `AUTH_TOKEN`,
# `STRIPE_KEY` (any upper-case `*_KEY`), not `tokens`, `tokenizer`, `key`, `primary_key`.
_NAME = r"""
    (?<![\w.-])[\w.-]{0,48}?
    (?: passw(?:or)?d | passwd | pwd | passphrase | (?<=[_.-])pass(?![A-Za-z])
      | secret | credentials? | token(?!s|i[sz]) | apikey
      | (?:api|secret|access|private|account|auth|signing|encryption|master|client|app
          |license|shared|service|session|webhook|hmac|jwt|ssh|gpg|pgp|stripe|aws
          |gcp|azure|openai)[_-]?key
      | conn(?:ection)?_?str(?:ing)?
      | (?-i:[A-Z0-9_]{0,48}_KEY\b) )
    [\w.-]{0,48}+
"""
_HINT = re.compile(r"(?i)pass|pwd|secret|credential|token|key|conn")  # in every name above
_ASSIGNMENT = re.compile(
    rf"""(?imx)
    (?P<lead> ^[ \t]*(?:(?:export|set|env|arg)[ \t]+)? )?
    (?P<name> {_NAME} )
    (?P<op> ['"]? (?: [ \t]*:[ \t]*[A-Za-z_][\w.\[\], |]{0,80}? )? [ \t]*
            (?: := | => | (?<![=!<>])=(?![=>~]) | :(?![:=/]) ) [ \t]* )
    (?P<value> [^\r\n]* )
    """
)
# ... unless the name says it is about the secret, not the secret: `token_type`, `password_file`,
# `api_key_env`, `tokenUrl`.
_ABOUT = re.compile(r"(?:[_.-]|(?<=[a-z])(?=[A-Z]))(?i:type|kind|name|count|len|length|size|limit"
                    r"|range|ids?|index|url|uri|endpoint|file|path|dir|field|label|prompt|hint"
                    r"|format|pattern|regex|header|param|env|var|expiry|ttl|timeout|policy"
                    r"|prefix|suffix|class|mode|usage|spec|encryption|algorithm|method|scheme)"
                    r"s?_?$")
_QUOTE = re.compile(r"""(?i)[rbuf]{0,2}(['"`])""")
_WORD = re.compile(r"""[^\s,;()\[\]{}'"`<>]+""")
_CODE_NAME = re.compile(r"[A-Za-z_$][\w$]*(?:(?:\.|::|->)[A-Za-z_$][\w$]*)*")
_OPERATORS = "([{<|&+*/=?^"  # after a name: a call, an index, a generic, an expression
_PLACEHOLDER_LIKE = re.compile(r"<[^<>]*>|\[[A-Z_]+\]")  # ours, `<your_token>`, `[PAD]`
_PROSE = re.compile(r"[A-Za-z]+(?:-[A-Za-z]+)+")  # `non-empty`, `re-exchanging`
_SMALL_NUMBER = re.compile(r"(?:\d{1,5}|\d{1,3}(?:_\d{3})+)(?:\.\d+)?(?:[eE][-+]?\d+)?")

# A quoted literal that looks like random key material (Shannon entropy per character),
# closed or running to the end of its line (being typed).
_STRING = re.compile(r"""(['"])([A-Za-z0-9+/=_\-.]{20,}+)(?=\1|\r?$)""", re.M)
_ENTROPY_BITS = 4.0

# PEM bodies: 64 base64 characters a line (RFC 7468; OpenSSH uses 70, MIME 76).
_BODY_LINE = re.compile(r"[A-Za-z0-9+/]{40,}={0,2}")
_TAIL_LINE = re.compile(r"[A-Za-z0-9+/]+={0,2}|-----END [A-Z0-9 ]+-----")
_BODY_BITS = 4.2


def _entropy(text: str) -> float:
    counts = Counter(text)
    n = len(text)
    return -sum(c / n * math.log2(c / n) for c in counts.values())


def _looks_random(text: str, bits: float = _ENTROPY_BITS) -> bool:
    classes = sum(
        bool(re.search(p, text)) for p in (r"[a-z]", r"[A-Z]", r"[0-9]", r"[+/=_\-.]")
    )
    return classes >= 3 and _entropy(text) >= bits


def _reads_as_code(value: str) -> bool:
    """Whether an unquoted value is code (a name, a call, an index, a small number, a reference)
    rather than a literal password or key: `get_password()`, `tokens[0]`, `str`, `None`, `64`,
    `StopToken::none()`, `*tokens_`."""
    text = value.lstrip("-+!~*&")  # a unary operator, a C pointer
    word = _WORD.match(text)
    if word is None or value[0] in "#%" or not any(c.isalnum() for c in word[0]):
        return True  # punctuation (`(`, `<REDACTED>`, `...`), a comment, a `%s` placeholder
    name = _CODE_NAME.match(text)
    if name is not None and (name.end() >= word.end() or text[name.end()] in _OPERATORS):
        # A name with a digit but no underscore (`hunter2`) reads as a password; `token_ids_0`,
        # `md5(x)` and `a2 | b` as code.
        after = text[name.end():].lstrip(" \t")[:1]
        return (after != "" and after in _OPERATORS) or "_" in name[0] or not any(
            c.isdigit() for c in name[0])
    return bool(_SMALL_NUMBER.fullmatch(word[0]) or _PROSE.fullmatch(word[0]))


def _in_string(text: str, at: int, quote: str) -> bool:
    """Whether ``text[at]`` stands inside a ``quote`` string opened earlier on its line (an odd
    number of unescaped quotes before it), so that the next ``quote`` closes it."""
    line = text[text.rfind("\n", 0, at) + 1:at]
    return (line.count(quote) - line.count("\\" + quote)) % 2 == 1


def _secret_name(name: str) -> bool:
    """Whether ``name`` is a secret's: `db_password`, `apiKey`; not `password_file`."""
    return bool(re.fullmatch(_NAME, name, re.I | re.X)) and not _ABOUT.search(name)


def _mask_assignment(m: re.Match[str], nested: bool) -> str:
    lead, head, value = m["lead"] or "", m["name"] + m["op"], m["value"]
    if _ABOUT.search(m["name"]):  # `password_file = ...`: not the secret; look further on
        return lead + head + _assignments(value, nested=True)
    quote = _QUOTE.match(value)
    if quote and (_in_string(m.string, m.start("value"), quote[1])
                  or quote[1] == "`" and "=" not in m["op"]):
        quote = None  # the end of a string the name is in (`"Password: " + x`), or a docstring's
        # `name: `code``
    if quote:
        q = quote[1]
        body = re.match(rf"(?:\\.|[^{q}\\\r\n])*", value[quote.end():])
        content = body[0] if body else ""
        rest = value[quote.end() + len(content):]
        if not rest:  # not closed on this line: being typed, masked to the line's end
            return lead + head + quote[0] + (PLACEHOLDER if content else "")
        if len(content) >= 4 and not _PLACEHOLDER_LIKE.fullmatch(content):
            content = PLACEHOLDER
        return lead + head + quote[0] + content + q + _assignments(rest[1:], nested=True)
    # `NAME=value` from the line's first column (or after `export`): .env, shell, INI.
    env_line = (m["lead"] is not None and not (nested and m.start() == 0)
                and m["op"] == "=" and (lead == "" or lead.strip() != ""))
    if value and (env_line or not _reads_as_code(value)):
        return lead + head + PLACEHOLDER
    return lead + head + _assignments(value, nested=True)


def _assignments(text: str, *, nested: bool = False) -> str:
    """``text`` with the values of secret-looking assignments masked; ``nested``: ``text`` is
    the rest of a line, so its start is no line start."""
    if nested:
        return _ASSIGNMENT.sub(lambda m: _mask_assignment(m, True), text)
    # Line by line (an assignment never spans lines), and only lines that may hold a name:
    # the full pattern is slow to fail at every word.
    return "\n".join(
        _ASSIGNMENT.sub(lambda m: _mask_assignment(m, False), line) if _HINT.search(line)
        else line for line in text.split("\n")
    )


def _key_bodies(text: str) -> str:
    """Runs of base64 lines (a PEM body whose BEGIN line is elsewhere) as one placeholder."""
    if "\n" not in text and len(text) < 40:
        return text
    lines = text.splitlines(keepends=True)
    stripped = [line.strip() for line in lines]
    body = [bool(_BODY_LINE.fullmatch(s)) and _looks_random(s, _BODY_BITS) for s in stripped]
    if not any(body):
        return text
    masked = list(body)
    for i, is_body in enumerate(body):
        if not is_body:
            continue
        # The line after a body line (the last, shorter one, or the one being typed), and
        # the text's first line before the second (a window that starts inside the body).
        for j in (i + 1, 0) if i == 1 else (i + 1,):
            if j < len(lines) and not body[j] and _TAIL_LINE.fullmatch(stripped[j]):
                masked[j] = True
    out: list[str] = []
    for i, line in enumerate(lines):
        if not masked[i]:
            out.append(line)
        elif i + 1 == len(lines) or not masked[i + 1]:  # the run's last line: one placeholder
            start = i
            while start > 0 and masked[start - 1]:
                start -= 1
            indent = lines[start][:len(lines[start]) - len(lines[start].lstrip())]
            ending = line[len(line.rstrip("\r\n")):]
            out.append(f"{indent}{PLACEHOLDER}{ending}")
    return "".join(out)


def _redact_text(text: str) -> str:
    for _name, pattern in _PATTERNS:
        if pattern.groups:
            text = pattern.sub(lambda m: m.group(1) + PLACEHOLDER, text)
        else:
            text = pattern.sub(PLACEHOLDER, text)
    text = _assignments(text)
    text = _key_bodies(text)
    return _STRING.sub(_mask_literal, text)


def _mask_literal(m: re.Match[str]) -> str:
    quote, body = m.group(1), m.group(2)
    if not m.string.startswith(quote, m.end()) and _in_string(m.string, m.start(), quote):
        return m.group(0)  # the quote closes a string: what follows it is no literal
    return quote + PLACEHOLDER if _looks_random(body) else m.group(0)


def _redact_json(value: Any, key: str | None = None) -> Any:
    if isinstance(value, str):
        if key is not None and len(value) >= 4 and _secret_name(key):
            return PLACEHOLDER
        return _redact_text(value)
    if isinstance(value, list):
        return [_redact_json(v) for v in value]
    if isinstance(value, dict):
        return {_redact_text(k): _redact_json(v, k) for k, v in value.items()}
    return value


def redact(text: str) -> str:
    """``text`` with every secret it holds replaced by ``<REDACTED>``."""
    if not text:
        return text
    if text[0] in "[{" and text[-1] in "]}":
        try:
            value = json.loads(text)
        except ValueError:
            pass
        else:
            if json.dumps(value) == text:
                return json.dumps(_redact_json(value))
    return _redact_text(text)
