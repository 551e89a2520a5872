"""`compilot models`: what the embedded and the configured GGUF are, read from their metadata,
and a clear error for a file that is none; ``describe``'s FIM tokens agree with llama.cpp's."""

from __future__ import annotations

import json
from pathlib import Path

import gguf
import numpy as np
import pytest
from typer.testing import CliRunner

from compilot.cli import app
from compilot.cli.models import trainable
from compilot.models import NotAGGUF, describe, embedded_model_path
from compilot.server.engine import Engine
from compilot.settings import ModelSettings
from tests.arch_models import build


@pytest.fixture
def config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The config file the command reads (absent until a test writes it), in a fresh data
    dir."""
    monkeypatch.setenv("COMPILOT_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("COMPILOT_CONFIG", str(tmp_path / "config.toml"))
    monkeypatch.delenv("COMPILOT_SETTINGS", raising=False)
    return tmp_path / "config.toml"


def test_the_embedded_model_as_json(config: Path) -> None:
    result = CliRunner().invoke(app, ["models", "--json"])
    assert result.exit_code == 0, result.output
    [entry] = json.loads(result.stdout)
    assert entry["role"] == "embedded" and entry["serving"] and entry["error"] is None
    assert entry["path"] == str(embedded_model_path())
    assert entry["size_bytes"] == embedded_model_path().stat().st_size
    assert entry["architecture"] == "llama"
    assert 130e6 < entry["parameters"] < 140e6  # SmolLM2-135M (tied embeddings: one copy)
    assert entry["quantization"] == "Q4_1"
    assert entry["context_length"] == 8192
    assert entry["fim"] is False and entry["fim_tokens"] is None and entry["repo_tokens"] == {}
    assert entry["chat_template"] is True
    assert entry["trainable"] is True


def test_a_text_file_as_model_path_is_a_one_line_error(config: Path, tmp_path: Path) -> None:
    notes = tmp_path / "notes.txt"
    notes.write_text("not a model\n")
    config.write_text(f'[model]\npath = "{notes}"\n')
    result = CliRunner().invoke(app, ["models"])
    assert result.exit_code == 1
    assert result.exception is None or isinstance(result.exception, SystemExit)
    [error] = result.stderr.splitlines()
    assert error == f"✗ configured: {notes} is not a GGUF model file (it starts with b'not ')"
    # The embedded model is still described, in the table on stdout.
    assert "SmolLM2-135M-Instruct.Q4_1.gguf" in result.stdout
    for cell in ("llama", "134.5M", "Q4_1", "8192", "no (prefix-only completions)"):
        assert cell in result.stdout


def test_a_missing_model_path_is_named(config: Path, tmp_path: Path) -> None:
    config.write_text(f'[model]\npath = "{tmp_path / "gone.gguf"}"\n')
    result = CliRunner().invoke(app, ["models", "--json"])
    assert result.exit_code == 1
    configured = json.loads(result.stdout)[1]
    assert configured == {"role": "configured", "serving": True, "path": None,
                          "error": f"model file not found: {tmp_path / 'gone.gguf'}"}


@pytest.mark.parametrize(
    ("content", "message"),
    [
        pytest.param(b"", r"is not a GGUF model file \(it starts with b''\)", id="empty"),
        pytest.param(b"GGUF\x03\x00", r"not a readable GGUF", id="truncated"),
        pytest.param(b"\x7fELF\x02\x01", r"is not a GGUF model file", id="binary"),
    ],
)
def test_files_that_are_no_gguf(tmp_path: Path, content: bytes, message: str) -> None:
    path = tmp_path / "model.gguf"
    path.write_bytes(content)
    with pytest.raises(NotAGGUF, match=message):
        describe(path)


def test_a_folder_is_no_gguf(tmp_path: Path) -> None:
    with pytest.raises(NotAGGUF, match=r"cannot read model file"):
        describe(tmp_path)


def _write_gguf(path: Path, arch: str, keys: dict[str, int]) -> Path:
    """A GGUF of ``arch`` with five tokens, the given token-id keys and two small tensors, the
    F16 one the larger, and no general.file_type."""
    writer = gguf.GGUFWriter(path, arch)
    writer.add_context_length(4096)
    writer.add_tokenizer_model("gpt2")
    writer.add_token_list(["<s>", "a", "<pre>", "<suf>", "<mid>"])
    for key, value in keys.items():
        writer.add_uint32(key, value)
    writer.add_tensor("token_embd.weight", np.zeros((5, 8), np.float32))
    writer.add_tensor("output.weight", np.zeros((5, 16), np.float16))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


def test_fim_keys_and_an_untrainable_architecture(tmp_path: Path) -> None:
    """FIM from metadata keys, the deprecated ``prefix_token_id`` read over the current key as
    llama.cpp reads it; the quantization from the tensors when file_type is unset."""
    path = _write_gguf(tmp_path / "phi3.gguf", "phi3", {
        "tokenizer.ggml.fim_pre_token_id": 1, "tokenizer.ggml.prefix_token_id": 2,
        "tokenizer.ggml.suffix_token_id": 3, "tokenizer.ggml.fim_mid_token_id": 4})
    info = describe(path)
    assert (info.architecture, info.parameters, info.context_length) == ("phi3", 120, 4096)
    assert info.quantization == "F16"
    assert info.fim == {"prefix": "<pre>", "suffix": "<suf>", "middle": "<mid>"}
    assert not info.chat_template
    can, why = trainable(info.architecture)
    assert not can
    assert why.startswith("no: architecture 'phi3' is not supported for adapters (supported: "
                          "llama, qwen2, starcoder2")


def test_two_of_three_fim_tokens_are_no_fim(tmp_path: Path) -> None:
    path = _write_gguf(tmp_path / "half.gguf", "llama", {
        "tokenizer.ggml.fim_pre_token_id": 2, "tokenizer.ggml.fim_suf_token_id": 3})
    assert describe(path).fim is None


@pytest.mark.parametrize("model", ["embedded", "qwen2", "starcoder2"])
def test_fim_tokens_are_the_ones_the_engine_uses(model: str, arch_dir: Path) -> None:
    """The converters write no FIM keys (none of these GGUFs has one): llama.cpp finds the
    tokens by their spelling, Qwen's ``<|fim_prefix|>`` and StarCoder's ``<fim_prefix>``, and
    the engine StarCoder2's repository tokens as control tokens. ``describe`` must agree."""
    path = embedded_model_path() if model == "embedded" else build(model, arch_dir).gguf
    info = describe(path)
    engine = Engine(path, ModelSettings(n_ctx=128, n_batch=128))
    try:
        def text(token: int) -> str:
            return engine.llm.detokenize([token], special=True).decode()

        fim = engine.fim
        if fim is None:
            assert info.fim is None and info.repo_tokens == {}
            return
        assert info.fim == {"prefix": text(fim.prefix), "suffix": text(fim.suffix),
                            "middle": text(fim.middle)}
        assert info.repo_tokens == {role: text(token) for role, token in
                                    (("repo", fim.repo), ("file_sep", fim.file_sep))
                                    if token >= 0}
        assert set(info.repo_tokens) == {"repo", "file_sep"}  # both families have both
    finally:
        engine.llm.close()
