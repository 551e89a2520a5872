"""Session fixtures shared by the tests: the materialized base checkpoint, a data dir holding
on-policy data collected from the embedded model, and the tiny models of each architecture
(``tests/arch_models.py``), each made once per run."""

from __future__ import annotations

from pathlib import Path

import pytest

from compilot.models import embedded_model_path
from tests.arch_models import ARCHITECTURES, Fixture, build

COLLECTED_TASKS = 12
COLLECTED_MODULES = ("textwrap.py", "colorsys.py", "shlex.py", "fnmatch.py", "bisect.py",
                     "calendar.py", "glob.py", "posixpath.py", "string.py", "heapq.py")


@pytest.fixture(scope="session", autouse=True)
def user_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The user cache (served GGUF copies, ``server/requantize.py``) in this run's temporary
    folder, for this process and the servers it starts, instead of ``~/.cache/compilot``."""
    import os

    from compilot.paths import CACHE_DIR_ENV

    root = tmp_path_factory.mktemp("user-cache")
    os.environ[CACHE_DIR_ENV] = str(root)
    return root


@pytest.fixture(scope="session")
def cache_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("cache")


@pytest.fixture(scope="session")
def base_checkpoint(cache_root: Path) -> Path:
    """The embedded GGUF dequantized to an HF checkpoint (~30 s, once)."""
    from compilot.training.base import materialize

    return materialize(embedded_model_path(), cache_root)


@pytest.fixture(scope="session")
def arch_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Where ``build`` puts the per-architecture models (each built once per run)."""
    return tmp_path_factory.mktemp("arch-models")


@pytest.fixture(scope="module", params=ARCHITECTURES)
def fixture(request: pytest.FixtureRequest, arch_dir: Path) -> Fixture:
    """Each architecture's tiny model in turn, HF checkpoint and GGUF (module-scoped, so that a
    module's tests run per architecture one after the other)."""
    return build(request.param, arch_dir)


@pytest.fixture(scope="session")
def collected(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A store of real completions by the embedded model, labelled by the real checker: what
    `compilot bootstrap` leaves after a run over a small repository of standard-library
    modules (as an editor session would leave it, marked origin "bootstrap")."""
    import os
    import shutil
    import sysconfig
    import tempfile

    from compilot.feedback.store import Store
    from compilot.paths import DataDir
    from compilot.server.engine import Engine, Sampling
    from compilot.settings import Settings
    from compilot.training.bootstrap import Bootstrap, plan

    # A fixed folder, not a numbered tmp one: a file's split (train or test) is a hash of its
    # URI, and the gate's held-out prompts must not come and go with pytest's numbering.
    repo = Path(tempfile.gettempdir()) / f"compilot-collected-{os.getuid()}"
    shutil.rmtree(repo, ignore_errors=True)
    repo.mkdir()
    for name in COLLECTED_MODULES:
        shutil.copy(Path(sysconfig.get_paths()["stdlib"]) / name, repo / name)
    root = tmp_path_factory.mktemp("collected")
    store = Store.in_dir(DataDir(root))
    engine = Engine(embedded_model_path())
    settings = Settings()
    try:
        tasks = plan(repo, settings, limit=COLLECTED_TASKS, max_body_lines=6).tasks
        Bootstrap(store, engine, adapter="base", settings=settings, root=repo,
                  sampling=Sampling.from_settings(settings.completion, n=3, max_tokens=40,
                                                  temperature=0.9, seed=0)).run(tasks)
    finally:
        engine.llm.close()
        store.close()
    return root
