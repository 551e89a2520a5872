"""`compilot demo --rounds 1 --size tiny`: the whole loop on the embedded model, end to end."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow


@pytest.mark.timeout(1500)  # a hang guard: the loop with its evaluations took 280 s alone on an
# AMX Xeon, over 600 s on a busy AVX2-only EPYC (float32 training)
def test_a_tiny_demo_round_runs_the_whole_loop(tmp_path: Path, base_checkpoint: Path) -> None:
    config = tmp_path / "config.toml"
    # The checkpoint the session already materialized (the demo would make its own once).
    config.write_text(f'[training]\nbase = "{base_checkpoint}"\n', encoding="utf-8")
    env = {**os.environ, "COMPILOT_DATA_DIR": str(tmp_path / "data"),
           "COMPILOT_CONFIG": str(config)}
    done = subprocess.run([sys.executable, "-m", "compilot", "demo", "--rounds", "1",
                           "--size", "tiny", "--seed", "1"], env=env, capture_output=True,
                          text=True, timeout=1400, check=False)
    assert done.returncode == 0, (done.stdout[-3000:], done.stderr[-3000:])
    assert "round 0 (embedded model) against the last round" in done.stdout

    reports = list((tmp_path / "data" / "reports").glob("demo-*.html"))
    assert len(reports) == 1 and f"report: {reports[0]}" in done.stdout.replace("\n", "")
    page = reports[0].read_text(encoding="utf-8")
    assert page.count("<img src='data:image/png;base64,") == 2
    summary = json.loads(reports[0].with_suffix(".json").read_text())
    zero, one = summary["rounds"]
    assert zero["model"] == "base" and one["round"] == 1
    for r in (zero, one):
        evaluation = r["evaluation"]
        for figures in (evaluation["held_out"], evaluation["raw"]["held_out"]):
            assert figures["prompts"] == 4 and 0.0 <= figures["compile@1"] <= 1.0
        # The robustness set of the held-out functions, asked as plain clients ask.
        assert {"newline", "indented", "mid_line"} <= set(evaluation["robustness"])
        for figures in (evaluation["humaneval"], evaluation["raw"]["humaneval"]):
            assert figures["problems"] == 2
            assert figures["pass@1"] <= figures["exec@1"] <= figures["compile@1"]
    session = one["session"]
    assert session["requests"] == 4 and session["served_by"] == "base"
    assert 1 <= session["accepted"] <= session["shown"]
    assert one["training"]["steps"] == 2 and one["status"] in ("promoted", "rejected")
    # KTO with its SFT term, or SFT where the four tasks' labels were all of one kind.
    assert one["training"]["method"] in ("kto", "sft")
    assert ("KTO with an SFT term" in one["training"]["reason"]
            or "kto: not enough" in one["training"]["reason"])
    if one["status"] == "promoted":
        assert one["swap_s"] >= 0  # the running server served the new adapter

    # What the editor session left in the store: the accepts, their checks, the fixes.
    root = Path(summary["root"])
    db = sqlite3.connect(root / "events.db")
    accepted = db.execute("SELECT count(*) FROM events WHERE kind = 'accepted'").fetchone()[0]
    checked = db.execute("SELECT count(DISTINCT c.candidate_id) FROM checks c JOIN events e "
                         "ON e.candidate_id = c.candidate_id AND e.kind = 'accepted' "
                         "WHERE c.stage = 'compile'").fetchone()[0]
    labelled = db.execute("SELECT count(DISTINCT candidate_id) FROM checks "
                          "WHERE trigger = 'answer' AND stage = 'compile'").fetchone()[0]
    revisions = db.execute("SELECT count(*) FROM revisions").fetchone()[0]
    broken = db.execute("SELECT count(DISTINCT c.candidate_id) FROM checks c JOIN events e "
                        "ON e.candidate_id = c.candidate_id AND e.kind = 'accepted' "
                        "WHERE c.introduced = 1").fetchone()[0]
    db.close()
    # The broken accepts, and for how many "compilot: fix" had a checked fix ready.
    assert session["broken"] == broken and 0 <= session["fix_offered"] <= broken
    assert session["fix_share"] == (round(session["fix_offered"] / broken, 4) if broken
                                    else None)
    assert accepted == session["accepted"] and checked == accepted
    assert labelled > 0  # candidates not taken are labelled in the background too
    assert revisions == session["revisions"]
    versions = json.loads((root / "adapters" / one["model"] / "metadata.json").read_text())
    assert versions["status"] == one["status"]
