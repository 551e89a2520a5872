"""LSP's base protocol (``Content-Length`` frames) read so that one bad frame costs one message.

pygls reads headers with ``readline`` and trusts ``Content-Length``: a length two bytes short
(counted in characters instead of UTF-8 bytes, a common client bug with non-ASCII text) leaves
the body's tail in front of the next header, which then never matches, and the server answers
nothing again. This reader instead

* takes the body a short ``Content-Length`` cut off: the JSON value is read to its end;
* hands back what a long one swallowed: bytes after the end of the JSON value are the start of
  the next frame;
* reads a frame whose ``Content-Length`` is missing or not a number by the JSON value's extent;
* skips bytes outside any frame up to the next ``Content-Length`` header.

Each such repair is reported in :attr:`Frame.problems`. A body that is still not JSON is
answered with a parse error (-32700) to the id it holds, and params that do not fit the
method's type with -32602 naming the field (:func:`dispatch`); the reader goes on with the next
frame either way.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import re
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, BinaryIO

import cattrs
from lsprotocol.types import ResponseError
from pygls.exceptions import JsonRpcException, JsonRpcInvalidParams
from pygls.protocol import JsonRPCProtocol

log = logging.getLogger(__name__)

MAX_LINE = 64 * 1024
"""A header line longer than this is not a header: it is skipped as unframed input."""
MAX_UNFRAMED = 256 * 1024 * 1024
"""The largest body read without a usable Content-Length (by the extent of its JSON)."""

PARSE_ERROR = -32700
INVALID_REQUEST = -32600
INVALID_PARAMS = -32602

_HEADER = re.compile(rb"content-length[ \t]*:[ \t]*([^\r\n]*?)[ \t]*\r?\n\Z", re.I)
_OTHER_HEADER = re.compile(rb"[A-Za-z][A-Za-z0-9-]*[ \t]*:[^\r\n]*\r?\n\Z")
_STRUCTURAL = re.compile(rb'["\\{}\[\]]')
_ID = re.compile(rb'"id"\s*:\s*(-?\d{1,15}|"(?:[^"\\]|\\.){0,256}")')


@dataclass
class Frame:
    """One message's body, with what had to be repaired to find it."""

    body: bytes
    problems: list[str] = field(default_factory=list)


class _JsonExtent:
    """Finds where a JSON object or array ends, fed a chunk at a time (strings and escapes
    understood, nothing else checked: ``json.loads`` judges the result)."""

    def __init__(self) -> None:
        self.depth = 0
        self.started = False
        self.in_string = False
        self.skip = 0  # bytes at the start of the next chunk that a backslash escaped

    def feed(self, chunk: bytes) -> int | None:
        """The offset in ``chunk`` just past the value's end, or None if it goes on."""
        start, self.skip = self.skip, 0
        if not self.started:
            stripped = chunk.lstrip()
            if not stripped:
                return None
            if stripped[:1] not in (b"{", b"["):
                return 0  # not an object or array: nothing to measure
            self.started = True
            start = len(chunk) - len(stripped)
        for match in _STRUCTURAL.finditer(chunk, start):
            at = match.start()
            if at < start:
                continue  # escaped by the backslash before it
            byte = match.group()
            if self.in_string:
                if byte == b"\\":
                    start = at + 2
                    self.skip = max(0, start - len(chunk))
                elif byte == b'"':
                    self.in_string = False
            elif byte == b'"':
                self.in_string = True
            elif byte in (b"{", b"["):
                self.depth += 1
            elif byte in (b"}", b"]"):
                self.depth -= 1
                if self.depth == 0:
                    return match.end()
        return None


def json_end(data: bytes) -> int | None:
    """The offset just past the JSON object or array at the start of ``data`` (0 if ``data``
    does not start with one), or None if it is cut off."""
    return _JsonExtent().feed(data)


class FrameReader:
    """Frames from a byte stream (the server's stdin), resynchronising after bad input.

    Blocking; the server calls :meth:`next` on a thread of its own. ``stream`` is best an
    unbuffered one (``FileIO``): a daemon thread blocked in a buffered stdin's read holds its
    lock, and the interpreter aborts at exit when it cannot take it.
    """

    def __init__(self, stream: BinaryIO) -> None:
        self.stream = stream
        self._buffer = bytearray()
        self._eof = False

    # -- buffered input with push-back -------------------------------------------------

    def _fill(self) -> bool:
        """Read what the stream has (at least one byte, unless it ended)."""
        if self._eof:
            return False
        read1 = getattr(self.stream, "read1", None)
        chunk = read1(65536) if read1 is not None else self.stream.read(65536)
        if not chunk:
            self._eof = True
            return False
        self._buffer += chunk
        return True

    def _readline(self) -> bytes:
        """One line with its newline; a line longer than MAX_LINE comes back in pieces."""
        while True:
            end = self._buffer.find(b"\n")
            if end >= 0 or len(self._buffer) >= MAX_LINE or not self._fill():
                cut = end + 1 if 0 <= end < MAX_LINE else min(len(self._buffer), MAX_LINE)
                line = bytes(self._buffer[:cut])
                del self._buffer[:cut]
                return line

    def _read(self, n: int) -> bytes:
        while len(self._buffer) < n and self._fill():
            pass
        data = bytes(self._buffer[:n])
        del self._buffer[:n]
        return data

    def _unread(self, data: bytes) -> None:
        self._buffer[:0] = data

    def _read_value(self, extent: _JsonExtent, limit: int) -> bytes | None:
        """Bytes up to the end of the JSON value ``extent`` has begun; None if the input ends
        or a frame header turns up before it does (what was read then is left unread)."""
        taken = bytearray()
        while len(taken) < limit:
            if not self._buffer and not self._fill():
                break
            chunk = bytes(self._buffer[:limit - len(taken)])
            end = extent.feed(chunk)
            piece = chunk if end is None else chunk[:end]
            header = re.search(rb"\r?\nContent-Length[ \t]*:", bytes(taken[-32:]) + piece, re.I)
            if header is not None:
                self._unread(bytes(taken))
                return None
            taken += piece
            del self._buffer[:len(piece)]
            if end is not None:
                return bytes(taken)
        self._unread(bytes(taken))
        return None

    # -- frames ------------------------------------------------------------------------

    def next(self) -> Frame | None:
        """The next message's body, or None at the end of the input."""
        problems: list[str] = []
        length: int | None = None
        in_header = False
        while True:
            line = self._readline()
            if not line:
                if in_header or problems:
                    log.warning("input ended inside a frame: %s", "; ".join(problems) or
                                "no body after the header")
                return None
            header = _HEADER.search(line)
            if header is not None:
                if header.start() > 0:
                    problems.append(f"skipped {header.start()} bytes before a Content-Length "
                                    "header")
                value = header.group(1)
                length = int(value) if value.isdigit() else None
                if length is None:
                    problems.append(f"Content-Length {value[:40]!r} is not a number of bytes")
                in_header = True
            elif line.strip() == b"":
                if in_header:
                    frame = self._body(length, problems)
                    if frame is not None:
                        return frame
                    in_header, length = False, None
            elif in_header and _OTHER_HEADER.match(line):
                continue  # Content-Type and the like
            else:
                problems.append(f"skipped {len(line)} bytes of input outside any frame")

    def _body(self, length: int | None, problems: list[str]) -> Frame | None:
        if length is None:
            body = self._read_value(_JsonExtent(), MAX_UNFRAMED)
            if body is None:
                problems.append("a frame without a usable Content-Length held no JSON value")
                return None
            problems.append(f"read a {len(body)}-byte body by its JSON extent")
            return Frame(body, problems)
        data = self._read(length)
        extent = _JsonExtent()
        end = extent.feed(data)
        if end is None and data.strip():
            # Cut off: a Content-Length counted in characters (or UTF-16 units) is at most 3x
            # short of the bytes.
            rest = self._read_value(extent, 2 * length + 1024)
            if rest is not None:
                problems.append(f"Content-Length was {length}; the body was "
                                f"{length + len(rest)} bytes (counted in characters, "
                                "not UTF-8 bytes?)")
                return Frame(data + rest, problems)
        elif end and data[end:].strip():
            # Too long: what follows the value belongs to the next frame.
            self._unread(data[end:])
            problems.append(f"Content-Length was {length}; the body was {end} bytes")
            return Frame(data[:end], problems)
        return Frame(data, problems)


# -- messages --------------------------------------------------------------------------

def _request_id(body: bytes) -> int | str | None:
    """The id of the request a body that is not JSON was, if it can be read."""
    match = _ID.search(body)
    if match is None:
        return None
    try:
        value = json.loads(match.group(1))
    except ValueError:
        return None
    return value if isinstance(value, (int, str)) else None


def _camel(path: str) -> str:
    """``$.params.text_document`` as the client spelled it: ``$.params.textDocument``."""
    return re.sub(r"_([a-z])", lambda m: m.group(1).upper(), path)


def _described(exc: BaseException, _type: Any) -> str:
    if isinstance(exc, KeyError):
        return "required field missing"
    if isinstance(exc, ValueError) and str(exc):
        return f"invalid value ({str(exc)[:120]})"
    return cattrs.v.format_exception(exc, _type)


def _where(exc: BaseException) -> str:
    """What did not fit, each with the path of its field (``$.params.position.line``)."""
    cause = exc.__cause__ if exc.__cause__ is not None else exc
    if isinstance(cause, (cattrs.BaseValidationError, ValueError, TypeError, KeyError)):
        try:
            messages = cattrs.transform_error(cause, path="$", format_exception=_described)
        except Exception:  # noqa: BLE001 - a description, never a second failure
            messages = [str(cause)]
        return "; ".join(_camel(m) for m in messages[:5])
    return str(cause)


def dispatch(protocol: JsonRPCProtocol, body: bytes) -> None:
    """Hand one body to pygls; answer the request with an error if it cannot be handled."""
    send: Callable[..., None] = protocol._send_response  # noqa: SLF001 - pygls' responder
    try:
        data = json.loads(body)
    except (ValueError, UnicodeDecodeError) as exc:
        log.warning("a message is not JSON (%s): %r", exc, body[:120])
        send(_request_id(body), error=ResponseError(
            code=PARSE_ERROR, message=f"Parse error: the body is not JSON ({exc})"))
        return
    if not isinstance(data, dict):
        send(None, error=ResponseError(code=INVALID_REQUEST,
                                       message="Invalid request: a message is a JSON object"))
        return
    request_id = data.get("id") if "method" in data else None
    try:
        message = protocol.structure_message(data)
    except JsonRpcException as exc:
        where = _where(exc)
        method = data.get("method")
        log.warning("%s: invalid params: %s", method, where)
        if request_id is not None:
            code = INVALID_PARAMS if isinstance(exc, JsonRpcInvalidParams) else exc.code
            send(request_id, error=ResponseError(
                code=code, message=f"Invalid params for {method}: {where}"))
        return
    if message is data:  # not JSON-RPC (no "jsonrpc" member)
        send(request_id, error=ResponseError(
            code=INVALID_REQUEST, message='Invalid request: no "jsonrpc": "2.0" member'))
        return
    protocol.handle_message(message)


class _Answered(logging.Filter):
    """Drops pygls' traceback for params that did not fit: dispatch answers and logs them."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith("Unable to deserialize message")


async def serve(reader: FrameReader, protocol: JsonRPCProtocol,
                stop: threading.Event) -> None:
    """Read frames until the input ends or ``stop`` is set, dispatching each on this loop.

    The reader runs on a daemon thread: blocked in a read of stdin, it must not keep the
    process alive after ``exit``.
    """
    logging.getLogger("pygls.protocol.json_rpc").addFilter(_Answered())
    loop = asyncio.get_running_loop()
    frames: asyncio.Queue[Frame | None] = asyncio.Queue()

    def read() -> None:
        frame: Frame | None = None
        try:
            while not stop.is_set():
                frame = reader.next()
                loop.call_soon_threadsafe(frames.put_nowait, frame)
                if frame is None:
                    return
        except RuntimeError:
            return  # the loop has closed: the session is over
        except Exception:  # noqa: BLE001 - say why the input stopped, then end the session
            log.exception("could not read the client's input")
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(frames.put_nowait, None)

    threading.Thread(target=read, name="compilot-stdin", daemon=True).start()
    while not stop.is_set():
        frame = await frames.get()
        if frame is None:
            break
        for problem in frame.problems:
            log.warning("LSP framing: %s", problem)
        try:
            dispatch(protocol, frame.body)
        except Exception:  # noqa: BLE001 - one message must not end the session
            log.exception("could not handle a message")
        await asyncio.sleep(0)  # let the handler start before the next message is read
