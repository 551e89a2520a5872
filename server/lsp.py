"""The language server: thin pygls handlers around the completion service."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sys
import threading
from dataclasses import asdict, replace
from datetime import date, datetime
from datetime import time as dtime
from pathlib import Path
from typing import Any, BinaryIO

from lsprotocol import types
from pygls.io_ import StdoutWriter
from pygls.lsp.server import LanguageServer

from compilot import __version__, pointer, round_lock
from compilot import settings as settings_mod
from compilot.feedback.labeller import Labeller
from compilot.feedback.monitor import Monitor
from compilot.feedback.queued_store import QueuedStore
from compilot.feedback.records import EventKind, Origin
from compilot.feedback.store import StoreError
from compilot.feedback.watcher import Watcher
from compilot.models import resolve_model_path
from compilot.paths import DataDir
from compilot.server import framing
from compilot.server.completion import Answer, CompletionService, uri_path
from compilot.server.positions import offset_at, position_of, selected_applied, word_before
from compilot.server.repair import Fix, Repairer
from compilot.thread_budget import ThreadBudget

log = logging.getLogger(__name__)

ACCEPTED = "compilot.accepted"
REJECTED = "compilot.rejected"
PARTIALLY_ACCEPTED = "compilot.partiallyAccepted"
STATUS = "compilot.status"
TRAIN = "compilot.train"
STATS = "compilot.stats"
SETTLE = "compilot.settle"
FIX_APPLIED = "compilot.fixApplied"
# Notifications of Copilot's language server, so that clients written for it work unchanged.
DID_SHOW = "textDocument/didShowCompletion"
DID_PARTIALLY_ACCEPT = "textDocument/didPartiallyAcceptCompletion"
DID_FOCUS = "textDocument/didFocus"
"""Copilot's notification that a document got the focus ({textDocument: {uri}}); compilot
also takes a ``position``, the cursor's."""
DID_MOVE_CURSOR = "compilot/didMoveCursor"
"""compilot's: the cursor rests at ``position`` in ``textDocument`` (clients send it after
the cursor has not moved for a moment)."""
TICK_SECONDS = 5.0


class CompilotServer(LanguageServer):
    """pygls server holding the settings and the completion service."""

    def __init__(self) -> None:
        super().__init__("compilot", __version__,
                         text_document_sync_kind=types.TextDocumentSyncKind.Incremental)
        self.settings, self.setting_problems = settings_mod.load()
        self.service: CompletionService | None = None
        self.monitor: Monitor | None = None
        self.watcher: Watcher | None = None
        self.adapters: Path | None = None
        self.budget: ThreadBudget | None = None
        self.labeller: Labeller | None = None
        self.repairer: Repairer | None = None
        self.flagged: set[str] = set()
        """Documents where compilot published diagnostics (broken completions with a fix)."""
        self._data: DataDir | None = None
        """The adapters folder whose `current` pointer the server follows."""
        self.loop: asyncio.AbstractEventLoop | None = None
        self._ticker: asyncio.Task[None] | None = None
        self.edited: set[str] = set()
        """Documents edited since they were last cut into the context ring."""
        self.last_uri: str | None = None
        """The document of the last completion request."""
        self.cursors: dict[str, types.Position] = {}
        """Where the cursor was last said to be, per document."""

    def start_io(self, stdin: BinaryIO | None = None, stdout: BinaryIO | None = None) -> None:
        """Serve over stdio with a reader that resynchronises after a bad frame (pygls' own
        goes deaf for good: ``compilot.server.framing``)."""
        self._stop_event = threading.Event()
        self.protocol.set_writer(StdoutWriter(stdout or sys.stdout.buffer))
        source = stdin or sys.stdin.buffer
        try:
            raw: BinaryIO = open(source.fileno(), "rb", buffering=0, closefd=False)  # noqa: SIM115
        except (OSError, AttributeError, ValueError):
            raw = source  # not a file (tests): read it as it is
        reader = framing.FrameReader(raw)
        try:
            asyncio.run(framing.serve(reader, self.protocol, self._stop_event))
        except BrokenPipeError:
            log.error("the client closed the connection; shutting down")
        except (KeyboardInterrupt, SystemExit):
            pass
        finally:
            self.shutdown()

    def tell(self, message: str, kind: types.MessageType = types.MessageType.Error) -> None:
        """Show ``message`` to the user, from any thread."""
        params = types.ShowMessageParams(type=kind, message=message)
        if self.loop is not None and self.loop.is_running():
            self.loop.call_soon_threadsafe(self.window_show_message, params)
        else:
            self.window_show_message(params)

    @property
    def data(self) -> DataDir:
        """The data dir of this session: the settings' when the service started (a change
        later takes effect at the next start; the store, the pointer, the locks and the
        reports stay in one place for the whole session)."""
        return self._data if self._data is not None else DataDir.of(self.settings)

    def start_service(self) -> CompletionService:
        """Start the store's writer and load the model (both on threads of their own)."""
        self._data = DataDir.of(self.settings)
        store = None
        if self.settings.logging.enabled:
            # Opened on the writer's thread: a locked, full or read-only store, or a damaged
            # one (moved aside), is told to the user from there, and completions go on.
            store = QueuedStore(self.data, recover=True,
                                on_error=lambda m: self.tell(m, types.MessageType.Warning))
        self.budget = ThreadBudget(self.settings.model.n_threads)
        self.labeller = (Labeller(store, self.settings.checks)
                         if store is not None and self.settings.checks.background else None)
        self.service = CompletionService(self.settings, store, on_error=self.tell,
                                         threads=self.budget, labeller=self.labeller)
        self.service.load()
        if self.settings.checks.repair:
            self.repairer = Repairer(self.service, self.settings.checks,
                                     on_ready=self._fixes_ready)
        self.monitor = Monitor(store, self.settings.checks,
                               on_broken=self.repairer.broken if self.repairer else None)
        try:
            self.watcher = Watcher(self._on_disk_change)
        except OSError as exc:  # inotify limits: follow editor events only
            log.warning("not watching files on disk: %s", exc)
        self.adapters = self.data.adapters
        self.adapters.mkdir(parents=True, exist_ok=True, mode=0o700)
        if self.watcher is not None:
            self.watcher.watch(self.adapters / pointer.POINTER)
        self.follow_pointer()
        if self.loop is not None:
            self._ticker = self.loop.create_task(self._tick())
        return self.service

    def follow_pointer(self) -> None:
        """Serve the adapter that the `current` pointer in the data dir names."""
        if self.service is None or self.adapters is None:
            return
        version = pointer.current(self.adapters)
        if version != self.service.adapter:
            self.service.use_adapter(version, pointer.adapter_gguf(self.adapters, version))

    async def _tick(self) -> None:
        """Survival checkpoints (30 s, 2 min, 10 min after acceptance)."""
        while True:
            await asyncio.sleep(TICK_SECONDS)
            if self.monitor is not None:
                self.monitor.tick()

    def _fixes_ready(self, uri: str) -> None:
        """From a repair thread: fixes of ``uri`` are ready; flag them in the editor."""
        if self.loop is not None:
            with contextlib.suppress(RuntimeError):  # the loop has ended
                self.loop.call_soon_threadsafe(self.flag, uri)

    def flag(self, uri: str) -> None:
        """Publish, for ``uri``, a diagnostic on each broken accepted completion that has a
        checked fix (where the editor shows the code action), and none once they are gone."""
        if self.repairer is None or uri not in self.workspace.text_documents:
            return
        text = self.workspace.get_text_document(uri).source
        diagnostics = []
        seen: set[int] = set()
        for fix in self.repairer.fixes(uri, text):
            if id(fix.region) in seen:
                continue
            seen.add(id(fix.region))
            diagnostics.append(types.Diagnostic(
                range=_range(text, fix.region.start, fix.region.end),
                message=f"this accepted completion does not compile: {fix.message} "
                        "(a fix the compiler has checked is ready: compilot: fix)",
                severity=types.DiagnosticSeverity.Information, source="compilot",
                code="broken-completion"))
        if not diagnostics and uri not in self.flagged:
            return
        if diagnostics:
            self.flagged.add(uri)
        else:
            self.flagged.discard(uri)
        self.text_document_publish_diagnostics(types.PublishDiagnosticsParams(
            uri=uri, diagnostics=diagnostics))

    def _on_disk_change(self, path: Path, text: str) -> None:
        """From watchdog's thread: a followed file or the adapter pointer changed on disk."""
        if self.loop is None:
            return
        if self.adapters is not None and path == (self.adapters / pointer.POINTER).resolve():
            self.loop.call_soon_threadsafe(self.follow_pointer)
        elif self.monitor is not None:
            self.loop.call_soon_threadsafe(self.monitor.disk_changed, path.as_uri(), text)


server = CompilotServer()


def _options(value: Any) -> dict[str, Any]:
    """Settings from initializationOptions / didChangeConfiguration: bare or under 'compilot'."""
    if not isinstance(value, dict):
        return {}
    inner = value.get("compilot")
    return inner if isinstance(inner, dict) else value


@server.feature(types.INITIALIZE)
def initialize(ls: CompilotServer, params: types.InitializeParams) -> None:
    """Merge initializationOptions into the settings."""
    ls.settings, problems = settings_mod.load(_options(params.initialization_options))
    ls.setting_problems += problems


@server.feature(types.INITIALIZED)
async def initialized(ls: CompilotServer, params: types.InitializedParams) -> None:
    """Start the service; report bad settings once."""
    ls.loop = asyncio.get_running_loop()
    for problem in ls.setting_problems:
        ls.tell(f"compilot settings: {problem} (the default is used)", types.MessageType.Warning)
    ls.start_service()


@server.feature(types.WORKSPACE_DID_CHANGE_CONFIGURATION)
def did_change_configuration(ls: CompilotServer,
                             params: types.DidChangeConfigurationParams) -> None:
    """Apply changed settings over the current ones."""
    options = _options(params.settings)
    if not options:
        return
    previous = ls.settings
    ls.settings, problems = settings_mod.load(options, base=previous)
    for problem in problems:
        ls.tell(f"compilot settings: {problem} (kept the previous value)",
                types.MessageType.Warning)
    if ls.service is not None and DataDir.of(ls.settings).root != ls.data.root:
        ls.tell(f"compilot settings: dataDir {DataDir.of(ls.settings).root} takes effect when "
                f"the server restarts; this session keeps {ls.data.root}",
                types.MessageType.Warning)
        ls.settings = replace(ls.settings, data_dir=previous.data_dir)
    if ls.service is not None:
        ls.service.reconfigure(ls.settings)


async def _answer(ls: CompilotServer, uri: str, position: types.Position,
                  selected: types.SelectedCompletionInfo | None = None,
                  invoked: bool = False) -> tuple[Answer, str, int] | None:
    """The service's answer, with the document text and cursor offset it was made for.
    ``selected``: the suggest widget's selected entry (LSP 3.18's ``selectedCompletionInfo``):
    the answer is for the document as it would be with that entry accepted, as Copilot
    answers (the text and offset returned are of that document); ``invoked``: the user asked
    (``CompletionService.complete``)."""
    if ls.service is None or uri not in ls.workspace.text_documents:
        return None
    document = ls.workspace.get_text_document(uri)
    text = document.source
    left = ls.last_uri
    if left is not None and left != uri and left in ls.edited:
        # the user left a document they edited: its new code is context for the others
        _context_file(ls, left)
    ls.last_uri = uri
    ls.cursors[uri] = position
    offset = offset_at(text, position.line, position.character)
    if offset is None:
        return None
    line, character = position.line, position.character
    if selected is not None:
        start = offset_at(text, selected.range.start.line, selected.range.start.character)
        end = offset_at(text, selected.range.end.line, selected.range.end.character)
        applied = (None if start is None or end is None
                   else selected_applied(text, offset, start, end, selected.text))
        if applied is None:
            return None
        text, offset = applied
        line, character = position_of(text, offset)
    answer = await ls.service.complete(uri, text, offset, line=line, character=character,
                                       language_id=document.language_id, invoked=invoked)
    return answer, text, offset


@server.feature(types.TEXT_DOCUMENT_INLINE_COMPLETION, types.InlineCompletionOptions())
async def inline_completion(ls: CompilotServer, params: types.InlineCompletionParams
                            ) -> types.InlineCompletionList:
    """Ranked candidates as ghost text; each carries the command that reports acceptance.

    With the suggest widget open (``context.selectedCompletionInfo``), VS Code shows only
    items that extend its selected entry over the same range: the candidates are made for the
    document with that entry accepted, and sent as the entry's text followed by theirs."""
    selected = params.context.selected_completion_info if params.context else None
    invoked = bool(params.context
                   and params.context.trigger_kind == types.InlineCompletionTriggerKind.Invoked)
    answered = await _answer(ls, params.text_document.uri, params.position, selected, invoked)
    if answered is None:
        return types.InlineCompletionList(items=[])
    answer = answered[0]
    at = types.Range(start=params.position, end=params.position)
    lead = ""
    if selected is not None:
        at, lead = selected.range, selected.text
    return types.InlineCompletionList(items=[
        types.InlineCompletionItem(
            insert_text=lead + item.text, range=at,
            command=types.Command(title="compilot: accepted", command=ACCEPTED,
                                  arguments=[item.id, {"parsed": item.parsed,
                                                       "logprob": item.logprob}]),
        )
        for item in answer.items
    ])


@server.feature(types.TEXT_DOCUMENT_COMPLETION, types.CompletionOptions(resolve_provider=False))
async def completion(ls: CompilotServer, params: types.CompletionParams
                     ) -> types.CompletionList:
    """The same candidates as completion items, for clients without inline completion."""
    answered = await _answer(ls, params.text_document.uri, params.position)
    if answered is None:
        return types.CompletionList(is_incomplete=True, items=[])
    answer, text, offset = answered
    word = word_before(text, offset)
    start = types.Position(line=params.position.line,
                           character=params.position.character - _utf16_len(word))
    items = []
    for rank, item in enumerate(answer.items):
        first_line = item.text.strip().split("\n", 1)[0]
        items.append(types.CompletionItem(
            label=(word + first_line)[:80] or item.text[:80],
            kind=types.CompletionItemKind.Text,
            detail="compilot" + ("" if item.parsed is not False else " (does not parse)"),
            documentation=types.MarkupContent(kind=types.MarkupKind.Markdown,
                                              value=f"```{answer.language}\n{word}{item.text}\n```"),
            sort_text=f"{rank:04d}",
            filter_text=word + item.text,
            insert_text_format=types.InsertTextFormat.PlainText,
            text_edit=types.TextEdit(range=types.Range(start=start, end=params.position),
                                     new_text=word + item.text),
            command=types.Command(title="compilot: accepted", command=ACCEPTED,
                                  arguments=[item.id]),
        ))
    return types.CompletionList(is_incomplete=True, items=items)


def _utf16_len(text: str) -> int:
    return len(text.encode("utf-16-le")) // 2


def _candidate_id(args: tuple[Any, ...]) -> str | None:
    if not args:
        return None
    first = args[0]
    if isinstance(first, dict):
        first = first.get("id")
    return first if isinstance(first, str) else None


@server.command(ACCEPTED)
def accepted(ls: CompilotServer, *args: Any) -> bool:
    """The user accepted a candidate (inline item or completion item): record it, check it
    (syntax now, compile in the background) and follow it through later edits."""
    cid = _candidate_id(args)
    if not (ls.service and cid and ls.service.event(cid, EventKind.ACCEPTED)):
        return False
    if ls.labeller is not None:
        ls.labeller.accepted(cid)
    placed = ls.service.placed.get_fresh(cid)
    if (ls.monitor is not None and placed is not None
            and placed.uri in ls.workspace.text_documents):
        document = ls.workspace.get_text_document(placed.uri).source
        if ls.repairer is not None:
            ls.repairer.siblings(cid, placed.others)
        ls.monitor.accepted(cid, placed.uri, placed.language, document, placed.offset,
                            placed.text)
        path = _file_path(placed.uri)
        if ls.watcher is not None and path is not None:
            ls.watcher.watch(path)
    return True


def _file_path(uri: str) -> Path | None:
    return Path(uri_path(uri)) if uri.startswith("file:") else None


def _shown_path(ls: CompilotServer, uri: str) -> str:
    """How a prompt names a file: relative to the workspace's root when inside it."""
    path = uri_path(uri)
    root = ls.workspace.root_path
    if root and uri.startswith("file:"):
        try:
            return Path(path).relative_to(root).as_posix()
        except ValueError:
            pass
    return path


def _context_file(ls: CompilotServer, uri: str) -> None:
    """Cut a document into the context ring (off the loop: ``CompletionService.file_seen``)."""
    ls.edited.discard(uri)
    if ls.service is not None and uri in ls.workspace.text_documents:
        ls.service.file_seen(uri, ls.workspace.get_text_document(uri).source,
                             _shown_path(ls, uri))


@server.feature(types.TEXT_DOCUMENT_DID_OPEN)
def did_open(ls: CompilotServer, params: types.DidOpenTextDocumentParams) -> None:
    """An opened file's code is context for the other files' prompts."""
    _context_file(ls, params.text_document.uri)


@server.feature(types.TEXT_DOCUMENT_DID_CHANGE)
def did_change(ls: CompilotServer, params: types.DidChangeTextDocumentParams) -> None:
    """Move followed completions with the edits (pygls has already applied them)."""
    monitor, uri = ls.monitor, params.text_document.uri
    ls.edited.add(uri)
    if monitor is None or not monitor.follows(uri):
        return
    _moved(ls, monitor, uri, params)
    if uri in ls.flagged:
        ls.flag(uri)  # a fix's region moved or changed: its diagnostic moves or goes


def _moved(ls: CompilotServer, monitor: Monitor, uri: str,
           params: types.DidChangeTextDocumentParams) -> None:
    for change in params.content_changes:
        mirror = monitor.mirror(uri)
        if mirror is None:
            return
        if isinstance(change, types.TextDocumentContentChangePartial):
            start = offset_at(mirror, change.range.start.line, change.range.start.character)
            end = offset_at(mirror, change.range.end.line, change.range.end.character)
            if start is None or end is None:
                monitor.replaced(uri, ls.workspace.get_text_document(uri).source)
                return
            monitor.changed(uri, start, end, change.text)
        else:
            monitor.replaced(uri, change.text)


@server.feature(types.TEXT_DOCUMENT_DID_SAVE, types.SaveOptions(include_text=False))
def did_save(ls: CompilotServer, params: types.DidSaveTextDocumentParams) -> None:
    """Re-check followed completions in the saved file; cut it into the context ring."""
    uri = params.text_document.uri
    _context_file(ls, uri)
    if ls.monitor is not None and ls.monitor.follows(uri):
        document = (ls.workspace.get_text_document(uri).source
                    if uri in ls.workspace.text_documents else None)
        ls.monitor.saved(uri, document)


@server.feature(types.TEXT_DOCUMENT_DID_CLOSE)
def did_close(ls: CompilotServer, params: types.DidCloseTextDocumentParams) -> None:
    """Last survival record and re-check; stop following the file."""
    uri = params.text_document.uri
    ls.edited.discard(uri)  # its chunks stay: a file closed a moment ago is still context
    if ls.service is not None:
        ls.service.closed(uri)
    if ls.repairer is not None:
        ls.repairer.forget(uri)
        ls.flagged.discard(uri)
    if ls.monitor is not None and ls.monitor.follows(uri):
        ls.monitor.closed(uri)
        path = _file_path(uri)
        if ls.watcher is not None and path is not None:
            ls.watcher.forget(path)


def _range(text: str, start: int, end: int) -> types.Range:
    (a_line, a_char), (b_line, b_char) = position_of(text, start), position_of(text, end)
    return types.Range(start=types.Position(line=a_line, character=a_char),
                       end=types.Position(line=b_line, character=b_char))


def _overlaps(a: types.Range, b: types.Range) -> bool:
    def key(p: types.Position) -> tuple[int, int]:
        return p.line, p.character

    return key(a.start) <= key(b.end) and key(b.start) <= key(a.end)


@server.feature(types.TEXT_DOCUMENT_CODE_ACTION, types.CodeActionOptions(
    code_action_kinds=[types.CodeActionKind.QuickFix], resolve_provider=False))
def code_action(ls: CompilotServer, params: types.CodeActionParams) -> list[types.CodeAction]:
    """"compilot: fix" for a broken accepted completion at the range asked about, from the
    fixes the compiler has already confirmed (``server.repair``): nothing is computed here,
    as editors ask on every cursor move. The client's diagnostics that overlap it (its own
    language server's) are named as the ones the action fixes."""
    uri = params.text_document.uri
    if ls.repairer is None or uri not in ls.workspace.text_documents:
        return []
    only = params.context.only
    if only and not any(types.CodeActionKind.QuickFix.value.startswith(k) for k in only):
        return []
    text = ls.workspace.get_text_document(uri).source
    actions: list[types.CodeAction] = []
    for fix in ls.repairer.fixes(uri, text):
        where = _range(text, fix.region.start, fix.region.end)
        if not _overlaps(where, params.range):
            continue
        actions.append(_action(uri, where, fix, [
            d for d in params.context.diagnostics if _overlaps(d.range, where)], not actions))
    return actions


def _action(uri: str, where: types.Range, fix: Fix, diagnostics: list[types.Diagnostic],
            preferred: bool) -> types.CodeAction:
    first = fix.text.strip().split("\n", 1)[0]
    return types.CodeAction(
        title=f"compilot: fix ({first[:60]})" if first else "compilot: fix",
        kind=types.CodeActionKind.QuickFix, is_preferred=preferred,
        diagnostics=diagnostics or None,
        edit=types.WorkspaceEdit(changes={uri: [types.TextEdit(range=where,
                                                               new_text=fix.text)]}),
        command=types.Command(title="compilot: fix applied", command=FIX_APPLIED,
                              arguments=[fix.id]))


@server.command(FIX_APPLIED)
def fix_applied(ls: CompilotServer, *args: Any) -> bool:
    """The editor applied a "compilot: fix" edit: recorded as the completion's revision,
    with the fix's source (SFT and DPO learn from it as from the user's own fix)."""
    fix_id = args[0] if args and isinstance(args[0], str) else None
    fix = ls.repairer.applied(fix_id) if ls.repairer is not None and fix_id else None
    if fix is None:
        return False
    if ls.monitor is not None:
        ls.monitor.fixed(fix.region, fix.text, fix.status, f"fix:{fix.source}")
    ls.flag(fix.uri)
    return True


@server.command(REJECTED)
def rejected(ls: CompilotServer, *args: Any) -> bool:
    """The user dismissed a candidate."""
    cid = _candidate_id(args)
    return bool(ls.service and cid and ls.service.event(cid, EventKind.REJECTED))


@server.command(PARTIALLY_ACCEPTED)
def partially_accepted(ls: CompilotServer, *args: Any) -> bool:
    """The user took a prefix of a candidate (a word or a line): ``[id, {length, kind}]``."""
    cid = _candidate_id(args)
    detail = args[1] if len(args) > 1 and isinstance(args[1], dict) else {}
    length = detail.get("length")
    return bool(ls.service and cid and ls.service.event(
        cid, EventKind.PARTIAL, length if isinstance(length, int) and length >= 0 else None))


@server.command(STATUS)
async def status(ls: CompilotServer, *args: Any) -> dict[str, Any]:
    """What an editor's status item shows: the serving adapter, today's accept and compile
    rates, whether a training round runs, and the latest report (read off the event loop)."""
    return await asyncio.get_running_loop().run_in_executor(None, _status, ls)


def _status(ls: CompilotServer) -> dict[str, Any]:
    data = ls.data
    service = ls.service
    midnight = datetime.combine(date.today(), dtime()).timestamp()
    store_error = None
    try:
        rows = service.store.summary(midnight) if service and service.store else []
        rows = [r for r in rows if r["origin"] == Origin.EDITOR]  # not `compilot bootstrap`'s
    except StoreError as exc:
        rows, store_error = [], str(exc)
    shown, accepted, checked, compiled = (
        sum(int(r[key] or 0) for r in rows)
        for key in ("shown", "accepted", "accepted_checked", "accepted_compiled"))
    try:
        reports = sorted(data.reports.glob("*.html"), key=lambda p: p.stat().st_mtime)
    except OSError:
        reports = []
    return {
        "version": __version__,
        "adapter": service.adapter if service else None,
        "model": str(service.engine.path) if service and service.engine else _model_path(ls),
        "error": service.engine_error if service else "the server has not started yet",
        "store": store_error,
        "today": {"shown": shown, "accepted": accepted,
                  "acceptRate": round(accepted / shown, 4) if shown else None,
                  "checked": checked, "compiled": compiled,
                  "compileRate": round(compiled / checked, 4) if checked else None},
        "training": {"running": round_lock.round_running(data),
                     "log": str(data.trainer_log)},
        "report": str(reports[-1]) if reports else None,
    }


def _model_path(ls: CompilotServer) -> str | None:
    """The configured model, before the engine has loaded it (it loads on first use)."""
    try:
        return str(resolve_model_path(ls.settings.model.path))
    except (OSError, RuntimeError, ValueError):
        return None


@server.command(TRAIN)
def train_now(ls: CompilotServer, *args: Any) -> dict[str, Any]:
    """Start one training round in a background process (the same as `compilot train`)."""
    data = ls.data
    log_path = data.trainer_log
    try:
        pid = round_lock.start_round(data, ls.settings)
    except (round_lock.Busy, OSError) as exc:
        return {"started": False, "message": str(exc), "log": str(log_path)}
    return {"started": True, "log": str(log_path),
            "message": f"training round started (pid {pid}); it logs to {log_path} and the "
                       "server swaps in the adapter if the gate promotes it"}


@server.command(SETTLE)
async def settle(ls: CompilotServer, *args: Any) -> bool:
    """Wait until the answers' alternatives are decoded, queued checks have run and queued
    writes are in the store (tests and the demo use it before they read the store); False if
    the writes are not done in 30 s."""
    loop = asyncio.get_running_loop()
    if ls.service is not None:
        await loop.run_in_executor(None, ls.service.context_settled, 30.0)
        await ls.service.alternatives_settled()  # they go to the labeller and the store
    if ls.labeller is not None:
        await loop.run_in_executor(None, ls.labeller.wait, 120.0)
    if ls.monitor is not None:
        await loop.run_in_executor(None, ls.monitor.wait)
    store = ls.service.store if ls.service is not None else None
    if isinstance(store, QueuedStore):
        return await loop.run_in_executor(None, store.flush, 30.0)
    return True


@server.command(STATS)
def stats(ls: CompilotServer, *args: Any) -> dict[str, Any]:
    """Counters of the service, worker, engine and store (for tests and `compilot status`)."""
    want_prompt = bool(args and isinstance(args[0], dict) and args[0].get("prompt"))
    if ls.service is None:
        return {}
    out = ls.service.stats(prompt=want_prompt)
    if ls.repairer is not None:
        out["repair"] = {**asdict(ls.repairer.counters), "pending": ls.repairer.pending(),
                         "ready": ls.repairer.documents()}
    return out


def _item_candidate(params: Any) -> str | None:
    """The candidate id inside a Copilot-style ``{item: {command: {arguments}}}``."""
    item = params.get("item") if isinstance(params, dict) else getattr(params, "item", None)
    command = item.get("command") if isinstance(item, dict) else getattr(item, "command", None)
    args = (command.get("arguments") if isinstance(command, dict)
            else getattr(command, "arguments", None))
    return _candidate_id(tuple(args or ()))


@server.feature(DID_SHOW)
def did_show(ls: CompilotServer, params: Any) -> None:
    """Copilot's notification that an item was shown; compilot's VS Code extension adds
    ``inferred`` (it cannot know it, see editor-clients/vscode/src/reporter.ts)."""
    cid = _item_candidate(params)
    inferred = _field(params, "inferred")
    if ls.service and cid:
        ls.service.event(cid, EventKind.SHOWN,
                         inferred=inferred if isinstance(inferred, bool) else None)


def _field(params: Any, name: str) -> Any:
    return params.get(name) if isinstance(params, dict) else getattr(params, name, None)


def _warm(ls: CompilotServer, params: Any) -> None:
    """Warm the window at the notified cursor (else the last one known for the document)."""
    document = _field(params, "textDocument")
    uri = _field(document, "uri")
    if ls.service is None or not isinstance(uri, str) or uri not in ls.workspace.text_documents:
        return
    position = _field(params, "position")
    line, character = _field(position, "line"), _field(position, "character")
    if isinstance(line, int) and isinstance(character, int):
        ls.cursors[uri] = types.Position(line=line, character=character)
    at = ls.cursors.get(uri)
    if at is None:
        return
    doc = ls.workspace.get_text_document(uri)
    offset = offset_at(doc.source, at.line, at.character)
    if offset is not None:
        ls.service.warm(uri, doc.source, offset, language_id=doc.language_id)


@server.feature(DID_FOCUS)
def did_focus(ls: CompilotServer, params: Any) -> None:
    """A document got the focus: evaluate its window at the cursor ahead of a request."""
    _warm(ls, params)


@server.feature(DID_MOVE_CURSOR)
def did_move_cursor(ls: CompilotServer, params: Any) -> None:
    """The cursor rests in a new place: evaluate the window there ahead of a request."""
    _warm(ls, params)


@server.feature(DID_PARTIALLY_ACCEPT)
def did_partially_accept(ls: CompilotServer, params: Any) -> None:
    """Copilot's notification that a prefix of an item was accepted."""
    cid = _item_candidate(params)
    length = (params.get("acceptedLength") if isinstance(params, dict)
              else getattr(params, "acceptedLength", None))
    if ls.service and cid:
        ls.service.event(cid, EventKind.PARTIAL, length if isinstance(length, int) else None)


@server.feature(types.SHUTDOWN)
def shutdown(ls: CompilotServer, params: None) -> None:
    """Stop the worker and close the store."""
    if ls._ticker is not None:
        ls._ticker.cancel()
    if ls.watcher is not None:
        ls.watcher.stop()
    if ls.labeller is not None:
        ls.labeller.close()
    if ls.monitor is not None:
        ls.monitor.close()
    if ls.repairer is not None:
        ls.repairer.close()
    if ls.service is not None:
        ls.service.close()
        ls.service = None
    if ls.budget is not None:
        ls.budget.close()
        ls.budget = None
