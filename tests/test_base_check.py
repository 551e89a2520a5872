"""``training.base`` naming an HF checkpoint: accepted when it is the model the server runs
(architecture, layers, width, the token ids of a probe text in both tokenizers), refused with a
message naming what differs when it is not. On the real embedded model and the tiny models of
each architecture (``tests/arch_models.py``)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from compilot.models import embedded_model_path
from compilot.training.base import BaseMismatch, check_base, training_base
from tests.arch_models import Fixture, build


def test_each_architectures_checkpoint_matches_its_own_gguf(fixture: Fixture) -> None:
    check_base(fixture.hf_dir, fixture.gguf)


def test_the_embedded_models_materialized_checkpoint_matches_it(base_checkpoint: Path) -> None:
    check_base(base_checkpoint, embedded_model_path())


def test_another_architecture_is_refused_by_name(arch_dir: Path) -> None:
    llama, qwen2 = build("llama", arch_dir), build("qwen2", arch_dir)
    with pytest.raises(BaseMismatch, match=r"is a llama checkpoint, but the served model "
                                           r".*\.gguf is qwen2"):
        check_base(llama.hf_dir, qwen2.gguf)


def test_another_size_of_the_same_architecture_is_refused(arch_dir: Path) -> None:
    llama = build("llama", arch_dir)  # 2 layers; SmolLM2-135M is a llama of 30
    with pytest.raises(BaseMismatch, match=r"has 2 layers, the served model "
                                           r"SmolLM2-135M-Instruct\.Q4_1\.gguf has 30"):
        check_base(llama.hf_dir, embedded_model_path())


def test_a_checkpoint_with_another_tokenizer_is_refused(tmp_path: Path, arch_dir: Path) -> None:
    """Same weights and config, another vocabulary's tokenizer files: the rows would be token
    ids the served model reads as other text."""
    qwen2, starcoder2 = build("qwen2", arch_dir), build("starcoder2", arch_dir)
    mixed = tmp_path / "mixed"
    mixed.mkdir()
    for path in qwen2.hf_dir.iterdir():
        if not path.name.startswith(("tokenizer", "special_tokens", "vocab", "merges")):
            (mixed / path.name).symlink_to(path)
    for path in starcoder2.hf_dir.iterdir():
        if path.name.startswith(("tokenizer", "special_tokens", "vocab", "merges")):
            shutil.copy(path, mixed / path.name)
    with pytest.raises(BaseMismatch, match=r"reads qwen2-f32\.gguf's token ids as other text "
                                           r"\(token 0: id \d+ is '.+' there\)"):
        check_base(mixed, qwen2.gguf)


def test_a_folder_that_is_no_checkpoint_is_refused(tmp_path: Path) -> None:
    with pytest.raises(BaseMismatch, match="is not an HF checkpoint folder"):
        check_base(tmp_path, embedded_model_path())


def test_training_base_checks_what_is_configured(tmp_path: Path, arch_dir: Path,
                                                 base_checkpoint: Path) -> None:
    qwen2 = build("qwen2", arch_dir)
    assert training_base(str(qwen2.hf_dir), qwen2.gguf, tmp_path) == qwen2.hf_dir
    with pytest.raises(BaseMismatch):
        training_base(str(qwen2.hf_dir), embedded_model_path(), tmp_path)
    # The GGUF's own materialized checkpoint, configured by path, is taken as it is.
    cache_root = base_checkpoint.parent.parent
    assert training_base(str(base_checkpoint), embedded_model_path(),
                         cache_root) == base_checkpoint
    assert training_base(None, embedded_model_path(), cache_root) == base_checkpoint
