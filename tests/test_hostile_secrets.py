"""Issue 12, findings 8 and 9: secrets typed into the editor, and files that are never recorded.

The server records the window around the cursor on every request, so a secret is seen being
typed: every prefix of it, unterminated. Each case below is typed one character at a time;
`redact()` is checked on every window the server would store, and a real completion service
types a sample of the prefixes into a real store, whose database and WAL bytes and every
export are searched for any nine characters of the secret. Each test failed before the fix.
"""

from __future__ import annotations

import asyncio
import base64
import json
import random
import sqlite3
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from compilot import settings as settings_mod
from compilot.feedback import dataset_export as fx
from compilot.feedback import datasets as fd
from compilot.feedback.blame import blame
from compilot.feedback.records import Candidate, Request, Trigger
from compilot.feedback.redact import PLACEHOLDER, redact
from compilot.feedback.store import Store
from compilot.paths import DataDir
from compilot.server.completion import CompletionService
from compilot.server.prompt import window
from compilot.settings import DatasetSettings
from tests.records import verdict

LEAK = 9
"""Any run of this many characters of a secret in what is stored counts as a leak."""

# Fake secrets in their issuers' shapes, assembled so that no scanner flags this file.
_rng = random.Random(12)
_ALNUM = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"


def _chars(n: int, alphabet: str = _ALNUM) -> str:
    return "".join(_rng.choice(alphabet) for _ in range(n))


PASSWORD = "correct horse battery staple"
AWS_ID = "AKIA" + "Q7XZ2M4P8R6T1V3W"
STRIPE = "sk_" + "live_" + _chars(24)
STRIPE_RK = "rk_" + "live_" + _chars(24)
STRIPE_PK = "pk_" + "live_" + _chars(24)
STRIPE_TEST = "sk_" + "test_" + _chars(24)
AZURE_KEY = base64.b64encode(_rng.randbytes(64)).decode()
ENV_HEX = _chars(32, "0123456789abcdef")
GITHUB = "ghp_" + _chars(36)
JWT = ("eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9." + "eyJzdWIiOiIxMjM0NTY3ODkwIn0."
       + _chars(43, _ALNUM + "-_"))
SLACK = "xoxb-" + "1234567890-0987654321-" + _chars(24)
OPENAI = "sk-" + "proj-" + _chars(40, _ALNUM + "-_")
GOOGLE = "AIza" + _chars(35, _ALNUM + "-_")
DB_PASSWORD = "Tr0ub4dor-and-3"
PEM_LINES = [base64.b64encode(_rng.randbytes(48)).decode() for _ in range(50)]
PEM_BODY = "\n".join(PEM_LINES)
BEGIN, END = "-----BEGIN RSA PRIVATE KEY-----\n", "\n-----END RSA PRIVATE KEY-----\n"


@dataclass(frozen=True)
class Typed:
    """A document typed one character at a time through ``secret``."""

    before: str
    secret: str
    after: str = "\n"
    language: str = "python"
    file: str = "app.py"
    also: tuple[str, ...] = ()
    """Secret lines already in the document before the typing starts."""

    def document(self, typed: int) -> str:
        """The document once ``typed`` characters of the secret are in."""
        return self.before + self.secret[:typed] + self.after

    def offset(self, typed: int) -> int:
        """The cursor, just after the last character typed."""
        return len(self.before) + typed

    @property
    def secrets(self) -> list[str]:
        """What must never be stored: the secret, line by line."""
        return [s for s in (*self.secret.splitlines(), *self.also) if len(s) >= LEAK]


CASES = [
    pytest.param(Typed('db_password = "', PASSWORD, "\n\nconnect()\n"), id="password"),
    pytest.param(Typed('db_password = "', PASSWORD, '"\n'), id="password-auto-closed"),
    pytest.param(Typed("# rotate ", AWS_ID), id="aws-key-id-comment"),
    pytest.param(Typed('boto3.client("s3", aws_access_key_id="', AWS_ID, '")\n'),
                 id="aws-key-id-argument"),
    pytest.param(Typed('import stripe\nstripe.api_key = "', STRIPE), id="stripe-sk-live"),
    pytest.param(Typed("const restricted = '", STRIPE_RK, "';\n", "javascript", "pay.js"),
                 id="stripe-rk-live"),
    pytest.param(Typed("PUBLISHABLE = '", STRIPE_PK), id="stripe-pk-live"),
    pytest.param(Typed("# test against ", STRIPE_TEST), id="stripe-sk-test-comment"),
    pytest.param(Typed('conn = "DefaultEndpointsProtocol=https;AccountName=acme;AccountKey=',
                       AZURE_KEY, ';EndpointSuffix=core.windows.net"\n'), id="azure"),
    pytest.param(Typed("DEBUG=1\nAPI_KEY=", ENV_HEX, "\nREGION=eu\n", "shellscript",
                       "env.sh"), id="env-api-key"),
    pytest.param(Typed("API_KEY=", ENV_HEX, "\n", "plaintext", "app.env.txt"),
                 id="env-api-key-first-line"),
    pytest.param(Typed("[db]\npassword = ", DB_PASSWORD, "\n", "ini", "db.ini"),
                 id="ini-password"),
    pytest.param(Typed('url = "postgres://bob:', DB_PASSWORD, '@db.internal/app"\n'),
                 id="url-credentials"),
    pytest.param(Typed('GH = "', GITHUB), id="github"),
    pytest.param(Typed("auth = '", JWT), id="jwt"),
    pytest.param(Typed("SLACK = '", SLACK), id="slack"),
    pytest.param(Typed("client = OpenAI(api_key='", OPENAI, "')\n"), id="openai"),
    pytest.param(Typed("maps = '", GOOGLE), id="google"),
    pytest.param(Typed(BEGIN + "\n".join(PEM_LINES[:30]) + "\n", "\n".join(PEM_LINES[30:]),
                       END, "plaintext", "notes.txt", tuple(PEM_LINES[:30])),
                 id="pem-begin-outside-window"),
]


def leaks(stored: str | bytes, secrets: list[str]) -> list[str]:
    """The ``LEAK``-character runs of ``secrets`` that ``stored`` holds."""
    found = []
    for secret in secrets:
        for start in range(len(secret) - LEAK + 1):
            run = secret[start:start + LEAK]
            if (run.encode() if isinstance(stored, bytes) else run) in stored:
                found.append(run)
                break
    return found


# -- redact(), on every window the server would store -----------------------------------------

WINDOWS = [(3000, 1000), (1000, 200)]  # the default window, and the service's below


def _steps(case: Typed) -> range | list[int]:
    if "\n" not in case.secret:
        return range(len(case.secret) + 1)
    # A key body: every character of its first lines and its last, each line's start.
    starts = [i + 1 for i, ch in enumerate(case.secret) if ch == "\n"]
    every = [*range(0, 200), *range(len(case.secret) - 140, len(case.secret) + 1)]
    return sorted({*every, *(s + k for s in starts for k in (0, 1, 9, 30, 63))})


@pytest.mark.parametrize("case", CASES)
def test_every_prefix_of_a_typed_secret_is_redacted(case: Typed) -> None:
    """Was: an unterminated password, an AWS key id minus its last character, Stripe keys, an
    Azure AccountKey, a `.env` value and a PEM body without its BEGIN line were stored."""
    for typed in _steps(case):
        document, offset = case.document(typed), case.offset(typed)
        for prefix_chars, suffix_chars in WINDOWS:
            win = window(document, offset, prefix_chars=prefix_chars, suffix_chars=suffix_chars)
            stored = redact(win.prefix) + "\n" + redact(win.suffix)
            assert not leaks(stored, case.secrets), (typed, stored[-300:])
            if typed >= LEAK and "\n" not in case.secret:
                assert PLACEHOLDER in stored, (typed, stored[-300:])


def test_editing_inside_a_key_whose_begin_line_is_above_the_window() -> None:
    """The suffix holds the rest of the body and its END line, the prefix neither header."""
    document = "notes\n" + BEGIN + PEM_BODY + END
    starts = [i for i, ch in enumerate(document) if ch == "\n"]
    for offset in starts[5:] + [starts[20] + 17, starts[40] + 40]:
        win = window(document, offset, prefix_chars=1000, suffix_chars=1000)
        stored = redact(win.prefix) + "\n" + redact(win.suffix)
        assert not leaks(stored, PEM_LINES), (offset, stored)


@pytest.mark.parametrize("text", [
    pytest.param("token = tokens[0]", id="index"),
    pytest.param("password = get_password()", id="call"),
    pytest.param('key = "name"', id="short-key"),
    pytest.param("for key in d:\n    print(key, d[key])", id="loop"),
    pytest.param("def login(user, password):\n    return check(user, password)", id="params"),
    pytest.param("if not token:\n    raise ValueError('no token')", id="condition"),
    pytest.param("api_key: str | None = None", id="annotation"),
    pytest.param("    password: str\n    token: Optional[str] = None", id="fields"),
    pytest.param('headers = {"Authorization": f"Bearer {token}"}', id="bearer-template"),
    pytest.param("secret_key = os.environ['SECRET_KEY']", id="environ"),
    pytest.param("token = jwt.encode(payload, key, algorithm='HS256')", id="jwt-encode"),
    pytest.param("max_tokens = 64\ntokenizer = AutoTokenizer.from_pretrained(name)",
                 id="tokens"),
    pytest.param("connect(\n    host=host,\n    password=password,\n)", id="keyword-args"),
    pytest.param("    Args:\n        token: The API token to send.\n", id="docstring"),
    pytest.param("KEY_LENGTH = 32\nprimary_key = True", id="key-constants"),
    pytest.param("items.sort(key=lambda kv: kv[1])", id="sort-key"),
    pytest.param("url = 'https://example.com:8080/path'", id="url-with-port"),
    pytest.param("ASIA_REGIONS = ['ap-south-1']", id="asia"),
    pytest.param("sha = 'da39a3ee5e6b4b0d3255bfef95601890afd80709'", id="hex-digest"),
    pytest.param("name = 'configuration_settings_file'", id="low-entropy-literal"),
    pytest.param("token_count = len(tokens)\nsecrets = load_secrets()", id="plural"),
    # Masked before: names about a token or a secret, not holding one.
    pytest.param('token_type = "bearer"\ntokenizer_class = "AutoTokenizer"', id="token-type"),
    pytest.param('"decoder.embed_tokens.weight": "shared.weight",', id="embed-tokens"),
    pytest.param('pad_token = "[PAD]"\nbos_token: str = "<BOS_TOKEN>"', id="special-tokens"),
    pytest.param('password_file = "/run/secrets/db"', id="password-file"),
    pytest.param('print("Password: " + prompt)', id="prompt-string"),
])
def test_ordinary_code_is_left_alone(text: str) -> None:
    """Was: the names in the last cases had their values masked; the others are guards."""
    assert redact(text) == text


def test_diagnostics_stay_valid_json() -> None:
    """A diagnostic that quotes an unterminated assignment: masked up to its line's end, never
    past the end of the JSON string that holds it."""
    diagnostics = [{"line": 2, "column": 14, "message": f'bad: password = "{PASSWORD}\n  ^'},
                   {"line": 3, "column": 0, "message": "keep me"}]
    stored = redact(json.dumps(diagnostics))
    assert json.loads(stored)[1] == diagnostics[1]
    assert not leaks(stored, [PASSWORD])


# -- a real service typing into a real store ----------------------------------------------------

@dataclass
class Recorded:
    """What the service wrote, read before the store was closed."""

    store: Store
    database: bytes
    texts: str
    """Every text column of every table, as SQLite returns them."""
    ignored_requests: int


def _sampled(case: Typed) -> list[int]:
    if "\n" in case.secret:
        return [len(case.secret) - 40, len(case.secret) - 1, len(case.secret)]
    return sorted({LEAK, len(case.secret) // 2, len(case.secret) - 1, len(case.secret)})


def _flush(store: Store) -> None:
    """Wait for writes in flight, where the store writes on a thread of its own."""
    flush = getattr(store, "flush", None)
    if callable(flush):
        flush()


def _read_bytes(store: Store) -> bytes:
    _flush(store)
    return b"".join(Path(f"{store.path}{side}").read_bytes()
                    for side in ("", "-wal") if Path(f"{store.path}{side}").exists())


def _texts(store: Store) -> str:
    parts = []
    for table in ("requests", "candidates", "checks", "survival", "revisions"):
        for row in store.query(f"SELECT * FROM {table}"):
            parts += [str(v) for v in tuple(row)]
    return "\n".join(parts)


def _record_checks_and_survival(store: Store, project: Path) -> None:
    """An accepted completion with a key typed into it, and compilers quoting a key."""
    cid = "accepted-1"
    store.record_request(
        Request(id="r-accepted", uri=(project / "pay.py").as_uri(), language="python",
                line=1, character=0, prefix="import stripe\n", suffix="\n", latency_ms=1.0,
                model="m", adapter="base", source="model"),
        [Candidate(id=cid, text='stripe.api_key = ""', raw='stripe.api_key = ""',
                   tokens=4, logprob=-0.1, parsed=True)])
    for typed in (LEAK, 20, len(STRIPE)):
        store.record_survival(cid, at="30s", share=1.0,
                              text=f'stripe.api_key = "{STRIPE[:typed]}"')
    store.record_survival(cid, at="2m", share=1.0, text=f'db_password = "{PASSWORD[:20]}')
    # Real checks whose diagnostics quote the key: pyflakes' undefined name, gcc's undeclared.
    python = blame("import stripe\n", f"import stripe\nstripe.api_key = {STRIPE}\n", "python")
    c = blame("int main(void) {\n  return 0;\n}\n",
              f"int main(void) {{\n  return {STRIPE_RK};\n}}\n", "c")
    for check in (python, c):
        assert check.diagnostics(), check
        store.record_check(cid, check, Trigger.ACCEPT)
    assert STRIPE in json.dumps(python.diagnostics())  # the compiler did quote it


@pytest.fixture(scope="module")
def recorded(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Recorded]:
    """The completion service on the embedded model, typing every case into a store."""
    root = tmp_path_factory.mktemp("typed")
    settings, _ = settings_mod.load(
        {"completion": {"maxTokens": 4, "candidates": 1, "prefixChars": 1000,
                        "suffixChars": 200}}, path=root / "none.toml")
    store = Store.in_dir(DataDir(root / "data"))
    service = CompletionService(settings, store=store)
    service.load().result()
    assert service.engine is not None, service.engine_error
    project = root / "proj"
    project.mkdir()

    async def type_all() -> int:
        for n, param in enumerate(CASES):
            case: Typed = param.values[0]  # type: ignore[assignment]
            uri = (project / f"{n}-{case.file}").as_uri()
            for typed in _sampled(case):
                await service.complete(uri, case.document(typed), case.offset(typed),
                                       language_id=case.language)
        _flush(store)
        before = store.counts()["requests"]
        line = f"API_KEY={ENV_HEX}\n"
        await service.complete((project / ".env").as_uri(), line, len(line) - 1,
                               language_id="plaintext")
        _flush(store)
        return store.counts()["requests"] - before

    ignored = asyncio.run(type_all())
    _record_checks_and_survival(store, project)
    yield Recorded(store, _read_bytes(store), _texts(store), ignored)
    service.close()


@pytest.mark.parametrize("case", CASES)
def test_typed_secrets_never_reach_the_database_or_its_wal(recorded: Recorded,
                                                          case: Typed) -> None:
    assert not leaks(recorded.database, case.secrets)
    assert not leaks(recorded.texts, case.secrets)


def test_keys_in_survival_text_and_diagnostics_are_redacted(recorded: Recorded) -> None:
    """Was: a key typed into an accepted completion, and pyflakes' `undefined name
    'sk_live_…'`, were stored as they were."""
    for secret in (STRIPE, STRIPE_RK, PASSWORD):
        assert not leaks(recorded.database, [secret])
        assert not leaks(recorded.texts, [secret])
    for row in recorded.store.query("SELECT diagnostics FROM checks"):
        assert PLACEHOLDER in json.loads(row["diagnostics"])[0]["message"]


def test_a_dotenv_file_is_not_recorded_by_default(recorded: Recorded) -> None:
    """Was: `.env` files were recorded (`logging.ignore` defaulted to nothing)."""
    assert recorded.ignored_requests == 0


# -- every export format --------------------------------------------------------------------------

def _old_rows(store: Store) -> None:
    """Rows as a store without this fix holds them: every secret written as typed."""
    for n, param in enumerate(CASES):
        case: Typed = param.values[0]  # type: ignore[assignment]
        rid, ok, bad = f"old-{n}", f"old-{n}-ok", f"old-{n}-bad"
        store.record_request(
            Request(id=rid, uri=f"file:///w/old{n}.py", language="python", line=1,
                    character=0, prefix="p", suffix="s", latency_ms=1.0, model="m",
                    adapter="base", source="model"),
            [Candidate(id=ok, text="x", raw="x", tokens=1, logprob=-0.1, parsed=True),
             Candidate(id=bad, text="y", raw="y", tokens=1, logprob=-0.9, parsed=False)])
        store.record_event(ok, "shown")
        store.record_event(ok, "accepted")
        store.record_check(ok, verdict("compile", "ok", introduced=False), Trigger.ACCEPT)
        store.record_survival(ok, at="30s", share=1.0, text="x")
        store.record_revision(bad, broken="y", fixed="z", status="ok")
    store.close()
    db = sqlite3.connect(store.path)
    for n, param in enumerate(CASES):
        case = param.values[0]  # type: ignore[assignment]
        typed = len(case.secret) - 1
        document, offset = case.document(typed), case.offset(typed)
        line = document[document.rfind("\n", 0, offset - 1) + 1:offset]
        db.execute("UPDATE requests SET prefix = ?, suffix = ? WHERE id = ?",
                   (document[:offset], document[offset:], f"old-{n}"))
        db.execute("UPDATE candidates SET text = ?, raw = ? WHERE request_id = ?",
                   (line, line, f"old-{n}"))
        if n % 2:  # the other half keep a clean revision: a DPO row with the secret in its
            # prompt only, which is trained on (a masked completion is not) and exported
            db.execute("UPDATE revisions SET broken = ?, fixed = ? WHERE candidate_id = ?",
                       (line, line + "x", f"old-{n}-bad"))
    db.commit()
    db.close()


@pytest.fixture(scope="module")
def exported(recorded: Recorded, tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    """Every kind in every format, from a copy of the recorded store plus old raw rows."""
    root = tmp_path_factory.mktemp("export")
    source, copy = sqlite3.connect(recorded.store.path), sqlite3.connect(root / "events.db")
    source.backup(copy)
    source.close()
    copy.close()
    _old_rows(Store(root / "events.db"))
    store = Store(root / "events.db")
    files = []
    settings = DatasetSettings(held_out=0.5, synthetic_negatives=False)
    for kind in fd.KINDS:
        built = fd.build(store, fd.Selection(kind=kind), settings)  # type: ignore[arg-type]
        assert sum(len(split) for split in built.values()) > 0, kind
        for fmt in fx.FORMATS:
            out = root / f"{kind}-{fmt}"
            fx.export(built, out, fmt=fmt)
            files += [p for p in out.rglob("*") if p.is_file()]
    store.close()
    return files


@pytest.mark.parametrize("case", CASES)
def test_no_export_holds_a_typed_secret(exported: list[Path], case: Typed) -> None:
    for path in exported:
        assert not leaks(path.read_bytes(), case.secrets), path
        if path.suffix == ".parquet":
            table = pq.read_table(path).to_pylist()
            assert not leaks(json.dumps(table, ensure_ascii=False), case.secrets), path


# -- ignore rules (finding 9) -----------------------------------------------------------------

@pytest.fixture
def project(tmp_path: Path) -> Path:
    """A project with a .compilotignore at its root and one below, symlinks into ignored
    folders, and beside it a folder without any."""
    root = tmp_path / "proj"
    for folder in ("secrets", "sub/deep", "vault", "keys/.ssh", "generated"):
        (root / folder).mkdir(parents=True)
    (root / ".compilotignore").write_text("# private\n/anchored.py\nsecrets/\n*.gen.py\n"
                                          "generated/*\n!generated/keep.py\n")
    (root / "sub" / ".compilotignore").write_text("/local.py\n")
    (root / "secrets" / "aws.py").write_text("x = 1\n")
    (root / "vault" / "token.py").write_text("x = 1\n")
    (root / "linked").symlink_to(root / "secrets", target_is_directory=True)
    (root / "vault-link").symlink_to(root / "vault", target_is_directory=True)
    (root / "innocent.py").symlink_to(root / "secrets" / "aws.py")
    plain = tmp_path / "plain"  # no .compilotignore: only the setting decides
    for folder in ("secrets", "sub/deep/secrets", "vault"):
        (plain / folder).mkdir(parents=True)
    (plain / "vault-link").symlink_to(plain / "vault", target_is_directory=True)
    return root


def _service(tmp_path: Path, ignore: list[str] | None) -> CompletionService:
    overrides = {} if ignore is None else {"logging": {"ignore": ignore}}
    settings, problems = settings_mod.load(overrides, path=tmp_path / "none.toml")
    assert not problems
    return CompletionService(settings, Store.in_dir(DataDir(tmp_path / "data")))


@pytest.mark.parametrize(("relative", "logged"), [
    pytest.param("anchored.py", False, id="anchored-at-its-folder"),
    pytest.param("sub/anchored.py", True, id="anchored-not-below"),
    pytest.param("sub/local.py", False, id="anchored-in-a-deeper-file"),
    pytest.param("local.py", True, id="deeper-file-does-not-reach-up"),
    pytest.param("secrets/aws.py", False, id="folder"),
    pytest.param("sub/deep/x.gen.py", False, id="glob-below"),
    pytest.param("generated/out.py", False, id="folder-contents"),
    pytest.param("generated/keep.py", True, id="negated"),
    pytest.param("linked/aws.py", False, id="symlinked-folder-into-ignored"),
    pytest.param("innocent.py", False, id="symlinked-file-into-ignored"),
    pytest.param("main.py", True, id="ordinary"),
])
def test_compilotignore_has_gitignore_semantics(tmp_path: Path, project: Path, relative: str,
                                                logged: bool) -> None:
    """Was: `/anchored.py` matched nothing, and a symlink into `secrets/` was recorded."""
    service = _service(tmp_path, [])
    try:
        assert service._logged((project / relative).as_uri()) is logged
    finally:
        service.close()


@pytest.mark.parametrize(("relative", "logged"), [
    pytest.param("secrets/aws.py", False, id="readme-example-secrets-star"),
    pytest.param("sub/deep/secrets/aws.py", False, id="secrets-star-deeper"),
    pytest.param("vault-link/token.py", False, id="symlinked-folder-into-ignored"),
    pytest.param("keys/prod.env", False, id="star-env"),
    pytest.param("secrets.py", True, id="a-file-named-like-the-folder"),
    pytest.param("main.py", True, id="ordinary"),
])
def test_setting_patterns_match_below_any_folder(tmp_path: Path, project: Path,
                                                 relative: str, logged: bool) -> None:
    """Was: `secrets/*` in `logging.ignore` never matched an absolute path."""
    service = _service(tmp_path, ["*.env", "secrets/*", "vault/"])
    try:
        assert service._logged((tmp_path / "plain" / relative).as_uri()) is logged
    finally:
        service.close()


@pytest.mark.parametrize(("relative", "logged"), [
    pytest.param(".env", False, id="dotenv"),
    pytest.param(".env.production", False, id="dotenv-variant"),
    pytest.param("deploy/prod.env", False, id="star-env"),
    pytest.param("certs/server.pem", False, id="pem"),
    pytest.param("certs/server.key", False, id="key"),
    pytest.param("certs/client.p12", False, id="p12"),
    pytest.param("id_rsa", False, id="ssh-key"),
    pytest.param("id_ed25519.pub", False, id="ssh-public-key"),
    pytest.param("keys/.ssh/config", False, id="ssh-folder"),
    pytest.param("home/.aws/credentials", False, id="aws-folder"),
    pytest.param(".netrc", False, id="netrc"),
    pytest.param(".pgpass", False, id="pgpass"),
    pytest.param(".npmrc", False, id="npmrc"),
    pytest.param("credentials.json", False, id="credentials"),
    pytest.param("infra/terraform.tfstate", False, id="tfstate"),
    pytest.param("main.py", True, id="ordinary"),
    pytest.param("id_utils.py", True, id="id-prefixed-module"),
    pytest.param("keys.py", True, id="keys-module"),
    pytest.param("environment.py", True, id="environment-module"),
    pytest.param("docs/pem-format.md", True, id="pem-in-a-name"),
])
def test_secret_files_are_ignored_by_default(tmp_path: Path, project: Path, relative: str,
                                             logged: bool) -> None:
    """Was: `logging.ignore` defaulted to nothing, so `.env` files were recorded."""
    service = _service(tmp_path, None)
    try:
        assert service._logged((project / relative).as_uri()) is logged
    finally:
        service.close()
