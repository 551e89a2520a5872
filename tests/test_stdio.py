"""`compilot serve` writes nothing but LSP frames on stdout."""

from __future__ import annotations

import json
import os
import subprocess

from tests.lsp_helpers import SERVER, fresh_data_dir


def frame(message: dict) -> bytes:
    body = json.dumps(message).encode()
    return b"Content-Length: %d\r\n\r\n%s" % (len(body), body)


def test_stdout_carries_only_lsp_frames() -> None:
    data_dir = fresh_data_dir()
    env = {**os.environ, "COMPILOT_DATA_DIR": str(data_dir),
           "COMPILOT_CONFIG": str(data_dir / "none.toml")}
    messages = [
        {"jsonrpc": "2.0", "id": 1, "method": "initialize",
         "params": {"processId": None, "rootUri": None, "capabilities": {}}},
        {"jsonrpc": "2.0", "method": "initialized", "params": {}},
        {"jsonrpc": "2.0", "id": 2, "method": "shutdown"},
        {"jsonrpc": "2.0", "method": "exit"},
    ]
    done = subprocess.run(SERVER + ["--log-level", "debug"], input=b"".join(map(frame, messages)),
                          capture_output=True, env=env, timeout=120)
    out = done.stdout
    frames = []
    while out:
        header, sep, rest = out.partition(b"\r\n\r\n")
        fields = dict(line.split(b": ", 1) for line in header.split(b"\r\n"))
        assert sep and set(fields) <= {b"Content-Length", b"Content-Type"}, out[:200]
        length = int(fields[b"Content-Length"])
        frames.append(json.loads(rest[:length]))
        out = rest[length:]
    assert [f.get("id") for f in frames if "id" in f] == [1, 2]
    assert frames[0]["result"]["capabilities"]["inlineCompletionProvider"] is not None
    assert b"" != done.stderr  # the debug log went to stderr


async def test_tcp_mode_serves_lsp() -> None:
    import asyncio
    import socket

    from lsprotocol import types
    from pygls.lsp.client import LanguageClient

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    data_dir = fresh_data_dir()
    env = {**os.environ, "COMPILOT_DATA_DIR": str(data_dir),
           "COMPILOT_CONFIG": str(data_dir / "none.toml")}
    server = subprocess.Popen([*SERVER, "--tcp", f"127.0.0.1:{port}"], env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    client = LanguageClient("tcp-test", "1")
    try:
        for _ in range(200):
            try:
                await client.start_tcp("127.0.0.1", port)
                break
            except OSError:
                await asyncio.sleep(0.05)
        result = await asyncio.wait_for(client.initialize_async(types.InitializeParams(
            capabilities=types.ClientCapabilities())), 60)
        assert result.capabilities.inline_completion_provider is not None
        await asyncio.wait_for(client.shutdown_async(None), 60)
        client.exit(None)
    finally:
        await client.stop()
        server.terminate()
        server.wait(timeout=30)
