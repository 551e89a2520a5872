"""What a demo round trains: the mission's method (KTO with its SFT term), SFT only as the
fallback of a session with labels of one kind."""

from __future__ import annotations

from pathlib import Path

import pytest

from compilot.demo.setup import SIZES, demo_settings
from compilot.training.train import choose


@pytest.mark.parametrize("size", sorted(SIZES))
def test_a_demo_round_trains_kto_with_its_sft_term(size: str, tmp_path: Path) -> None:
    tr = demo_settings(SIZES[size], tmp_path, seed=0).training
    assert (tr.method, tr.auto_order, tr.kto_sft_weight) == ("auto", ["kto", "sft"], 1.0)
    both = choose(tr.method, {"desirable": 14, "undesirable": 6, "pairs": 5, "sft": 12},
                  tr.min_examples, tr.auto_order, tr.kto_sft_weight)
    assert both.method == "kto"
    assert "14 desirable and 6 undesirable labels: KTO with an SFT term (weight 1)" in both.reason
    # A session whose accepted completions all compiled has nothing for KTO to push away from:
    # the round trains SFT on them, and says why (no DPO: the gate rejected it at demo size).
    one_kind = choose(tr.method, {"desirable": 14, "undesirable": 0, "pairs": 5, "sft": 12},
                      tr.min_examples, tr.auto_order, tr.kto_sft_weight)
    assert one_kind.method == "sft" and "kto: not enough" in one_kind.reason
