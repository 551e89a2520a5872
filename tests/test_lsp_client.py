"""The demo's and the benchmarks' editor client keeps what the server publishes."""

from __future__ import annotations

from lsprotocol import types

from compilot.lsp_client import EditorClient


def test_the_client_keeps_each_documents_latest_diagnostics() -> None:
    # Without a handler pygls logged "Ignoring notification for unknown method
    # 'textDocument/publishDiagnostics'" into the demo's output at each flagged completion.
    client = EditorClient()
    published = client.protocol.fm.features[types.TEXT_DOCUMENT_PUBLISH_DIAGNOSTICS]
    where = types.Range(start=types.Position(line=3, character=4),
                        end=types.Position(line=3, character=9))
    flag = types.Diagnostic(range=where, message="this completion broke the build",
                            source="compilot")
    published(types.PublishDiagnosticsParams(uri="file:///a.py", diagnostics=[flag]))
    published(types.PublishDiagnosticsParams(uri="file:///b.py", diagnostics=[]))
    assert client.diagnostics == {"file:///a.py": [flag], "file:///b.py": []}
    published(types.PublishDiagnosticsParams(uri="file:///a.py", diagnostics=[]))
    assert client.diagnostics["file:///a.py"] == []  # fixed: the flag is withdrawn
