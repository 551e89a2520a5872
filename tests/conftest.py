"""Session fixtures shared by the training tests: the materialized base checkpoint and a data
dir holding on-policy data collected from the embedded model (each made once per run)."""

from __future__ import annotations

from pathlib import Path

import pytest

from compilot.models import embedded_model_path

COLLECTED_TASKS = 12


@pytest.fixture(scope="session")
def cache_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("cache")


@pytest.fixture(scope="session")
def base_checkpoint(cache_root: Path) -> Path:
    """The embedded GGUF dequantized to an HF checkpoint (~30 s, once)."""
    from compilot.training.base import materialize

    return materialize(embedded_model_path(), cache_root)


@pytest.fixture(scope="session")
def collected(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A store of real completions of stdlib function bodies by the embedded model, labelled by
    the real checker (training.selfplay), as an editor session would leave it."""
    from compilot.feedback.store import Store
    from compilot.paths import DataDir
    from compilot.server.engine import Engine, Sampling
    from compilot.settings import Settings
    from compilot.training.corpus import stdlib_holes
    from compilot.training.selfplay import collect

    root = tmp_path_factory.mktemp("collected")
    store = Store.in_dir(DataDir(root))
    engine = Engine(embedded_model_path())
    settings = Settings()
    try:
        collect(store, engine, stdlib_holes(COLLECTED_TASKS, seed=3), adapter="base",
                settings=settings, sampling=Sampling.from_settings(
                    settings.completion, n=3, max_tokens=40, temperature=0.9, seed=0))
    finally:
        engine.llm.close()
        store.close()
    return root
