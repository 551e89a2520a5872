"""`compilot demo`: the whole loop on the embedded model, headless, as an editor would drive it.

Each round: `compilot serve` (a real subprocess, over LSP) completes function bodies of real
standard-library files; the demo accepts the top item as an editor does, lets the compile
checks run, and where an accepted completion broke the code it plays the user's fix by
editing the reference body in (the server records the revision). Then a training round runs
on what the store collected (``training.rounds.run_round``: data, trl, GGUF adapter, gate),
the gate promotes or rejects the adapter, the running server swaps a promoted one in live,
and the next round's completions come from it. Held-out prompts (functions of other files)
and a HumanEval sample are never trained on; every model is scored on them, both on its raw
output and on what the server shows. The figures go to a table per round and to an HTML
report with plots.
"""

from compilot.demo.loop import run_demo
from compilot.demo.setup import SIZES, Size, demo_settings, prompts_at_holes, split_holes

__all__ = ["SIZES", "Size", "demo_settings", "prompts_at_holes", "run_demo", "split_holes"]
