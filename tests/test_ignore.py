"""Files matched by `.compilotignore` or the `logging.ignore` setting are never recorded."""

from __future__ import annotations

from pathlib import Path

import pytest

from compilot import settings as settings_mod
from compilot.feedback.store import Store
from compilot.paths import DataDir
from compilot.server.completion import CompletionService


@pytest.fixture
def service(tmp_path: Path) -> CompletionService:
    settings, _ = settings_mod.load({"logging": {"ignore": ["*.env"]}},
                                    path=tmp_path / "none.toml")
    (tmp_path / "proj" / "secrets").mkdir(parents=True)
    (tmp_path / "proj" / ".compilotignore").write_text("# private\nsecrets/\n*.key.py\n")
    svc = CompletionService(settings, Store.in_dir(DataDir(tmp_path / "data")))
    yield svc
    svc.close()


@pytest.mark.parametrize(
    ("relative", "logged"),
    [
        pytest.param("proj/main.py", True, id="ordinary"),
        pytest.param("proj/secrets/aws.py", False, id="ignored-folder"),
        pytest.param("proj/deep/api.key.py", False, id="ignored-glob-below"),
        pytest.param("proj/.env", False, id="setting"),
        pytest.param("elsewhere/main.py", True, id="outside-the-ignore-file"),
    ],
)
def test_ignore(service: CompletionService, tmp_path: Path, relative: str, logged: bool) -> None:
    assert service._logged((tmp_path / relative).as_uri()) is logged
