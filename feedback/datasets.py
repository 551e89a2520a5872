"""Training data from the event store: KTO, DPO and SFT rows, and a flat events table.

Every row comes from a completion request: `prompt` is the request's prefix (the window before
the cursor) and `suffix` the window after it, for fill-in-the-middle models. Metadata columns:
`language`, `adapter` (the adapter version that served the request), `file` (the first 16 hex
digits of the SHA-256 of the document URI, never the path), `source`, `origin` (`editor`, or
`bootstrap` for what `compilot bootstrap` made from the user's own functions), `created_at`
(epoch seconds of the request) and `context` (the chunks of other files the request's prompt
carried before its window, each `{path, text}`, redacted when it was cut; empty without
context): the prompt the model saw is `context` laid out as `server.layout` lays it out, then
`prompt` (and `suffix`).

**Labels** (one rule for every kind):

- A candidate *fails* when `candidates.parsed = 0`, or when any of its checks (syntax or
  compile stage, any trigger) has `introduced = 1` and status `syntax` or `type`.
- A candidate *compiles* when it does not fail, its syntax was seen to be fine (`parsed = 1`
  or a syntax check with status `ok`), and it has at least one compile-stage check with status
  `ok`, `unresolved` (missing imports, which the thesis ignores too, ch. 3.1.3) or
  `toolchain_missing`.
- Anything else is *unknown* and in neither class: a check that timed out or errored, only a
  syntax check, no check at all. `timeout` and `toolchain_missing` never make a candidate bad.
- A candidate *survived* when its latest survival record has `share >= survival_threshold`.
- Its *grade* (``feedback.grades``, an ordinal exported as an integer): 0 does not parse <
  1 type error < 2 unresolved names (it compiles, with names the file lacks) < 3 compiles <
  4 kept (accepted, compiles, survived) < 5 passes tests; null when nothing conclusive ran.

**KTO** (prompt, completion, label): `label = true` for a candidate that was accepted, compiles
and survived; `label = false` for a candidate that fails, whether accepted, only shown or only
generated. A rejected candidate that compiles is left out, or labelled false with
`include_rejected_compiling`. Everything else is left out. `source` says how the candidate was
received: accepted, partial, rejected, shown or generated (never shown).

**DPO** (prompt, chosen, rejected, chosen_grade, rejected_grade), `source`:
- `candidates`: two candidates of the same prompt (the same request, or a repeat of its
  window: same language, prefix and suffix) whose grades differ, the better chosen, when the
  chosen one compiles (grade 2 or more: the SFT term learns to write it); with
  `dpo_pairs = "compiles"`, only a candidate that compiles against one that fails;
- `revision`: the user's repair of a broken accepted completion (fixed) against what was
  accepted (broken);
- `synthetic`: for a prompt with a compiling candidate but no failing candidate and no
  revision, the compiling candidate against a small corruption of it (a closing bracket or a
  colon dropped, a keyword misspelled: return/retrun, def/dfe, while/whlie, ...), as the
  thesis does (ch. 3.2.2). Corruptions are tried in an order fixed by `seed`; one is kept only
  when the checker fails prefix + corruption + suffix while prefix + original + suffix does not
  fail (`check_syntax`, then `check_compile` when the syntax check sees nothing wrong), so no
  negative that still compiles is ever kept.

**SFT** (prompt, completion), `source`: `revision` (every recorded repair's fixed text) and
`accepted` (a candidate that was accepted, compiles and survived: the KTO-desirable ones).

**events**: every candidate with its request, its events, its latest check, its latest survival
record and its revision, for research.

Rows are deduplicated on (prompt, suffix, completion[, label]) or (prompt, suffix, chosen,
rejected), the first (oldest) kept. A file goes to `test` when the SHA-256 of its URI, read as
a fraction, is below `held_out`, so no file feeds both splits and a file keeps its split from
one export to the next (`seed` does not move it). Every text passes through `redact()` again on
the way out, although the store redacted it on the way in.
"""

from __future__ import annotations

import hashlib
import json
import random
import re
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal, cast, get_args

from datasets import Dataset, DatasetDict, Features, Value

from compilot.feedback import grades
from compilot.feedback.compilers import check_compile
from compilot.feedback.diagnostics import COMPILING, FAILING, CheckStatus, Stage
from compilot.feedback.grades import Check, Grade
from compilot.feedback.records import EventKind
from compilot.feedback.redact import PLACEHOLDER, redact
from compilot.feedback.store import Store
from compilot.feedback.syntax import check_syntax
from compilot.settings import DatasetSettings

Kind = Literal["kto", "dpo", "sft", "events"]
KINDS: tuple[str, ...] = ("kto", "dpo", "sft", "events")
SPLITS = ("train", "test")

Row = dict[str, Any]


def kind_named(name: str) -> Kind:
    """The dataset kind called ``name``; ValueError names the kinds there are."""
    for kind in get_args(Kind):
        if kind == name:
            return cast(Kind, kind)
    raise ValueError(f"kind must be one of {', '.join(KINDS)}, not {name!r}")


@dataclass(frozen=True, kw_only=True)
class Selection:
    """Which dataset to build from the store, and of which requests."""

    kind: Kind
    since: float | None = None
    """Only requests made at or after this time (epoch seconds)."""
    language: str | None = None
    """Only requests in this LSP language id."""

    def __post_init__(self) -> None:
        kind_named(self.kind)


def parse_since(value: str) -> float:
    """Epoch seconds from an ISO date or date-time (UTC unless it says otherwise) or a number."""
    try:
        return float(value)
    except ValueError:
        pass
    try:
        moment = datetime.fromisoformat(value)
    except ValueError as exc:
        raise ValueError(f"since: {value!r} is not a date (2025-01-31), a date-time "
                         "(2025-01-31T12:00) or epoch seconds") from exc
    return (moment if moment.tzinfo else moment.replace(tzinfo=UTC)).timestamp()


_S, _F, _B, _I = Value("string"), Value("float64"), Value("bool"), Value("int64")
_META = {"suffix": _S, "language": _S, "adapter": _S, "file": _S, "source": _S, "origin": _S,
         "created_at": _F, "context": [{"path": _S, "text": _S}]}
FEATURES: dict[str, Features] = {
    "kto": Features({"prompt": _S, "completion": _S, "label": _B, "grade": _I, **_META}),
    "dpo": Features({"prompt": _S, "chosen": _S, "rejected": _S, "chosen_grade": _I,
                     "rejected_grade": _I, **_META}),
    "sft": Features({"prompt": _S, "completion": _S, **_META}),
    "events": Features({
        "request_id": _S, "candidate_id": _S, **_META, "model": _S, "prompt": _S,
        "completion": _S, "raw": _S, "rank": _I, "logprob": _F, "tokens": _I, "parsed": _B,
        "shown": _B, "events": _S, "accepted": _B, "rejected": _B, "partial": _B,
        "check_stage": _S, "check_status": _S, "check_introduced": _B, "outcome": _S,
        "grade": _I,
        "survival_at": _S, "survival_share": _F, "revision": _S,
    }),
}
_DEDUPE_KEYS = {
    "kto": ("prompt", "suffix", "context", "completion", "label"),
    "dpo": ("prompt", "suffix", "context", "chosen", "rejected"),
    "sft": ("prompt", "suffix", "context", "completion"),
    "events": ("candidate_id",),
}


def classify(parsed: bool | None, checks: Iterable[Check]) -> str:
    """'fails', 'compiles' or 'unknown' from ``parsed`` and (stage, status, introduced,
    blamed) checks."""
    checks = list(checks)
    if parsed is False or any(introduced and status in FAILING
                              for _, status, introduced, _ in checks):
        return "fails"
    # Evidence of syntax is required too: without a toolchain ("toolchain_missing") and
    # without a grammar (parsed is None) nothing was actually checked.
    syntax_ok = parsed is True or any(stage == Stage.SYNTAX and status == CheckStatus.OK
                                      for stage, status, _, _ in checks)
    if syntax_ok and any(stage == Stage.COMPILE and status in COMPILING
                         for stage, status, _, _ in checks):
        return "compiles"
    return "unknown"


def file_id(uri: str) -> str:
    """A short stable pseudonym of a document URI (the path never leaves the store)."""
    return hashlib.sha256(uri.encode()).hexdigest()[:16]


def split_of(file: str, held_out: float) -> str:
    """'test' when the file id read as a fraction of 16**len is below ``held_out``."""
    return "test" if int(file, 16) / 16 ** len(file) < held_out else "train"


# -- corruption (thesis ch. 3.2.2: "removing a special symbol, or misspelling a keyword") -------

_MISSPELLED = {
    "return": "retrun", "def": "dfe", "while": "whlie", "for": "fro", "if": "fi", "elif": "elfi",
    "else": "esle", "import": "improt", "class": "calss", "lambda": "lmabda",
    "function": "fucntion", "const": "cosnt", "struct": "strcut", "func": "fnuc", "fn": "nf",
}
_KEYWORD = re.compile(r"\b(?:" + "|".join(_MISSPELLED) + r")\b")


def corruptions(text: str) -> list[str]:
    """Every one-edit corruption of ``text``: a ``)]}`` or ``:`` dropped, a keyword misspelled."""
    out = [text[:i] + text[i + 1 :] for i, ch in enumerate(text) if ch in ")]}:"]
    out += [text[: m.start()] + _MISSPELLED[m.group()] + text[m.end() :]
            for m in _KEYWORD.finditer(text)]
    return list(dict.fromkeys(out))


def corrupt(text: str, *, seed: int) -> list[str]:
    """``corruptions(text)`` in an order fixed by ``seed`` and ``text`` (try the first first)."""
    out = corruptions(text)
    random.Random(f"{seed}\0{text}").shuffle(out)  # str seeds hash with SHA-512: stable
    return out


def synthetic_negative(prefix: str, text: str, suffix: str, language: str, *, seed: int,
                       attempts: int = 3) -> tuple[str, Grade] | None:
    """The first corruption of ``text`` that the checker confirms breaks the splice, with its
    grade (it does not parse, or has a type error), or None.

    Confirmed means: ``prefix + corrupted + suffix`` fails a check that ``prefix + text +
    suffix`` passes; check_syntax first, check_compile when the syntax check finds nothing.
    """
    checkers: list[Callable[[str, str], Any]] = [check_syntax, check_compile]
    baseline: dict[int, bool] = {}
    for corrupted in corrupt(text, seed=seed)[:attempts]:
        for n, check in enumerate(checkers):
            result = check(prefix + corrupted + suffix, language)
            if not result.failed:
                continue
            if n not in baseline:
                baseline[n] = check(prefix + text + suffix, language).failed
            if not baseline[n]:
                return corrupted, (Grade.TYPE_ERROR if result.status == CheckStatus.TYPE
                                   else Grade.DOES_NOT_PARSE)
            break  # the original fails this check too: the failure proves nothing
    return None


# -- reading the store ------------------------------------------------------------------------

@dataclass
class _Candidate:
    row: dict[str, Any]
    events: list[str] = field(default_factory=list)
    checks: list[Check] = field(default_factory=list)
    survival: tuple[str, float] | None = None
    revisions: list[tuple[str, str, str]] = field(default_factory=list)

    def __getattr__(self, name: str) -> Any:
        try:
            return self.__dict__["row"][name]
        except KeyError:
            raise AttributeError(name) from None

    @property
    def outcome(self) -> str:
        parsed = None if self.row["parsed"] is None else bool(self.row["parsed"])
        return classify(parsed, self.checks)

    def survived(self, threshold: float) -> bool:
        return self.survival is not None and self.survival[1] >= threshold

    def grade(self, threshold: float) -> Grade | None:
        parsed = None if self.row["parsed"] is None else bool(self.row["parsed"])
        kept = EventKind.ACCEPTED in self.events and self.survived(threshold)
        return grades.grade(parsed, self.checks, kept=kept)

    @property
    def reception(self) -> str:
        for kind in (EventKind.ACCEPTED, EventKind.PARTIAL, EventKind.REJECTED):
            if kind in self.events:
                return str(kind)
        return "shown" if self.row["shown"] else "generated"


_WHERE = (" WHERE (? IS NULL OR r.created_at >= ?) AND (? IS NULL OR r.language = ?)")
# A cache hit's window is its first request's (the view); NULL where that one was never written.
_WINDOW = " JOIN request_windows w ON w.id = r.id"
_JOIN = (" JOIN candidates c ON c.id = x.candidate_id JOIN requests r ON r.id = c.request_id"
         + _WINDOW + _WHERE + " AND w.prefix IS NOT NULL")


def _load(store: Store, selection: Selection) -> list[_Candidate]:
    args = (selection.since, selection.since, selection.language, selection.language)
    rows = store.query(
        "SELECT c.id, c.request_id, c.rank, c.text, c.raw, c.logprob, c.tokens, c.parsed, "
        "c.shown, r.uri, r.language, r.adapter, r.model, r.source, r.origin, w.prefix, "
        "w.suffix, w.context, r.created_at FROM candidates c JOIN requests r ON r.id = c.request_id"
        + _WINDOW + _WHERE + " AND w.prefix IS NOT NULL"
        " ORDER BY r.created_at, r.id, c.rank, c.id", args)
    by_id = {row["id"]: _Candidate(dict(row)) for row in rows}
    for row in store.query("SELECT x.candidate_id, x.kind FROM events x" + _JOIN
                           + " ORDER BY x.id", args):
        by_id[row[0]].events.append(row[1])
    for row in store.query("SELECT x.candidate_id, x.stage, x.status, x.introduced, x.blamed "
                           "FROM checks x" + _JOIN + " ORDER BY x.id", args):
        by_id[row[0]].checks.append((row[1], row[2], bool(row[3]), row[4]))
    for row in store.query("SELECT x.candidate_id, x.at, x.share FROM survival x" + _JOIN
                           + " ORDER BY x.created_at, x.id", args):
        by_id[row[0]].survival = (row[1], row[2])
    for row in store.query("SELECT x.candidate_id, x.broken, x.fixed, x.status FROM revisions x"
                           + _JOIN + " ORDER BY x.id", args):
        by_id[row[0]].revisions.append((row[1], row[2], row[3]))
    return list(by_id.values())


# -- rows ---------------------------------------------------------------------------------------

def _context(recorded: str | None) -> list[dict[str, str]]:
    """The chunks a request's prompt carried, as the store recorded them (JSON)."""
    return [{"path": str(chunk["path"]), "text": str(chunk["text"])}
            for chunk in json.loads(recorded or "[]")]


def _meta(c: _Candidate, source: str) -> Row:
    return {"prompt": c.prefix, "suffix": c.suffix, "language": c.language,
            "adapter": c.adapter, "file": file_id(c.uri), "source": source,
            "origin": c.origin, "created_at": c.created_at, "context": _context(c.context)}


def _kto(candidates: list[_Candidate], settings: DatasetSettings) -> Iterator[Row]:
    for c in candidates:
        accepted = EventKind.ACCEPTED in c.events
        if c.outcome == "fails":
            label = False
        elif accepted and c.outcome == "compiles" and c.survived(settings.survival_threshold):
            label = True
        elif (settings.include_rejected_compiling and not accepted
              and EventKind.REJECTED in c.events and c.outcome == "compiles"):
            label = False
        else:
            continue
        yield {**_meta(c, c.reception), "completion": c.text, "label": label,
               "grade": c.grade(settings.survival_threshold)}


def _by_prompt(candidates: list[_Candidate]
               ) -> dict[tuple[str, str, str, str], list[_Candidate]]:
    """Candidates grouped by prompt (window and context): a repeated request is the same
    prompt."""
    groups: dict[tuple[str, str, str, str], list[_Candidate]] = {}
    for c in candidates:
        groups.setdefault((c.language, c.prefix, c.suffix, c.context or "[]"), []).append(c)
    return groups


_STATUS_GRADE: dict[str, Grade] = {
    CheckStatus.SYNTAX: Grade.DOES_NOT_PARSE, CheckStatus.TYPE: Grade.TYPE_ERROR,
    CheckStatus.UNRESOLVED: Grade.UNRESOLVED, CheckStatus.OK: Grade.COMPILES,
    CheckStatus.TOOLCHAIN_MISSING: Grade.COMPILES}
"""The grade of a user's revision from the check of its text."""


def _pairs(group: list[_Candidate], settings: DatasetSettings
           ) -> Iterator[tuple[_Candidate, Grade, _Candidate, Grade]]:
    """(chosen, its grade, rejected, its grade) among the candidates of one prompt."""
    graded = [(c, g) for c in group if (g := c.grade(settings.survival_threshold)) is not None]
    for good, good_grade in graded:
        if good_grade < Grade.UNRESOLVED:
            continue  # a chosen side must compile: the DPO + SFT loss learns to write it
        for bad, bad_grade in graded:
            if settings.dpo_pairs == "graded":
                differ = bad_grade < good_grade
            else:  # "compiles": the first rule, compiles against fails
                differ = bad_grade < Grade.UNRESOLVED
            if differ and good.text != bad.text:
                yield good, good_grade, bad, bad_grade


def _dpo(candidates: list[_Candidate], settings: DatasetSettings) -> Iterator[Row]:
    for group in _by_prompt(candidates).values():
        for g, g_grade, b, b_grade in _pairs(group, settings):
            yield {**_meta(g, "candidates"), "chosen": g.text, "rejected": b.text,
                   "chosen_grade": g_grade, "rejected_grade": b_grade}
        revised = [(c, r) for c in group for r in c.revisions]
        for c, (broken, fixed, status) in revised:
            if fixed.strip() and fixed != broken:
                yield {**_meta(c, "revision"), "chosen": fixed, "rejected": broken,
                       "chosen_grade": _STATUS_GRADE.get(status),
                       "rejected_grade": c.grade(settings.survival_threshold)}
        good = [c for c in group if c.outcome == "compiles"]
        bad = [c for c in group if c.outcome == "fails"]
        if settings.synthetic_negatives and good and not bad and not revised:
            for g in good:
                negative = synthetic_negative(g.prefix, g.text, g.suffix, g.language,
                                              seed=settings.seed)
                if negative is not None:
                    yield {**_meta(g, "synthetic"), "chosen": g.text, "rejected": negative[0],
                           "chosen_grade": g.grade(settings.survival_threshold),
                           "rejected_grade": negative[1]}


def _sft(candidates: list[_Candidate], settings: DatasetSettings) -> Iterator[Row]:
    for c in candidates:
        for _broken, fixed, _status in c.revisions:
            if fixed.strip():
                yield {**_meta(c, "revision"), "completion": fixed}
        if (EventKind.ACCEPTED in c.events and c.outcome == "compiles"
                and c.survived(settings.survival_threshold)):
            yield {**_meta(c, "accepted"), "completion": c.text}


def _events(candidates: list[_Candidate], settings: DatasetSettings) -> Iterator[Row]:
    for c in candidates:
        stage, status, introduced, _ = c.checks[-1] if c.checks else (None, None, None, None)
        yield {
            **_meta(c, c.source), "request_id": c.request_id, "candidate_id": c.id,
            "model": c.model, "completion": c.text, "raw": c.raw, "rank": c.rank,
            "logprob": c.logprob, "tokens": c.tokens,
            "parsed": None if c.parsed is None else bool(c.parsed), "shown": bool(c.shown),
            "events": ",".join(c.events), "accepted": EventKind.ACCEPTED in c.events,
            "rejected": EventKind.REJECTED in c.events, "partial": EventKind.PARTIAL in c.events,
            "check_stage": stage, "check_status": status, "check_introduced": introduced,
            "outcome": c.outcome, "grade": c.grade(settings.survival_threshold),
            "survival_at": c.survival[0] if c.survival else None,
            "survival_share": c.survival[1] if c.survival else None,
            "revision": c.revisions[-1][1] if c.revisions else None,
        }


_BUILDERS: dict[str, Callable[[list[_Candidate], DatasetSettings], Iterator[Row]]] = {
    "kto": _kto, "dpo": _dpo, "sft": _sft, "events": _events,
}


def _masked(row: Row) -> bool:
    """Whether redaction masked part of what a row trains the model to write (it would learn
    to write ``<REDACTED>``): such rows are left out of KTO, DPO and SFT."""
    return any(PLACEHOLDER in str(row.get(k) or "") for k in ("completion", "chosen", "rejected"))


def redact_row(row: Row) -> Row:
    """``row`` with every string value through ``redact()``, the context's texts too."""
    out: dict[str, Any] = {k: redact(v) if isinstance(v, str) else v for k, v in row.items()}
    if out.get("context"):
        out["context"] = [{**chunk, "text": redact(chunk["text"])} for chunk in out["context"]]
    return out


def dedupe(rows: Iterable[Row], key: tuple[str, ...]) -> list[Row]:
    """The first row of each distinct ``key`` tuple, in order."""
    seen: set[tuple[Any, ...]] = set()
    out = []
    for row in rows:
        k = tuple(json.dumps(row[name]) if isinstance(row[name], list) else row[name]
                  for name in key)
        if k not in seen:
            seen.add(k)
            out.append(row)
    return out


def to_dataset(rows: list[Row], kind: str) -> Dataset:
    """Rows as a Dataset with the kind's features (its columns kept when there are no rows)."""
    features = FEATURES[kind]
    # rows made before a request's context was recorded (or by hand) have none
    return Dataset.from_dict({k: [row[k] if k != "context" else row.get(k) or []
                                  for row in rows] for k in features}, features=features)


def build(store: Store, selection: Selection, settings: DatasetSettings) -> DatasetDict:
    """The ``selection.kind`` dataset from ``store``, split by file into train and test."""
    candidates = _load(store, selection)
    kind = selection.kind
    rows = dedupe((r for r in (redact_row(r) for r in _BUILDERS[kind](candidates, settings))
                   if kind == "events" or not _masked(r)), _DEDUPE_KEYS[kind])
    splits: dict[str, list[Row]] = {s: [] for s in SPLITS}
    for row in rows:
        splits[split_of(row["file"], settings.held_out)].append(row)
    return DatasetDict({s: to_dataset(r, kind) for s, r in splits.items()})


# -- summary ------------------------------------------------------------------------------------

def kind_of(dataset_dict: DatasetDict) -> str:
    """The kind of a built dataset, from its columns."""
    columns = set(next(iter(dataset_dict.values())).column_names) if dataset_dict else set()
    for kind in ("events", "kto", "dpo", "sft"):
        if set(FEATURES[kind]) <= columns:
            return kind
    raise ValueError(f"not a compilot dataset (columns {sorted(columns)})")


def _counts(values: Iterable[Any], names: dict[Any, str] | None = None) -> dict[str, int]:
    counter = Counter((names or {}).get(v, str(v)) for v in values)
    return dict(sorted(counter.items()))


def _iso(t: float) -> str:
    return datetime.fromtimestamp(t, UTC).isoformat(timespec="seconds")


def summary(dataset_dict: DatasetDict) -> dict[str, Any]:
    """Rows per split, by label (KTO) or source, by language and adapter; time range; balance."""
    kind = kind_of(dataset_dict)
    by = [c for c in ("label", "source", "outcome", "grade", "origin", "language", "adapter")
          if c in FEATURES[kind]]
    names: dict[Any, str] = {True: "desirable", False: "undesirable", None: "none"}
    grade_names: dict[Any, str] = {int(g): g.label for g in Grade} | {None: "none"}
    columns = {c: [v for ds in dataset_dict.values() for v in ds[c]] for c in by}
    out: dict[str, Any] = {
        "kind": kind,
        "rows": sum(len(ds) for ds in dataset_dict.values()),
        "splits": {s: {"rows": len(ds), "files": len(set(ds["file"])),
                       **{f"by_{c}": _counts(ds[c], names) for c in by[:2]}}
                   for s, ds in dataset_dict.items()},
        **{f"by_{c}": _counts(columns[c], grade_names if c == "grade" else names)
           for c in by},
    }
    times = [t for ds in dataset_dict.values() for t in ds["created_at"]]
    out["time_range"] = {"from": _iso(min(times)), "to": _iso(max(times))} if times else None
    if kind == "kto":
        out["balance"] = kto_balance(dataset_dict.get("train", []))
    return out


def kto_balance(train: Any) -> dict[str, Any]:
    """Desirable:undesirable counts and KTO weights that make them weigh the same.

    KTO (Ethayarajh et al. 2024, section 4.2) wants desirable_weight * n_D / (undesirable_weight
    * n_U) in [1, 4/3]; these weights make it 1 (trl KTOConfig desirable_weight and
    undesirable_weight).
    """
    labels = list(train["label"]) if len(train) else []
    d, u = labels.count(True), labels.count(False)
    out: dict[str, Any] = {"desirable": d, "undesirable": u,
                           "ratio": round(d / u, 4) if u else None}
    if d and u:
        out["desirable_weight"] = round(max(1.0, u / d), 4)
        out["undesirable_weight"] = round(max(1.0, d / u), 4)
    return out
