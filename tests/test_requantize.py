"""The served copy of a GGUF (``server/requantize.py``): made once with llama.cpp's own
quantizer, reused, remade when the file changes, and never in the way of serving the file."""

from __future__ import annotations

import logging
import os
import shutil
from pathlib import Path

import pytest

from compilot.models import describe, embedded_model_path
from compilot.server.engine import Engine, ModelLoadError
from compilot.server.requantize import served_file
from compilot.settings import ModelSettings, RangeError


@pytest.fixture(scope="module")
def model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy of the embedded Q4_1 GGUF that the tests may touch."""
    path = tmp_path_factory.mktemp("model") / "model.gguf"
    shutil.copyfile(embedded_model_path(), path)
    return path


def test_auto_serves_a_q8_0_copy_of_the_q4_1_model_made_once(model: Path,
                                                              tmp_path: Path) -> None:
    copy = served_file(model, "auto", tmp_path)
    assert copy.parent == tmp_path and copy != model
    assert describe(copy).quantization == "Q8_0"
    made = copy.stat().st_mtime_ns
    assert served_file(model, "auto", tmp_path) == copy  # the decision and the copy reused
    assert copy.stat().st_mtime_ns == made
    assert sorted(p.suffix for p in tmp_path.iterdir()) == [".auto", ".gguf"]


def test_a_changed_file_gets_a_new_copy_and_the_old_one_goes(model: Path,
                                                              tmp_path: Path) -> None:
    first = served_file(model, "auto", tmp_path)
    info = model.stat()
    os.utime(model, ns=(info.st_atime_ns, info.st_mtime_ns + 1_000_000_000))
    second = served_file(model, "auto", tmp_path)
    assert second != first and second.is_file() and not first.exists()
    assert len(list(tmp_path.iterdir())) == 2  # its decision and its copy


def test_off_and_types_without_slow_kernels_are_served_as_they_are(model: Path,
                                                                   tmp_path: Path) -> None:
    assert served_file(model, "off", tmp_path) == model
    q8 = served_file(model, "q8_0", tmp_path / "a")
    assert served_file(q8, "auto", tmp_path / "b") == q8  # Q8_0 is fast already
    assert describe(served_file(model, "q4_0", tmp_path / "c")).quantization == "Q4_0"


def test_a_file_llama_cpp_cannot_quantize_is_served_as_it_is(
        model: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    truncated = tmp_path / "truncated.gguf"
    truncated.write_bytes(model.read_bytes()[:5_000_000])
    with caplog.at_level(logging.WARNING):
        assert served_file(truncated, "q8_0", tmp_path / "cache") == truncated
    assert f"serving {truncated} as it is" in caplog.text
    assert not list((tmp_path / "cache").glob("*.gguf"))  # no partial copy left
    with pytest.raises(ModelLoadError, match=str(truncated)):  # llama.cpp's load says why
        Engine(truncated, ModelSettings(requantize="q8_0"))


def test_an_unwritable_cache_serves_the_file_as_it_is(
        model: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    blocked = tmp_path / "cache"
    blocked.write_text("a file where the cache folder should be")
    with caplog.at_level(logging.WARNING):
        assert served_file(model, "auto", blocked) == model
    assert "as it is" in caplog.text


def test_the_engine_serves_the_copy_which_predicts_as_the_file_does(model: Path) -> None:
    """The copy is the same model as far as llama.cpp's own kernels tell: over a real module
    its next-token choices agree with the file's at 94.7% of the positions here, where the
    file's exact weights (its F16 dequantization) agree with the Q4_1 kernels at 96.8% and with
    the copy at 96.3% (llama.cpp quantizes activations for the dot products of both types)."""
    import sysconfig

    import llama_cpp
    import numpy as np

    engine = Engine(model, ModelSettings(n_ctx=512))
    assert engine.served_path != model and engine.path == model  # the store names the file
    assert Engine(model, ModelSettings(n_ctx=512, requantize="off")).served_path == model
    text = Path(sysconfig.get_paths()["stdlib"], "textwrap.py").read_text()[2000:4000]
    choices = []
    for path in (model, engine.served_path):
        llm = llama_cpp.Llama(str(path), n_ctx=1024, logits_all=True, verbose=False)
        tokens = llm.tokenize(text.encode())
        llm.eval(tokens)
        choices.append(np.asarray(llm.scores[:len(tokens)]).argmax(axis=1))
    assert (choices[0] == choices[1]).mean() >= 0.9


def test_a_bad_setting_is_named() -> None:
    with pytest.raises(RangeError, match="model.requantize"):
        ModelSettings(requantize="q4_1")
