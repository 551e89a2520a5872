"""Adapter versions, the atomic `current` pointer, rollback and crash safety."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from compilot.pointer import BASE
from compilot.training.registry import AdapterInfo, Registry, RegistryError


def add(registry: Registry, version: str, parent: str = BASE) -> Path:
    staging = registry.staging()
    (staging / "adapter.gguf").write_bytes(b"GGUF" + version.encode())
    return registry.add(staging, AdapterInfo(version=version, method="kto", parent=parent,
                                             data={"rows": 8}))


def test_promote_and_rollback(tmp_path: Path) -> None:
    registry = Registry(tmp_path)
    assert registry.current() == BASE and registry.gguf(registry.current()) is None
    add(registry, "v1")
    assert registry.current() == BASE  # added is not promoted
    registry.promote("v1")
    add(registry, "v2", parent="v1")
    registry.promote("v2")
    assert registry.gguf(registry.current()) == tmp_path / "v2" / "adapter.gguf"
    assert registry.rollback() == "v1" and registry.current() == "v1"
    assert registry.info("v2").status == "retired"
    assert registry.rollback() == BASE
    with pytest.raises(RegistryError, match="nothing to roll back"):
        registry.rollback()
    assert [i.version for i in registry.versions()] == ["v1", "v2"]


def test_rejected_version_keeps_its_figures(tmp_path: Path) -> None:
    registry = Registry(tmp_path)
    add(registry, "v1")
    registry.reject("v1", {"compile@1": 0.2, "base compile@1": 0.3})
    info = registry.info("v1")
    assert info.status == "rejected" and info.evaluation["compile@1"] == 0.2
    assert registry.current() == BASE


def test_incomplete_or_duplicate_versions_are_refused(tmp_path: Path) -> None:
    registry = Registry(tmp_path)
    with pytest.raises(RegistryError, match="no adapter.gguf"):
        registry.add(registry.staging(), AdapterInfo(version="v1", method="kto", parent=BASE))
    add(registry, "v1")
    with pytest.raises(RegistryError, match="already exists"):
        add(registry, "v1")
    with pytest.raises(RegistryError, match="no adapter version"):
        registry.promote("v9")


def test_a_killed_round_leaves_current_unchanged(tmp_path: Path) -> None:
    registry = Registry(tmp_path)
    add(registry, "v1")
    registry.promote("v1")
    # A trainer process that is killed while it writes its adapter.
    script = (
        "import sys, time\n"
        "from pathlib import Path\n"
        "from compilot.training.registry import Registry\n"
        "staging = Registry(Path(sys.argv[1])).staging()\n"
        "with open(staging / 'adapter.gguf', 'wb') as f:\n"
        "    f.write(b'GGUF half')\n"
        "    f.flush()\n"
        "    print('writing', flush=True)\n"
        "    time.sleep(60)\n"
    )
    proc = subprocess.Popen([sys.executable, "-c", script, str(tmp_path)],
                            stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None and proc.stdout.readline().strip() == "writing"
    proc.kill()
    proc.wait(10)
    assert registry.current() == "v1"
    assert [i.version for i in registry.versions()] == ["v1"]
    removed = registry.clean()
    assert len(removed) == 1 and not removed[0].exists()


def test_a_dangling_pointer_falls_back_to_base(tmp_path: Path) -> None:
    registry = Registry(tmp_path)
    (tmp_path / "current").write_text("v7\n")
    assert registry.current() == BASE
