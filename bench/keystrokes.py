"""What the user feels: typing replayed through `compilot serve` over LSP, as an editor sends it.

Real files (standard-library modules with two short function bodies): each is opened with both
bodies missing and the cursor put at the first (the client tells the server, which warms the
window there); after ``--read-ms`` the first body is typed character by character at a human
pace, then the cursor moves to the second function (told likewise) and, after ``--read-ms``,
its body is typed. Every keystroke is a didChange; a request (inlineCompletion) follows only
where the typist pauses for at least the client's debounce (the VS Code extension waits 200
ms, the Neovim plugin 150): between the letters of a word the typist does not pause, after a
word or a symbol it does. When the top suggestion is what the typist was about to type, Tab
accepts it (the item's command, then the text inserted as VS Code inserts it) and typing goes
on after it.

Per request it reports the time from the request to the answer (the debounce comes before it;
add it for the time from the keystroke), split into the first request after opening a file,
the first after moving to another function, the first after an accept, and the keystrokes
while typing: p50 / p95, the share answered with a suggestion within 300 ms, and where the
answer came from (the model, the cache, typed through an earlier suggestion), and where its
tokens went (p50: evaluated by the warm-up before it, evaluated and reused by the request,
generated). Side by side in
the same run, for every request the model answered, a direct llama-cpp-python call on the very
token ids the server evaluated, generating as many tokens as the server did: the floor.

The replay waits for each answer before the next key (an editor cancels a request that a key
overtakes; a request's time is measured whole here instead), so the figures are per request.

    .venv/bin/python bench/keystrokes.py [--files 10] [--keys 60] [--interval-ms 120]
                                         [--pause-ms 500] [--debounce-ms 200] [--read-ms 1000]
                                         [--alternatives later|with] [--json out.json]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import sysconfig
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lsprotocol import types
from pygls.lsp.client import LanguageClient

from compilot.lsp_client import command, inline, start_server, stop
from compilot.models import embedded_model_path
from compilot.settings import ModelSettings
from compilot.training.bodies import bodies

WITHIN_MS = 300.0
KINDS = ("open", "move", "accept", "keystroke")


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))] if ordered else 0.0


@dataclass
class Session:
    """One file: its text with two bodies taken out, and the bodies to type."""

    path: Path
    text: str
    """The file without either body (what is opened)."""
    first: int
    """Where the first body goes in ``text``."""
    second: int
    """Where the second body goes in ``text`` (before anything is typed)."""
    bodies: tuple[str, str]


def sessions(count: int, seed: int, max_chars: int = 40_000) -> list[Session]:
    """``count`` standard-library files with two 2-12 line bodies, drawn by ``seed``."""
    files = sorted(Path(sysconfig.get_paths()["stdlib"]).glob("*.py"))
    random.Random(seed).shuffle(files)
    out = []
    for path in files:
        source = path.read_text(errors="replace")
        if len(source) > max_chars:
            continue
        holes = bodies(source, "python", str(path)) or []
        if len(holes) < 2:
            continue
        a, b = holes[0], holes[len(holes) // 2]
        a_start, b_start = len(a.prefix), len(b.prefix)
        a_end, b_end = a_start + len(a.reference), b_start + len(b.reference)
        if a_end > b_start or not a.reference.strip() or not b.reference.strip():
            continue
        text = source[:a_start] + source[a_end:b_start] + source[b_end:]
        out.append(Session(path, text, a_start, b_start - len(a.reference),
                           (a.reference, b.reference)))
        if len(out) == count:
            break
    return out


def position(text: str) -> types.Position:
    lines = text.split("\n")
    return types.Position(line=len(lines) - 1,
                          character=len(lines[-1].encode("utf-16-le")) // 2)


@dataclass
class Figures:
    """What one run measured."""

    ms: dict[str, list[float]] = field(default_factory=lambda: {k: [] for k in KINDS})
    shown: dict[str, list[bool]] = field(default_factory=lambda: {k: [] for k in KINDS})
    sources: dict[str, int] = field(default_factory=dict)
    direct_ms: list[float] = field(default_factory=list)
    model_ms: list[float] = field(default_factory=list)
    keystrokes: int = 0
    accepted: int = 0
    late: int = 0
    """Answers that came after the typist's next key would have (an editor would cancel)."""
    tokens: dict[str, list[dict[str, int]]] = field(
        default_factory=lambda: {k: [] for k in KINDS})
    """Per request: prompt tokens the warm-up evaluated since the previous answer, the tokens
    the request itself evaluated and reused, and those it generated (where a first request's
    time goes)."""


class Replay:
    """The typist, the editor and the floor."""

    def __init__(self, client: LanguageClient, args: argparse.Namespace, direct: Any) -> None:
        self.client, self.args, self.direct = client, args, direct
        self.figures = Figures()
        self.version = 0
        self.warmed = 0  # the engine's warmed_tokens after the last answer

    async def stats(self) -> dict[str, Any]:
        result: dict[str, Any] = await command(self.client, "compilot.stats", {"prompt": True})
        return result

    async def ask(self, uri: str, text: str, kind: str, gap_ms: float
                  ) -> types.InlineCompletionItem | None:
        """A request at the end of ``text`` (the cursor), after the debounce."""
        await asyncio.sleep(self.args.debounce_ms / 1000)
        before = await self.stats()
        at = position(text)
        t0 = time.perf_counter()
        answer = await inline(self.client, uri, at.line, at.character)
        ms = (time.perf_counter() - t0) * 1000
        after = await self.stats()
        f = self.figures
        f.ms[kind].append(ms)
        f.shown[kind].append(bool(answer.items))
        f.late += ms > gap_ms - self.args.debounce_ms
        service = {k: after["service"][k] - before["service"][k]
                   for k in ("typed_through", "cache_hits")}
        engine = {k: after["engine"][k] - before["engine"][k]
                  for k in ("generated_tokens", "prompt_tokens", "reused_tokens")}
        generated = engine["generated_tokens"]
        f.tokens[kind].append({"warmed": after["engine"]["warmed_tokens"] - self.warmed,
                               "evaluated": engine["prompt_tokens"],
                               "reused": engine["reused_tokens"], "generated": generated})
        self.warmed = after["engine"]["warmed_tokens"]
        source = ("typed" if service["typed_through"] else "cache" if service["cache_hits"]
                  else "model" if generated else "none")
        f.sources[source] = f.sources.get(source, 0) + 1
        if source == "model":
            f.model_ms.append(ms)
            t1 = time.perf_counter()
            self.direct.create_completion(after["last_prompt"], max_tokens=generated,
                                          temperature=0)
            f.direct_ms.append((time.perf_counter() - t1) * 1000)
        return answer.items[0] if answer.items else None

    def change(self, uri: str, at: str, inserted: str) -> None:
        self.version += 1
        here = position(at)
        self.client.text_document_did_change(types.DidChangeTextDocumentParams(
            text_document=types.VersionedTextDocumentIdentifier(uri=uri, version=self.version),
            content_changes=[types.TextDocumentContentChangePartial(
                range=types.Range(start=here, end=here), text=inserted)]))

    def tell_cursor(self, uri: str, text: str, method: str) -> None:
        """What the clients send when the cursor comes to rest (VS Code: ``didFocus`` when an
        editor gets the focus, ``compilot/didMoveCursor`` after 300 ms at rest on another
        line; Neovim likewise): the server warms the window there."""
        at = position(text)
        self.client.protocol.notify(method, {"textDocument": {"uri": uri}, "position": {
            "line": at.line, "character": at.character}})

    async def type_body(self, uri: str, text: str, at: int, body: str, kind: str) -> str:
        """Type ``body`` into ``text`` at ``at``; returns the text afterwards."""
        gap = self.args.pause_ms
        self.tell_cursor(uri, text[:at], "textDocument/didFocus" if kind == "open"
                         else "compilot/didMoveCursor")
        # the typist reads before typing (less the debounce, which ask() waits)
        await asyncio.sleep(max(0.0, self.args.read_ms - self.args.debounce_ms) / 1000)
        item = await self.ask(uri, text[:at], kind, gap)
        typed = 0
        limit = min(len(body), self.args.keys)
        while typed < limit:
            rest = body[typed:]
            if item is not None and isinstance(item.insert_text, str) and item.insert_text \
                    and rest.startswith(item.insert_text):
                # Tab: what was suggested is what comes next
                if item.command is not None:
                    await command(self.client, item.command.command,
                                  *(item.command.arguments or []))
                self.change(uri, text[:at], item.insert_text)
                text = text[:at] + item.insert_text + text[at:]
                at += len(item.insert_text)
                typed += len(item.insert_text)
                self.figures.accepted += 1
                item = await self.ask(uri, text[:at], "accept", gap)
                continue
            char = rest[0]
            self.change(uri, text[:at], char)
            text = text[:at] + char + text[at:]
            at += 1
            typed += 1
            self.figures.keystrokes += 1
            pauses = not (char.isalnum() or char == "_") or typed == limit
            gap = self.args.pause_ms if pauses else self.args.interval_ms
            if gap >= self.args.debounce_ms:
                item = await self.ask(uri, text[:at], "keystroke", gap)
            else:
                item = None
                await asyncio.sleep(gap / 1000)
        return text

    async def run(self, session: Session, data_dir: str, number: int) -> None:
        uri = Path(data_dir, f"s{number}_{session.path.name}").as_uri()
        self.version = 1
        self.client.text_document_did_open(types.DidOpenTextDocumentParams(
            text_document=types.TextDocumentItem(uri=uri, language_id="python", version=1,
                                                 text=session.text)))
        first, second = session.bodies
        text = await self.type_body(uri, session.text, session.first, first, "open")
        moved = session.second + (len(text) - len(session.text))
        await self.type_body(uri, text, moved, second, "move")
        self.client.text_document_did_close(types.DidCloseTextDocumentParams(
            text_document=types.TextDocumentIdentifier(uri=uri)))


async def warm_up(client: LanguageClient, data_dir: str) -> None:
    """One request on a file of its own, not counted: the model loads (and its pages fault
    in) once per server, not once per file."""
    uri = Path(data_dir, "warm.py").as_uri()
    text = "def add(a, b):\n    "
    client.text_document_did_open(types.DidOpenTextDocumentParams(
        text_document=types.TextDocumentItem(uri=uri, language_id="python", version=1,
                                             text=text)))
    await inline(client, uri, 1, 4)
    client.text_document_did_close(types.DidCloseTextDocumentParams(
        text_document=types.TextDocumentIdentifier(uri=uri)))


def summary(f: Figures, args: argparse.Namespace) -> dict[str, Any]:
    out: dict[str, Any] = {"settings": {k: getattr(args, k) for k in (
        "files", "keys", "interval_ms", "pause_ms", "debounce_ms", "read_ms", "candidates",
        "context", "alternatives",
        "max_tokens", "prefix_chars")}, "keystrokes": f.keystrokes, "accepted": f.accepted,
        "late": f.late, "sources": f.sources}
    for kind in KINDS:
        ms, shown = f.ms[kind], f.shown[kind]
        within = sum(s and m <= WITHIN_MS for s, m in zip(shown, ms, strict=True))
        out[kind] = {"requests": len(ms), "p50_ms": round(pct(ms, .5), 1),
                     "p95_ms": round(pct(ms, .95), 1),
                     "shown": round(sum(shown) / len(shown), 3) if shown else None,
                     "shown_within_300ms": round(within / len(ms), 3) if ms else None,
                     "tokens_p50": {k: pct([t[k] for t in f.tokens[kind]], .5) for k in (
                         "warmed", "evaluated", "reused", "generated")}}
    ratios = [m / d for m, d in zip(f.model_ms, f.direct_ms, strict=True) if d > 0]
    out["floor"] = {"requests": len(f.direct_ms),
                    "direct_p50_ms": round(pct(f.direct_ms, .5), 1),
                    "direct_p95_ms": round(pct(f.direct_ms, .95), 1),
                    "server_p50_ms": round(pct(f.model_ms, .5), 1),
                    "server_p95_ms": round(pct(f.model_ms, .95), 1),
                    "ratio_p50": round(pct(ratios, .5), 3),
                    "over_1_10": sum(r > 1.10 for r in ratios)}
    return out


async def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--files", type=int, default=10)
    ap.add_argument("--keys", type=int, default=60, help="characters typed into each body")
    ap.add_argument("--interval-ms", type=float, default=120.0,
                    help="between the keys of a word")
    ap.add_argument("--pause-ms", type=float, default=500.0,
                    help="after a word, a symbol or a line")
    ap.add_argument("--debounce-ms", type=float, default=200.0)
    ap.add_argument("--read-ms", type=float, default=1000.0,
                    help="from the cursor's arrival (a file opened, another function) to the "
                         "first request there: the typist reads; the server warms up")
    ap.add_argument("--candidates", type=int, default=None, help="default: the setting's")
    ap.add_argument("--max-tokens", type=int, default=None, help="default: the setting's")
    ap.add_argument("--prefix-chars", type=int, default=None, help="default: the setting's")
    ap.add_argument("--context", choices=("on", "off"), default=None,
                    help="other files' chunks in the prompt (context.enabled and, for the "
                         "embedded model, context.as_comments); default: the settings'")
    ap.add_argument("--alternatives", choices=("later", "with"), default=None,
                    help="a request's sampled candidates decoded after its answer, or with "
                         "its greedy one (completion.alternativesLater); default: the "
                         "settings'")
    ap.add_argument("--seed", type=int, default=4)
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args()
    import llama_cpp

    data_dir = tempfile.mkdtemp(prefix="compilot-typing-")
    options: dict[str, Any] = {"completion": {
        k: v for k, v in (("candidates", args.candidates), ("maxTokens", args.max_tokens),
                          ("prefixChars", args.prefix_chars))
        if v is not None}}
    if args.alternatives is not None:
        options["completion"]["alternativesLater"] = args.alternatives == "later"
    if args.context is not None:  # the embedded model takes chunks as comments only
        options["context"] = {"enabled": args.context == "on",
                              "asComments": args.context == "on"}
    client = await start_server(options, env={
        **os.environ, "COMPILOT_DATA_DIR": data_dir,
        "COMPILOT_CONFIG": str(Path(data_dir) / "none.toml")})
    try:
        threads = (await command(client, "compilot.stats")).get("threads") or os.cpu_count()
        model = ModelSettings()
        direct = llama_cpp.Llama(model_path=str(embedded_model_path()), n_ctx=model.n_ctx,
                                 n_batch=model.n_batch, n_threads=threads, verbose=False)
        replay = Replay(client, args, direct)
        await warm_up(client, data_dir)
        direct.create_completion("def f():", max_tokens=4, temperature=0)
        for number, session in enumerate(sessions(args.files, args.seed)):
            await replay.run(session, data_dir, number)
            print(f"\r{number + 1}/{args.files} files", end="", flush=True)
        print()
    finally:
        await stop(client)
    result = summary(replay.figures, args)
    print(f"{result['keystrokes']} keystrokes, {result['accepted']} accepted with Tab, "
          f"answers from {result['sources']}; {result['late']} answers later than the next key")
    for kind in KINDS:
        r = result[kind]
        print(f"{kind:<10} requests {r['requests']:4d}  p50 {r['p50_ms']:7.1f} ms  p95 "
              f"{r['p95_ms']:7.1f} ms  with a suggestion {r['shown']}  shown within 300 ms "
              f"{r['shown_within_300ms']}")
        t = r["tokens_p50"]
        print(f"{'':<10} tokens p50: warmed before {t['warmed']:.0f}, evaluated "
              f"{t['evaluated']:.0f}, reused {t['reused']:.0f}, generated {t['generated']:.0f}")
    fl = result["floor"]
    print(f"model answers {fl['requests']}: server p50 {fl['server_p50_ms']} / p95 "
          f"{fl['server_p95_ms']} ms, direct llama-cpp-python p50 {fl['direct_p50_ms']} / p95 "
          f"{fl['direct_p95_ms']} ms; server / direct p50 {fl['ratio_p50']}, "
          f"{fl['over_1_10']} over 1.10")
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    asyncio.run(main())
