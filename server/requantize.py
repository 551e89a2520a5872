"""The GGUF the engine loads: the user's file, or a copy of it in a type that llama.cpp's CPU
kernels evaluate faster, made once per file and kept in the user's cache.

Why: a first suggestion in a file is mostly prompt evaluation, and llama.cpp's CPU backend
evaluates some quantization types much faster than others. Its CPU "repack" kernels and its
int8 dot products serve Q4_0, IQ4_NL, Q8_0 and the K-quants; the legacy affine types (Q4_1,
Q5_0, Q5_1) have neither. The embedded SmolLM2-135M is Q4_1: on 2 cores (AMD EPYC, AVX-512,
llama-cpp-python 0.3.36, healed windows of median 554 tokens, n_batch 256) it evaluated 318
tokens/s where its Q8_0 copy evaluated 526, and both decoded at 11.1-11.3 ms per token
(``bench/requantize.py``, side by side). Q8_0 holds every Q4_1/Q5_x weight to within 1/254
of its block's largest magnitude, a step some 17 times finer than Q4_1's own, so the copy is
the same model up to near-ties: of HumanEval's 164 problems, compile@1 as shown passed 3
only with the copy and 2 only with the file (raw: 13 and 8), which greedy decoding breaks
one way or the other.

``model.requantize`` says what to do: ``auto`` makes a Q8_0 copy of a legacy-type GGUF of at
most 1 GiB (a large model's decoding is bound by memory bandwidth, where Q8_0's 8.5 bits per
weight against Q4_1's 5 would slow every token: that is not measured here, so it is not done),
``off`` loads the file as it is, and a type name (``q8_0``, ``q4_0``, ``f16``) makes that copy of
any file. The copy is keyed by the file's path, size and modification time and by the
llama-cpp-python version that wrote it (a GGUF holds no CPU-specific layout: llama.cpp repacks
at load time, so one copy serves every CPU); older copies of the same file are removed.
Anything that goes wrong is logged and the original file is served.
"""

from __future__ import annotations

import ctypes
import hashlib
import logging
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

SLOW_TYPES = frozenset({"Q4_1", "Q5_0", "Q5_1"})
"""Types without repacked or int8 CPU kernels, which ``auto`` copies to Q8_0."""
AUTO_MAX_BYTES = 1 << 30
"""``auto`` copies files up to this size only (see the module docstring)."""
NO_COPY = "none"
SERVED_DIR = "served"
"""The user cache's folder of copies."""


def served_file(path: Path, requantize: str, cache: Path) -> Path:
    """The file to load for ``path`` under ``model.requantize`` (``cache``: where copies live)."""
    if requantize == "off":
        return path
    try:
        import llama_cpp

        stat = path.stat()
        source = hashlib.sha256(str(path.resolve()).encode()).hexdigest()[:16]
        version = hashlib.sha256(
            f"{stat.st_size}:{stat.st_mtime_ns}:{llama_cpp.__version__}".encode()
        ).hexdigest()[:12]
        stem = f"{source}-{version}"
        target = requantize if requantize != "auto" else _auto_target(path, cache / f"{stem}.auto")
        if target == NO_COPY:
            return path
        copy = cache / f"{stem}.{target}.gguf"
        if not copy.is_file():
            _write(path, copy, target, llama_cpp)
            for old in cache.glob(f"{source}-*"):  # copies of an earlier version of the file
                if not old.name.startswith(stem):
                    old.unlink(missing_ok=True)
        return copy
    except (OSError, RuntimeError, ValueError) as exc:
        log.warning("serving %s as it is: no %s copy (%s)", path, requantize, exc)
        return path


def _auto_target(path: Path, decision: Path) -> str:
    """``q8_0`` for a small GGUF of a slow type, else ``none``; decided once per file version
    (reading the type takes seconds) and remembered in ``decision``."""
    try:
        return decision.read_text().strip()
    except OSError:
        pass
    from compilot.models import NotAGGUF, describe

    try:
        info = describe(path)
    except NotAGGUF:
        return NO_COPY  # llama.cpp's load says what is wrong with it
    target = "q8_0" if info.quantization in SLOW_TYPES and info.size_bytes <= AUTO_MAX_BYTES \
        else NO_COPY
    decision.parent.mkdir(parents=True, exist_ok=True)
    _replace(decision, lambda tmp: tmp.write_text(target + "\n"))
    return target


def _write(path: Path, copy: Path, target: str, llama_cpp: Any) -> None:
    """Quantize ``path`` to ``target`` into ``copy``, whole or not at all."""
    params = llama_cpp.llama_model_quantize_default_params()
    params.ftype = getattr(llama_cpp, f"LLAMA_FTYPE_MOSTLY_{target.upper()}")
    params.allow_requantize = True
    params.nthread = os.cpu_count() or 1
    copy.parent.mkdir(parents=True, exist_ok=True)
    # llama.cpp logs every tensor it converts; its Python callback prints below ERROR only
    # when this logger lets it (``Llama(verbose=False)`` raises it the same way).
    logging.getLogger("llama-cpp-python").setLevel(logging.ERROR)

    def quantize(tmp: Path) -> None:
        code = llama_cpp.llama_model_quantize(
            str(path).encode(), str(tmp).encode(), ctypes.byref(params))
        if code != 0:
            raise RuntimeError(f"llama.cpp could not quantize it to {target} (code {code})")

    log.info("writing a %s copy of %s to %s, once", target, path, copy)
    _replace(copy, quantize)


def _replace(dest: Path, write: Callable[[Path], object]) -> None:
    """Write through ``write(tmp)`` into a temporary file beside ``dest``, then rename it into
    place: a process killed half-way leaves no partial file that a later one would trust."""
    fd, name = tempfile.mkstemp(prefix=f".{dest.name}-", dir=dest.parent)
    os.close(fd)
    tmp = Path(name)
    try:
        write(tmp)
        os.replace(tmp, dest)
    finally:
        tmp.unlink(missing_ok=True)
