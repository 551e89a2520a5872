"""The method study's bookkeeping (bench/study.py): its split agrees with the store's, and its
paired comparison counts the prompts where the two models differ."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType

from compilot.feedback import datasets as fd


def study() -> ModuleType:
    path = Path(__file__).resolve().parents[1] / "bench" / "study.py"
    spec = importlib.util.spec_from_file_location("bench_study", path)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_held_out_files_are_the_stores_test_split() -> None:
    s = study()
    files = [Path(f"/corpus/pkg/m{i}.py") for i in range(200)]
    held = [f for f in files if s.held_out(f)]
    assert 20 < len(held) < 60  # about HELD_OUT of them
    for f in files:
        split = fd.split_of(fd.file_id(f.as_uri()), s.HELD_OUT)
        assert (split == "test") is s.held_out(f)


def test_paired_counts_wins_and_losses_on_the_same_prompts() -> None:
    s = study()
    base = [True, True, False, False, True]
    other = [True, False, True, True, True]
    assert s.paired(base, other) == "+20 (2/1)"
    assert s.paired(base, other[:3]) == "-"
    humaneval_base = [[True, False, False], [True, True, False]]
    humaneval_other = [[True, True, True], [True, True, False]]
    assert s.paired(humaneval_base, humaneval_other, 2) == "+50 (1/0)"
    assert s.rate(humaneval_other, 1) == 1.0


def test_scores_are_kept_per_cpu_and_round_1_data_starts_from_the_committed_store(
        tmp_path: Path) -> None:
    from types import SimpleNamespace

    from compilot.feedback.store import Store

    s = study()
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text("model name\t: Intel(R) Xeon(R) Processor\nflags\t\t: fpu avx2 amx_bf16\n")
    key = s.machine_key(cpuinfo)
    assert key.startswith("intel-xeon-processor-")
    cpuinfo.write_text("model name\t: Intel(R) Xeon(R) Processor\nflags\t\t: fpu avx2\n")
    assert s.machine_key(cpuinfo) != key  # same name, other features: another machine

    fresh = SimpleNamespace(work=tmp_path / "work", machine=tmp_path / "work" / "machines" / key)
    round1 = s.Study.store(fresh, "round1")
    assert round1 == tmp_path / "work" / "data" / "round1" / "events.db"
    store = Store(round1, read_only=True)
    assert len(store.bootstrapped()) >= 300  # the committed bootstrap of the corpus
    store.close()
    assert s.Study.store(fresh, "round2-kto").parent.parent.parent == fresh.machine


def test_another_cpu_goes_on_in_a_folder_only_where_its_numerics_agree(tmp_path: Path) -> None:
    import json
    from types import SimpleNamespace

    s = study()
    committed = s.RESULTS / "amd-epyc-25fc08b1" / "scores"
    folder = s.machine_folder(tmp_path / "work", "amd-epyc-25fc08b1")
    # A new work folder starts from the machine's committed scores ...
    base = json.loads((folder / "scores" / "base.json").read_text())
    assert base == json.loads((committed / "base.json").read_text())
    # ... and keeps its own once it has them; an unknown machine starts empty.
    (folder / "scores" / "base.json").write_text("{}")
    assert s.machine_folder(tmp_path / "work", "amd-epyc-25fc08b1") == folder
    assert (folder / "scores" / "base.json").read_text() == "{}"
    assert not (s.machine_folder(tmp_path / "work", "no-such-cpu") / "scores").exists()

    # --part check: this CPU's held-out scores of the base against the folder's, per prompt.
    (folder / "scores" / "base.json").write_text(json.dumps(base))
    mine = json.loads(json.dumps(base))

    def scores(name: str, adapter: object, suites: tuple, machine: Path) -> dict:
        assert (name, adapter, suites) == ("base", None, ("held-out",))
        assert machine == tmp_path / "work" / "machines" / s.machine_key()
        return mine

    fake = SimpleNamespace(work=tmp_path / "work", machine=folder, scores=scores)
    assert s.check(fake) is True
    raw = mine["held-out"]["per_prompt"]["raw"]
    raw[0] = not raw[0]
    assert s.check(fake) is False


def test_the_lora_sweep_names_each_rank_and_alpha_once() -> None:
    s = study()
    # Alpha = 2 x r keeps the first sweep's names (their cached adapters and scores) ...
    assert s.sweep_name("kto+sft", 8, 16) == "sweep-kto+sft-r8"
    # ... another alpha at the same rank is another adapter.
    assert s.sweep_name("kto+sft", 16, 64) == "sweep-kto+sft-r16-a64"
    assert len({s.sweep_name("kto", r, a) for r in (4, 8, 16) for a in (8, 16, 32)}) == 9
    assert s.numbers("4, 8,32") == [4, 8, 32] and s.numbers("") == []
