"""`compilot eval` on HumanEval and its repair variant with the embedded model: both modes from
the same generations, stored results."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path


def run_eval(root: Path, *args: str, code: int = 0) -> subprocess.CompletedProcess:
    env = {**os.environ, "COMPILOT_DATA_DIR": str(root),
           "COMPILOT_CONFIG": str(root / "none.toml")}
    done = subprocess.run([sys.executable, "-m", "compilot", "eval", *args], env=env,
                          capture_output=True, text=True, timeout=280, check=False)
    assert done.returncode == code, done.stderr[-3000:]
    return done


def test_eval_limit_5_on_humaneval(tmp_path: Path) -> None:
    done = run_eval(tmp_path, "--json", "--limit", "5", "--max-tokens", "48", "--samples", "2",
                    "--k", "1,2", "--both")
    result = json.loads(done.stdout)
    assert result["benchmark"] == "humaneval" and result["adapter"] == "base"
    assert set(result["modes"]) == {"server", "raw"}
    for mode, figures in result["modes"].items():
        assert figures["problems"] == 5 and figures["samples"] == 2
        for metric in ("compile", "exec", "pass"):
            one, two = figures[f"{metric}@1"], figures[f"{metric}@2"]
            assert 0.0 <= one <= two <= 1.0, (mode, figures)  # more samples never lower an @k
        assert figures["exec@1"] <= figures["compile@1"]
        assert figures["pass@1"] <= figures["exec@1"]
        assert 0.0 <= figures["edit_similarity"] <= 1.0
        assert 0.0 <= figures["codebleu"] <= 1.0
        assert {"codebleu.syntax_match", "codebleu.dataflow_match"} <= set(figures)
    stored = list((tmp_path / "evaluations").glob("*-base-humaneval-server-raw.json"))
    assert len(stored) == 1 and json.loads(stored[0].read_text()) == result


def test_eval_repair_reports_repair_figures(tmp_path: Path) -> None:
    done = run_eval(tmp_path, "--benchmark", "repair", "--limit", "2", "--max-tokens", "48",
                    "--no-codebleu")
    assert "repair_pass_rate" in done.stdout and "edit_distance_to_broken" in done.stdout
    stored = json.loads(next((tmp_path / "evaluations").glob("*-repair-server.json"))
                        .read_text())
    figures = stored["modes"]["server"]
    assert figures["problems"] == 2 and 0.0 <= figures["repair_pass_rate"] <= 1.0
    assert figures["edit_distance_to_broken"] >= 0.0


def test_eval_refuses_k_above_samples(tmp_path: Path) -> None:
    done = run_eval(tmp_path, "--k", "5", code=2)
    assert "--samples" in done.stderr
