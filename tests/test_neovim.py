"""The Neovim plugin (editor-clients/neovim) in a real headless Neovim: its pure helpers, its
extmark ghost text on a given answer, and end to end against the real `compilot serve` with the
embedded model — ghost text drawn by Neovim's vim.lsp.inline_completion (0.12) and by the
plugin's own extmarks (the 0.10 / 0.11 path, forced), accept / partial accept / dismissal
reported and recorded in the event store, <Tab> falling through, :CompilotStats,
:checkhealth compilot and the help file."""

from __future__ import annotations

import json
import shutil
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.nvim_helpers import PLUGIN, Nvim, query

SERVER = [sys.executable, "-m", "compilot", "serve"]
# Whole suggestions (no predictMs time limit): the tests read the model's text, which a time
# limit would make depend on how loaded the machine is (a line cut short under load).
SETTINGS = {"completion": {"maxTokens": 16, "candidates": 1, "predictMs": 0}}
ADD = 'def add(a, b):\n    """Return the sum of a and b."""\n    \n'
POINT = "class Point:\n    def __init__(self, x, y):\n\n\np = Point(1, 2)\n"
MODEL_WAIT = 90.0  # seconds for one suggestion (the first one loads the model)

STATUS = "local s = require('compilot').status(); s.events = nil; return s"
SHOWN = "local s = require('compilot').status(); s.events = nil; return s.visible and s"
EVENTS = "return require('compilot').status().events"
EXTMARKS = """
local ns = vim.api.nvim_get_namespaces()[...]
if not ns then return {} end
local marks = vim.api.nvim_buf_get_extmarks(0, ns, 0, -1, { details = true })
return vim.tbl_map(function(m) return m[4] end, marks)
"""


# -- without a server: the plugin's own logic ----------------------------------------------


@pytest.fixture(scope="module")
def bare(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Nvim]:
    """A Neovim with the plugin on its runtimepath, set up with a server that does not exist."""
    workdir = tmp_path_factory.mktemp("nvim-bare")
    with Nvim(workdir, {"cmd": [str(workdir / "no-such-compilot"), "serve"]}, {}) as nvim:
        yield nvim


@pytest.mark.parametrize(("code", "expected"), [
    pytest.param("return T.first_line('return a + b')", "return a + b", id="first-line-one"),
    pytest.param("return T.first_line('x = 1\\ny = 2')", "x = 1", id="first-line-two"),
    pytest.param("return T.first_line('\\n    self.x = x\\n    self.y = y')",
                 "\n    self.x = x", id="first-line-after-newline"),
    pytest.param("return T.first_line('\\n\\n')", "\n\n", id="first-line-blank"),
    pytest.param("return T.utf16_len('')", 0, id="utf16-empty"),
    pytest.param("return T.utf16_len('abc')", 3, id="utf16-ascii"),
    pytest.param("return T.utf16_len('\\195\\169')", 1, id="utf16-e-acute"),
    pytest.param("return T.utf16_len('\\240\\159\\152\\128x')", 3, id="utf16-astral"),
    pytest.param("return T.byte_col('\\195\\169\\240\\159\\152\\128x', 3, 'utf-16')", 6,
                 id="byte-col-utf16"),
    pytest.param("return T.byte_col('\\195\\169\\240\\159\\152\\128x', 2, 'utf-32')", 6,
                 id="byte-col-utf32"),
    pytest.param("return T.byte_col('abc', 9, 'utf-8')", 3, id="byte-col-past-end"),
    pytest.param("return T.byte_col('abc', 0, 'utf-16')", 0, id="byte-col-zero"),
    pytest.param("return T.after_typed('return a', 'ret')", "urn a", id="typed-through"),
    pytest.param("return T.after_typed('return a', 'rex') == nil", True, id="typed-past"),
    pytest.param("return T.candidate_id({ command = { arguments = { 'abc', {} } } })", "abc",
                 id="candidate-id"),
])
def test_text_helpers(bare: Nvim, code: str, expected: Any) -> None:
    assert bare.lua("local T = require('compilot.text')\n" + code) == expected


@pytest.mark.parametrize(("opts", "expected"), [
    pytest.param({}, {"cmd": ["compilot", "serve"], "accept": "<Tab>", "dismiss": "<C-]>",
                      "auto_trigger": True, "debounce_ms": 150, "mode": "builtin"},
                 id="defaults"),
    pytest.param({"keymaps": {"accept": "<C-y>"}, "debounce_ms": 50},
                 {"accept": "<C-y>", "dismiss": "<C-]>", "debounce_ms": 50}, id="deep-merge"),
    pytest.param({"filetypes": ["c"]}, {"filetypes": ["c"]}, id="lists-replace"),
    pytest.param({"auto_trigger": False}, {"mode": "extmarks"}, id="manual-draws-extmarks"),
    pytest.param({"ghost_text": "extmarks"}, {"mode": "extmarks"}, id="forced-extmarks"),
    pytest.param({"cmd": "compilot-serve"}, {"cmd": ["compilot-serve"]}, id="cmd-string"),
])
def test_config_merges_over_the_defaults(bare: Nvim, opts: dict, expected: dict) -> None:
    got = bare.lua("""
        local config = require('compilot.config')
        local o = config.setup(vim.json.decode(...))
        local out = { cmd = o.cmd, accept = o.keymaps.accept, dismiss = o.keymaps.dismiss,
          auto_trigger = o.auto_trigger, debounce_ms = o.debounce_ms, filetypes = o.filetypes,
          mode = config.ghost_mode() }
        config.setup({ cmd = { 'no-such-compilot', 'serve' } })
        return out
    """, json.dumps(opts))
    assert {key: got[key] for key in expected} == expected


@pytest.mark.parametrize(("opts", "message"), [
    pytest.param({"ghost_text": "virtual"}, "ghost_text must be", id="bad-mode"),
    pytest.param({"debounce_ms": "fast"}, "debounce_ms must be a number", id="bad-type"),
    pytest.param({"cmd": []}, "cmd must name the server command", id="empty-cmd"),
])
def test_bad_options_are_named(bare: Nvim, opts: dict, message: str) -> None:
    error = bare.lua("""
        local ok, err = pcall(require('compilot.config').setup, vim.json.decode(...))
        return not ok and err
    """, json.dumps(opts))
    assert message in error


def test_missing_server_is_reported_once(bare: Nvim, tmp_path: Path) -> None:
    path = tmp_path / "x.py"
    path.write_text("x = 1\n")
    bare.lua("vim.cmd.edit(...)", str(path))
    messages = bare.wait("local m = vim.fn.execute('messages'); return m:find('not found') and m",
                         timeout=10, what="the missing-server warning")
    assert "no-such-compilot" in messages and "setup()" in messages
    assert bare.lua(STATUS)["attached"] is False
    bare.lua("vim.cmd('bwipeout!')")


def test_extmarks_draw_cycle_and_accept_a_given_answer(bare: Nvim) -> None:
    """The extmark renderer on an answer handed to it: inline first line, virtual lines for the
    rest, the (i/n) hint when cycling, accept inserting the rest and moving the cursor."""
    got = bare.lua("""
        vim.cmd('enew')
        local buf = vim.api.nvim_get_current_buf()
        vim.api.nvim_buf_set_lines(buf, 0, -1, false, { 'def f(x):', '    ret' })
        vim.wo.virtualedit = 'onemore' -- the Insert-mode cursor after the text, in Normal mode
        vim.api.nvim_win_set_cursor(0, { 2, 7 })
        local C = require('compilot.completion')
        local at = { line = 1, character = 4 }
        local items = {
          { insertText = 'return x + 1', range = { start = at, ['end'] = at },
            command = { command = 'compilot.accepted', arguments = { 'one' } } },
          { insertText = 'return (x\\n        + 2)', range = { start = at, ['end'] = at },
            command = { command = 'compilot.accepted', arguments = { 'two' } } },
        }
        local out = {}
        out.shown = C.show(buf, { offset_encoding = 'utf-16' }, items, 1, 7)
        local function marks()
          return vim.tbl_map(function(m) return m[4] end,
            vim.api.nvim_buf_get_extmarks(buf, C.ns, 0, -1, { details = true }))
        end
        out.first = marks()
        out.cycled = C.cycle(buf, 1)
        out.second = marks()
        out.accepted = C.accept(buf)
        out.lines = vim.api.nvim_buf_get_lines(buf, 0, -1, false)
        out.cursor = vim.api.nvim_win_get_cursor(0)
        out.after = marks()
        out.again = C.accept(buf)
        out.event = require('compilot.lsp').events[#require('compilot.lsp').events]
        vim.cmd('bwipeout!')
        return out
    """)
    assert got["shown"] is True
    [first] = got["first"]
    assert first["virt_text"] == [["urn x + 1", "CompilotSuggestion"]]
    assert first["virt_text_pos"] == "inline" and "virt_lines" not in first
    [second] = got["second"]
    assert second["virt_text"] == [["urn (x", "CompilotSuggestion"]]
    assert second["virt_lines"] == [[["        + 2)", "CompilotSuggestion"],
                                     [" (2/2)", "CompilotHint"]]]
    assert got["accepted"] is True and got["again"] is False
    assert got["lines"] == ["def f(x):", "    return (x", "        + 2)"]
    assert got["cursor"] == [3, 12]
    assert got["after"] == []
    assert got["event"]["kind"] == "accepted" and got["event"]["id"] == "two"


def test_train_and_stats_commands_call_the_server(bare: Nvim) -> None:
    """:CompilotTrain and :CompilotStats send their commands and show the answers (the server
    here is a fake of lsp.execute; the real one answers in test_stats_health_and_help)."""
    got = bare.lua("""
        local lsp = require('compilot.lsp')
        local execute, client = lsp.execute, lsp.client
        local calls = {}
        lsp.client = function() return {} end
        lsp.execute = function(_, command, args, callback)
          table.insert(calls, command)
          if command == 'compilot.train' then
            callback(nil, { started = true, message = 'training round started (pid 7)',
              log = '/d/trainer.log' })
          else
            callback(nil, { version = '1.2', adapter = 'v3', model = '/m.gguf', error = vim.NIL,
              today = { shown = 8, accepted = 2, acceptRate = 0.25, checked = 2, compiled = 1,
                compileRate = 0.5 },
              training = { running = true, log = '/d/trainer.log' }, report = vim.NIL })
          end
          return true
        end
        vim.cmd('messages clear')
        vim.cmd('CompilotTrain')
        vim.cmd('CompilotStats')
        lsp.execute, lsp.client = execute, client
        return { calls = calls, messages = vim.fn.execute('messages') }
    """)
    assert got["calls"] == ["compilot.train", "compilot.status"]
    assert "training round started (pid 7)" in got["messages"]
    assert "log: /d/trainer.log" in got["messages"]
    assert "compilot 1.2, adapter v3, model /m.gguf" in got["messages"]
    assert "today: 8 shown, 2 accepted (25%), 2 checked, 1 compiled (50%)" in got["messages"]
    assert "training: running" in got["messages"]


def test_help_file_has_tags(bare: Nvim, tmp_path: Path) -> None:
    """:helptags accepts doc/compilot.txt (no duplicate tags) and :help finds its topics."""
    runtime = tmp_path / "rt"
    shutil.copytree(PLUGIN / "doc", runtime / "doc")
    got = bare.lua("""
        local dir = ...
        vim.cmd('messages clear')
        vim.cmd.helptags(dir .. '/doc')
        vim.opt.runtimepath:append(dir)
        local found = {}
        for _, topic in ipairs({ 'compilot', 'compilot-config', 'compilot.accept_line()',
            ':CompilotStats', 'compilot-health', 'hl-CompilotSuggestion' }) do
          local ok = pcall(vim.cmd.help, topic)
          found[topic] = ok and vim.fn.expand('%:t') == 'compilot.txt'
          if ok then vim.cmd('helpclose') end
        end
        return { found = found, messages = vim.fn.execute('messages') }
    """, str(runtime))
    assert "E154" not in got["messages"], got["messages"]
    assert all(got["found"].values()), got["found"]
    tags = (runtime / "doc" / "tags").read_text()
    assert "compilot.setup()\tcompilot.txt" in tags


# -- end to end: the real server and model -------------------------------------------------


@pytest.fixture
def editor(tmp_path: Path) -> Iterator[Callable[..., Nvim]]:
    """Start Neovim with compilot set up against the real server in a fresh data dir; the
    opts are merged over cmd and settings. Yields the starter; closes all at teardown."""
    started: list[Nvim] = []

    def start(**opts: Any) -> Nvim:
        data_dir = tmp_path / "data"
        env = {"COMPILOT_DATA_DIR": str(data_dir),
               "COMPILOT_CONFIG": str(tmp_path / "no-config.toml")}
        nvim = Nvim(tmp_path, {"cmd": SERVER, "settings": SETTINGS, **opts}, env)
        nvim.data_dir = data_dir  # type: ignore[attr-defined]
        started.append(nvim)
        return nvim

    yield start
    for nvim in started:
        nvim.close()


def normal(nvim: Nvim) -> None:
    nvim.keys("<Esc>")
    nvim.wait("return vim.api.nvim_get_mode().mode == 'n'", timeout=10, what="Normal mode")


def open_file(nvim: Nvim, path: Path, text: str) -> None:
    normal(nvim)
    path.write_text(text)
    nvim.lua("vim.cmd.edit(...)", str(path))
    nvim.wait("return require('compilot').status().attached", timeout=30,
              what="the server to attach")


def insert_at(nvim: Nvim, line: int) -> dict:
    """Append at the end of `line` (1-based) and wait for the suggestion there."""
    normal(nvim)
    nvim.lua("vim.api.nvim_win_set_cursor(0, { ..., 0 })", line)
    nvim.keys("A")
    return nvim.wait(SHOWN, timeout=MODEL_WAIT, what="a suggestion")


def reported(nvim: Nvim, kind: str, cid: str) -> dict:
    """The event this Neovim reported, once the server answered it (true)."""
    return nvim.wait("""
        for _, e in ipairs(require('compilot').status().events) do
          if e.kind == select(1, ...) and e.id == select(2, ...) and e.ok ~= nil then
            return e
          end
        end
    """, kind, cid, timeout=15, what=f"the {kind} report")


def recorded(nvim: Nvim, cid: str, kinds: list[str]) -> list[dict]:
    """The store's events for a candidate, once it holds `kinds` (in order, 'shown' aside)."""
    rows = query(nvim.data_dir / "events.db",  # type: ignore[attr-defined]
                 "SELECT kind, accepted_length, inferred FROM events WHERE candidate_id = ? "
                 "ORDER BY id",
                 (cid,), until=lambda rows: [r["kind"] for r in rows if r["kind"] != "shown"]
                 == kinds)
    return [dict(r) for r in rows]


def line(nvim: Nvim, number: int) -> str:
    return nvim.lua("return vim.api.nvim_buf_get_lines(0, ... - 1, ..., true)[1]", number)


@pytest.mark.slow
def test_builtin_inline_completion_accept_and_dismiss(editor: Callable[..., Nvim],
                                                      tmp_path: Path) -> None:
    """Neovim 0.12 draws the suggestion (vim.lsp.inline_completion); <Tab> accepts it (even
    with <Esc> typed right behind), <S-Tab> takes one line of the next, <C-]> dismisses its
    rest; all reach the event store."""
    nvim = editor()
    assert nvim.lua("return vim.lsp.inline_completion ~= nil"), "this nvim is not 0.12"
    open_file(nvim, tmp_path / "add.py", ADD)
    shown = insert_at(nvim, 3)
    assert shown["mode"] == "builtin"
    text, cid = shown["item"]["text"], shown["item"]["id"]
    assert text.strip()
    marks = nvim.lua(EXTMARKS, "nvim.lsp.inline_completion")
    assert marks and marks[0]["virt_text"][0][0] == text.split("\n")[0]
    nvim.keys("<Tab><Esc>")  # <Esc> right behind: the accept must not be lost to it
    normal(nvim)
    assert "\n".join(nvim.lua("return vim.api.nvim_buf_get_lines(0, 2, -1, false)")) \
        .startswith("    " + text)
    assert reported(nvim, "accepted", cid)["ok"] is True
    events = recorded(nvim, cid, ["accepted"])
    assert events[-1]["kind"] == "accepted"
    # Neovim drew it: the shown is known, not inferred.
    assert [e["inferred"] for e in events if e["kind"] == "shown"] == [0]

    open_file(nvim, tmp_path / "point.py", POINT)
    shown = insert_at(nvim, 2)
    text, cid = shown["item"]["text"], shown["item"]["id"]
    lines = text.split("\n")
    assert len(lines) > 2 and lines[0] == "", f"expected a body after the def line: {text!r}"
    nvim.keys("<S-Tab>")
    assert reported(nvim, "partial", cid)["detail"] == {"length": len(lines[1]) + 1,
                                                       "kind": "line"}
    assert line(nvim, 3) == lines[1]
    recorded(nvim, cid, ["partial"])
    # Neovim asks again after the cursor moved; the server answers the rest.
    rest = nvim.wait(SHOWN + " and s.item.id ~= ... and s", cid, timeout=MODEL_WAIT,
                     what="the rest of the suggestion")
    assert rest["item"]["text"] == "\n" + "\n".join(lines[2:])
    nvim.keys("<C-]>")
    nvim.wait("return not require('compilot').status().visible", timeout=10)
    assert nvim.lua(EXTMARKS, "nvim.lsp.inline_completion") == []
    assert line(nvim, 4) == "", "dismiss inserted text"
    assert reported(nvim, "rejected", rest["item"]["id"])["ok"] is True
    recorded(nvim, rest["item"]["id"], ["rejected"])


@pytest.mark.slow
def test_extmarks_partial_accept_typing_through_and_escape(editor: Callable[..., Nvim],
                                                           tmp_path: Path) -> None:
    """The 0.10 / 0.11 path, forced: ghost text as extmarks, <S-Tab> takes a line
    (compilot.partiallyAccepted), <Tab> the rest; typing its next characters keeps it shown;
    <Esc> dismisses it (compilot.rejected)."""
    nvim = editor(ghost_text="extmarks")
    open_file(nvim, tmp_path / "point.py", POINT)
    shown = insert_at(nvim, 2)
    assert shown["mode"] == "extmarks"
    text, cid = shown["item"]["text"], shown["item"]["id"]
    lines = text.split("\n")
    assert len(lines) > 2 and lines[0] == "", f"expected a body after the def line: {text!r}"
    [mark] = nvim.lua(EXTMARKS, "compilot.ghost")
    assert [chunks[0][0] for chunks in mark["virt_lines"]] == lines[1:]
    assert "virt_text" not in mark  # nothing to show on the cursor's own line

    nvim.keys("<S-Tab>")
    event = reported(nvim, "partial", cid)
    assert event["ok"] is True, f"compilot.partiallyAccepted failed: {event}"
    assert line(nvim, 3) == lines[1]
    assert event["detail"] == {"length": len(lines[1]) + 1, "kind": "line"}
    assert recorded(nvim, cid, ["partial"])[-1]["accepted_length"] == len(lines[1]) + 1
    rest = nvim.wait(SHOWN, timeout=MODEL_WAIT, what="the rest of the suggestion")
    assert rest["item"]["text"] == "\n" + "\n".join(lines[2:])
    nvim.keys("<Tab>")
    reported(nvim, "accepted", rest["item"]["id"])
    assert nvim.lua("return vim.api.nvim_buf_get_lines(0, 2, 2 + ..., true)", len(lines) - 1) \
        == lines[1:]
    # The server answers the rest under a new id once asked again; else the same id goes on.
    same = rest["item"]["id"] == cid
    recorded(nvim, rest["item"]["id"], ["partial", "accepted"] if same else ["accepted"])

    open_file(nvim, tmp_path / "add.py", ADD)
    shown = insert_at(nvim, 3)
    full, typed = shown["item"]["text"], shown["item"]["text"][:2]
    nvim.keys(typed)
    # Shown at once without the server, then the server's answer for the new text (new id).
    through = nvim.wait("""
        local s = require('compilot').status()
        return s.visible and s.item.text == select(1, ...) and s.item.id ~= select(2, ...) and s
    """, full[2:], shown["item"]["id"], timeout=MODEL_WAIT, what="the suggestion typed through")
    assert line(nvim, 3) == "    " + typed
    nvim.keys("<Esc>")
    reported(nvim, "rejected", through["item"]["id"])
    assert nvim.lua(EXTMARKS, "compilot.ghost") == []
    recorded(nvim, through["item"]["id"], ["rejected"])


@pytest.mark.slow
def test_cycling_a_lone_suggestion_asks_for_its_alternatives(editor: Callable[..., Nvim],
                                                           tmp_path: Path) -> None:
    """With completion.alternatives_later the server answers with the greedy candidate alone
    and decodes the others after it; cycling (compilot.next) on a lone suggestion asks again
    with the trigger kind Invoked, the server decodes them now, and the next one is shown."""
    nvim = editor(ghost_text="extmarks", settings={"completion": {
        "maxTokens": 16, "candidates": 3, "temperature": 1.0, "predictMs": 0,
        "prefetch": False, "alternativesLater": True}})
    open_file(nvim, tmp_path / "point.py", POINT)
    shown = insert_at(nvim, 2)
    assert shown["count"] == 1, shown
    assert nvim.lua("return require('compilot').next()") is True
    cycled = nvim.wait(SHOWN + " and s.count > 1 and s.index == 2 and s", timeout=MODEL_WAIT,
                       what="the next of the alternatives")
    assert cycled["item"]["id"] != shown["item"]["id"]
    [mark] = nvim.lua(EXTMARKS, "compilot.ghost")
    assert f"(2/{cycled['count']})" in json.dumps(mark)


@pytest.mark.slow
def test_tab_falls_through_when_nothing_is_shown(editor: Callable[..., Nvim],
                                                 tmp_path: Path) -> None:
    """With no suggestion <Tab> does what it did before: indent, or the mapping it replaced;
    setup() again changes nothing of that (idempotent)."""
    nvim = editor(auto_trigger=False)
    open_file(nvim, tmp_path / "a.py", "\n")
    nvim.lua("vim.bo.expandtab = true; vim.bo.softtabstop = 4; vim.bo.shiftwidth = 4")
    nvim.keys("ggi<Tab>x<Esc>")
    nvim.wait("return vim.api.nvim_get_mode().mode == 'n'", timeout=10)
    assert line(nvim, 1) == "    x"

    nvim.lua("vim.keymap.set('i', '<Tab>', 'ORIG')")
    open_file(nvim, tmp_path / "b.py", "\n")
    nvim.keys("ggi<Tab><Esc>")
    nvim.wait("return vim.api.nvim_get_mode().mode == 'n'", timeout=10)
    assert line(nvim, 1) == "ORIG"

    count = """
        local maps = vim.tbl_filter(function(m) return m.lhs == '<Tab>' end,
          vim.api.nvim_buf_get_keymap(0, 'i'))
        return { maps = #maps,
          autocmds = #vim.api.nvim_get_autocmds({ group = 'compilot', buffer = 0 }) }
    """
    before = nvim.lua(count)
    nvim.lua("require('compilot').setup(vim.json.decode(...))",
             json.dumps({"cmd": SERVER, "settings": SETTINGS,
                                       "auto_trigger": False}))
    assert nvim.lua(count) == before == {"maps": 1, "autocmds": before["autocmds"]}
    nvim.keys("ggA<Tab><Esc>")
    nvim.wait("return vim.api.nvim_get_mode().mode == 'n'", timeout=10)
    assert line(nvim, 1) == "ORIGORIG"
    assert nvim.lua(STATUS)["attached"] is True


@pytest.mark.slow
def test_stats_health_and_help(editor: Callable[..., Nvim], tmp_path: Path) -> None:
    """:CompilotStats shows the server's compilot.status; :checkhealth compilot finds the
    server, the model and python3."""
    nvim = editor(auto_trigger=False)
    open_file(nvim, tmp_path / "add.py", ADD)
    nvim.lua("vim.api.nvim_win_set_cursor(0, { 3, 0 })")
    nvim.keys("A")
    nvim.wait("return vim.api.nvim_get_mode().mode == 'i'", timeout=10, what="Insert mode")
    assert nvim.lua("return require('compilot').suggest()") is True
    cid = nvim.wait(SHOWN, timeout=MODEL_WAIT, what="a suggestion asked for")["item"]["id"]
    normal(nvim)  # <Esc> dismisses it
    reported(nvim, "rejected", cid)

    nvim.lua("vim.cmd('messages clear'); vim.cmd('CompilotStats')")
    messages = nvim.wait("local m = vim.fn.execute('messages'); return m:find('today:') and m",
                         timeout=30, what="the :CompilotStats answer")
    assert "adapter base" in messages and ".gguf" in messages
    assert "this session: 0 accepted, 0 partly accepted, 1 dismissed" in messages

    nvim.lua("vim.cmd('checkhealth compilot')")
    report = nvim.wait("""
        local text = table.concat(vim.api.nvim_buf_get_lines(0, 0, -1, false), '\\n')
        return text:find('compilers for the compile checks') and text:find('python3') and text
    """, timeout=30, what="the health report")
    assert "server found" in report and "model found" in report and ".gguf" in report
    assert "python3 found" in report
    assert "ERROR" not in report, report


@pytest.mark.slow
def test_the_server_is_told_the_focus_and_where_the_cursor_rests(
        editor: Callable[..., Nvim], tmp_path: Path) -> None:
    """textDocument/didFocus on entering the buffer, compilot/didMoveCursor once the cursor
    rests on another line; the server warms the window there (its warm_ups counter)."""
    nvim = editor(auto_trigger=False)
    open_file(nvim, tmp_path / "add.py", ADD)
    nvim.wait("""
        for _, t in ipairs(require('compilot.cursor').told) do
          if t.method == 'textDocument/didFocus' then return true end
        end
    """, timeout=30, what="the focus told")
    nvim.lua("vim.api.nvim_win_set_cursor(0, { 3, 0 })")
    told = nvim.wait("""
        for _, t in ipairs(require('compilot.cursor').told) do
          if t.method == 'compilot/didMoveCursor' then return t end
        end
    """, timeout=30, what="the resting cursor told")
    assert told["line"] == 2  # 0-based, as LSP counts
    warm_ups = nvim.wait("""
        local client = vim.lsp.get_clients({ name = 'compilot' })[1]
        local r = client:request_sync('workspace/executeCommand',
          { command = 'compilot.stats', arguments = {} }, 10000, 0)
        local n = r and r.result and r.result.service and r.result.service.warm_ups
        return n and n >= 1 and n
    """, timeout=MODEL_WAIT, what="the server's warm-up")
    assert warm_ups >= 1


@pytest.mark.slow
def test_a_broken_accept_is_fixed_through_vim_lsp_buf_code_action(
        editor: Callable[..., Nvim], tmp_path: Path) -> None:
    """Three tokens cut the body short (`max(values`): accepted, it breaks the file; compilot
    flags it (a diagnostic of its own) once a checked fix is ready, and
    vim.lsp.buf.code_action applies "compilot: fix" (the edit, then its command, which
    records the revision)."""
    nvim = editor(settings={"completion": {"maxTokens": 3, "candidates": 1},
                            "context": {"enabled": False}, "checks": {"background": False}})
    head = 'def largest(values):\n    """Return the largest of the values."""\n    return'
    open_file(nvim, tmp_path / "largest.py", head + "\n\n\nprint(largest([1, 2]))\n")
    normal(nvim)
    nvim.lua("vim.api.nvim_win_set_cursor(0, { 3, 0 })")
    nvim.keys("A ")
    shown = nvim.wait(SHOWN, timeout=MODEL_WAIT, what="a suggestion")
    text, cid = shown["item"]["text"], shown["item"]["id"]
    nvim.keys("<Tab>")
    normal(nvim)
    assert line(nvim, 3) == "    return " + text
    reported(nvim, "accepted", cid)
    flagged = nvim.wait("""
        for _, d in ipairs(vim.diagnostic.get(0)) do
          if d.source == 'compilot' then return d end
        end
    """, timeout=MODEL_WAIT, what="compilot's diagnostic of the broken completion")
    assert flagged["lnum"] == 2 and "does not compile" in flagged["message"]
    nvim.lua("""
        vim.api.nvim_win_set_cursor(0, { 3, 12 })
        vim.lsp.buf.code_action({ apply = true, filter = function(a)
          return a.isPreferred and vim.startswith(a.title, 'compilot: fix')
        end })
    """)
    fixed = nvim.wait("local l = vim.api.nvim_buf_get_lines(0, 2, 3, true)[1]; "
                      "return l ~= select(1, ...) and l", "    return " + text, timeout=30,
                      what="the fix applied")
    rows = query(nvim.data_dir / "events.db",  # type: ignore[attr-defined]
                 "SELECT broken, fixed, source FROM revisions WHERE candidate_id = ?", (cid,),
                 timeout=30)
    assert [(r["broken"], r["source"][:4]) for r in rows] == [(text, "fix:")]
    assert fixed == "    return " + rows[0]["fixed"]
    compile(nvim.lua("return table.concat(vim.api.nvim_buf_get_lines(0, 0, -1, true), '\\n')"),
            "largest.py", "exec")  # the fixed file compiles
    nvim.wait("""
        for _, d in ipairs(vim.diagnostic.get(0)) do
          if d.source == 'compilot' then return false end
        end
        return true
    """, timeout=15, what="compilot's diagnostic gone")
