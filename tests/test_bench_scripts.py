"""Every benchmark script imports: they are run by hand, so a moved helper would otherwise go
unnoticed until someone measures (bench/latency.py and bench/train.py once imported helpers
that the demo no longer had)."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[1] / "bench"


@pytest.mark.parametrize("script", sorted(BENCH.glob("*.py")), ids=lambda p: p.name)
def test_bench_script_imports(script: Path) -> None:
    spec = importlib.util.spec_from_file_location(f"bench_{script.stem}", script)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # as an import would (dataclasses look their module up)
    try:
        spec.loader.exec_module(module)  # runs its imports; main() only under __main__
    finally:
        del sys.modules[spec.name]
    assert callable(getattr(module, "main", None)), f"{script.name} has no main()"



def test_no_script_is_named_as_a_standard_module() -> None:
    """A script runs with bench/ first on sys.path, so a bench/typing.py would be imported by
    the standard library in place of its own typing, in every script of the folder (it broke
    bench/study.py)."""
    assert [p.name for p in BENCH.glob("*.py") if p.stem in sys.stdlib_module_names] == []
