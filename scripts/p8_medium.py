"""P8 on a medium plan: 1,300 training snippets, m=3, ~40 records per synthetic person.

    HF_HUB_OFFLINE=1 .venv/bin/python scripts/p8_medium.py results/p8-medium

Same code as `s3t bench --only P8 --quick`, with these overrides (about an hour on a busy 2-core machine).
"""

import sys

from s3t.bench import run_bench

OVERRIDES = dict(limit=2000, shards=3, slices=3, epochs=1,
                 traffic={"subjects": 32, "zipf": 1.0, "singles": 8, "burst": 8, "gap": 0.5, "eval_texts": 300})

if __name__ == "__main__":
    run_bench(sys.argv[1] if len(sys.argv) > 1 else "results/p8-medium", quick=True, only="P8", **OVERRIDES)
