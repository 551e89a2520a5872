"""Issue 12, findings 1 and 2: a mis-framed message or bad params cost that message, not the
session. Each test failed before the fix: pygls' reader went deaf for good after one bad
Content-Length, and a request whose params did not fit its type got no answer at all."""

from __future__ import annotations

import io
import json
import os
import subprocess
from typing import Any

import pytest

from compilot.server.framing import FrameReader, json_end
from tests.lsp_helpers import SERVER, fresh_data_dir


def body(message: dict[str, Any]) -> bytes:
    return json.dumps(message, ensure_ascii=False).encode()


def frame(message: dict[str, Any], *, length: int | str | None = None) -> bytes:
    data = body(message)
    return b"Content-Length: %s\r\n\r\n%s" % (str(len(data) if length is None else length)
                                                .encode(), data)


def ping(n: int) -> dict[str, Any]:
    return {"jsonrpc": "2.0", "id": n, "method": "compilot/ping", "params": {"é": "ü" * 3}}


def frames_of(stream: bytes) -> list[bytes]:
    reader = FrameReader(io.BytesIO(stream))
    out = []
    while (f := reader.next()) is not None:
        out.append(f.body)
    return out


# -- the reader, on bytes ------------------------------------------------------------------

@pytest.mark.parametrize("length", [
    pytest.param(lambda m: len(json.dumps(m, ensure_ascii=False)), id="counted-in-characters"),
    pytest.param(lambda m: len(body(m)) - 1, id="one-byte-short"),
    pytest.param(lambda m: len(body(m)) + 20, id="long"),
    pytest.param(lambda m: "abc", id="not-a-number"),
    pytest.param(lambda m: "", id="empty"),
])
def test_each_message_survives_a_bad_length_beside_it(length: Any) -> None:
    first, second, third = ping(1), ping(2), ping(3)
    stream = frame(first) + frame(second, length=length(second)) + frame(third)
    assert [json.loads(b)["id"] for b in frames_of(stream)] == [1, 2, 3]


def test_bytes_outside_any_frame_are_skipped() -> None:
    stream = b"garbage\r\n\r\n}}" + frame(ping(1)) + b"\x00\xff more junk\n" + frame(ping(2))
    assert [json.loads(b)["id"] for b in frames_of(stream)] == [1, 2]


def test_json_end_knows_strings_and_escapes() -> None:
    tricky = br'{"a": "}\"}\\", "b": [1, {"c": "]"}]}'
    assert json_end(tricky + b"rest") == len(tricky)
    assert json_end(tricky[:-1]) is None
    assert json_end(b"not json") == 0


# -- the real server, over stdio -----------------------------------------------------------

def serve(stream: bytes) -> tuple[list[dict[str, Any]], str]:
    data_dir = fresh_data_dir()
    env = {**os.environ, "COMPILOT_DATA_DIR": str(data_dir),
           "COMPILOT_CONFIG": str(data_dir / "none.toml")}
    done = subprocess.run(SERVER, input=stream, capture_output=True, env=env, timeout=120)
    out, answers = done.stdout, []
    while out:
        header, _, rest = out.partition(b"\r\n\r\n")
        fields = dict(line.split(b": ", 1) for line in header.split(b"\r\n"))
        length = int(fields[b"Content-Length"])
        answers.append(json.loads(rest[:length]))
        out = rest[length:]
    return answers, done.stderr.decode(errors="replace")


INITIALIZE = {"jsonrpc": "2.0", "id": 0, "method": "initialize",
              "params": {"processId": None, "rootUri": None, "capabilities": {},
                         "clientInfo": {"name": "éditeur naïf"}}}
END = [{"jsonrpc": "2.0", "id": 99, "method": "shutdown"}, {"jsonrpc": "2.0", "method": "exit"}]


def test_the_server_answers_after_mis_framed_messages() -> None:
    """Was: nothing answered after the first short Content-Length (the editor saw a hang)."""
    stream = (frame(INITIALIZE, length=len(json.dumps(INITIALIZE, ensure_ascii=False)))
              + frame(ping(1), length="twelve") + b"stray bytes\r\n" + frame(ping(2))
              + b"".join(frame(m) for m in END))
    answers, stderr = serve(stream)
    ids = [a.get("id") for a in answers]
    assert ids == [0, 1, 2, 99], (ids, stderr[-2000:])
    assert "capabilities" in answers[0]["result"]
    assert all(a["error"]["code"] == -32601 for a in answers[1:3])  # unknown method, answered
    assert "Content-Length" in stderr and "not a number" in stderr


def test_a_body_that_is_not_json_gets_a_parse_error() -> None:
    broken = b'{"jsonrpc": "2.0", "id": 7, "method": "compilot/ping", "params": {,}}'
    stream = (frame(INITIALIZE) + b"Content-Length: %d\r\n\r\n%s" % (len(broken), broken)
              + frame(ping(8)) + b"".join(frame(m) for m in END))
    answers, _ = serve(stream)
    by_id = {a.get("id"): a for a in answers}
    assert by_id[7]["error"]["code"] == -32700
    assert by_id[8]["error"]["code"] == -32601


def _inline(n: int, params: Any) -> dict[str, Any]:
    return {"jsonrpc": "2.0", "id": n, "method": "textDocument/inlineCompletion",
            "params": params}


def _params(**position: Any) -> dict[str, Any]:
    return {"textDocument": {"uri": "file:///tmp/x.py"}, "position": position,
            "context": {"triggerKind": 2}}


@pytest.fixture(scope="module")
def invalid_params_answers() -> dict[int, dict[str, Any]]:
    requests = [
        _inline(1, {**_params(line=0, character=0), "position": "3:4"}),
        _inline(2, _params(line=-1, character=0)),
        _inline(3, _params(line=2**64, character=0)),
        _inline(4, {"position": {"line": 0, "character": 0}, "context": {"triggerKind": 2}}),
        _inline(5, None),
        _inline(6, _params(line=0, character=0)),  # valid: answered with a result
    ]
    stream = frame(INITIALIZE) + b"".join(frame(m) for m in [*requests, *END])
    answers, _ = serve(stream)
    return {a["id"]: a for a in answers if "id" in a}


@pytest.mark.parametrize(("n", "field"), [
    (1, "$.params.position.line"), (2, "Position.line should be in range"),
    (3, "Position.line should be in range"),
    (4, "required field missing @ $.params.textDocument"),
    (5, "expected InlineCompletionParams @ $.params"),
])
def test_invalid_params_are_answered_with_the_field_named(
        invalid_params_answers: dict[int, dict[str, Any]], n: int, field: str) -> None:
    """Was: no answer (the id dropped), a traceback on stderr."""
    answer = invalid_params_answers[n]
    assert answer["error"]["code"] == -32602, answer
    assert field in answer["error"]["message"], answer


def test_a_valid_request_beside_invalid_ones_is_served(
        invalid_params_answers: dict[int, dict[str, Any]]) -> None:
    assert "result" in invalid_params_answers[6], invalid_params_answers[6]
