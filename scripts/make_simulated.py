"""Write the shipped SIMULATED data set: bayes_koa/koa/data/simulated/{trials.csv, outcomes.csv,
truth.json, README.md}.

    python scripts/make_simulated.py

Seed 20261126 (bayes_koa.koa.simulation.SEED). The files are exactly ``bayes_koa.koa.simulation.simulate(
seed=20261126).files``; tests/unit/test_simulation.py fails if they drift from a fresh run, so rerun
this script after any change to bayes_koa/simulation.py or to the bundled trials.csv.
"""

from __future__ import annotations

import sys
from pathlib import Path

from bayes_koa.koa.simulation import SEED, write_simulated

OUT = Path(__file__).resolve().parents[1] / "bayes_koa" / "koa" / "data" / "simulated"


def main() -> int:
    paths = write_simulated(OUT, seed=SEED)
    for name, path in paths.items():
        print(f"wrote {path}")
    print(f"SIMULATED data (seed {SEED}) in {OUT}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
