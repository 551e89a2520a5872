#!/bin/bash
# A/B on one server build: an editor's request decoding its greedy candidate alone, the
# sampled ones after the answer (completion.alternatives_later = true, the default) against
# the three decoded side by side in the request (false); bench/keystrokes.py --files 8, two
# rounds, alternating order.
cd "$(dirname "$0")/../../.."
OUT=bench/results/keystrokes-alternatives
for round in 1 2; do
  for way in later with; do
    if [ $round = 2 ]; then way=$([ $way = later ] && echo with || echo later); fi
    .venv/bin/python bench/keystrokes.py --files 8 --keys 40 --alternatives $way \
      --json $OUT/$way-$round.json > /tmp/ks-$way-$round.log 2>&1
  done
done
echo done
