#!/bin/bash
# A/B: the session's starting code (213950d) against HEAD, bench/keystrokes.py --files 8, alternating
cd /work/main
NEW=$(git rev-parse HEAD)
for round in 1 2; do
  git checkout -q 213950d -- server compilot
  .venv/bin/python bench/keystrokes.py --files 8 --keys 40 --json /tmp/ab-old-$round.json > /tmp/ab-old-$round.log 2>&1
  git checkout -q $NEW -- server compilot
  .venv/bin/python bench/keystrokes.py --files 8 --keys 40 --json /tmp/ab-new-$round.json > /tmp/ab-new-$round.log 2>&1
done
git status --short
echo done
