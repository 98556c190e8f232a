"""The same seed gives the same draws in the first process on a machine (every cache cold) and later.

Found 2026-12-02: with numba's fastmath on, the multi_outcome model drew different chains in a process
whose PyTensor and numba caches were empty than in a later one for the same seed (4 x 100 draws,
seeds 1 then 2: posterior mean of mu -7.72 and -8.26 in two cold processes, -8.45 in every warm one).
LLVM may reassociate floating-point sums differently when a numba callee is compiled in the session than
when it is loaded from numba's cache; HMC trajectories amplify last-bit differences. The compile cache now
compiles with fastmath off (inference/compile_cache.py), so the generated code follows IEEE order.

Check: one process with empty caches (bayes_koa compile cache, PyTensor compiledir, numba cache, all in
tmp_path) and a second one reusing them; the draws of both fits must be bit-for-bit equal (the claim is
exact reproducibility, so the tolerance is zero). About 1-4 minutes: the cold process compiles the
multivariate model from nothing.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

pytestmark = pytest.mark.slow

SCRIPT = r"""
import json, sys
import numpy as np
import bayes_koa as bk
from bayes_koa.kinds import prepare, load_spec
from bayes_koa.inference.sampling import sample_spec
from bayes_koa.koa.simulation import _bundled_trials

spec = load_spec("multi_outcome", rho_outcome=0.0, rho_time=0.0, parameterization="mixed")
out = {}
for seed in (1, 2):
    data = bk.simulate(design=_bundled_trials(), truth={"report_probability": {"Lequesne": 1.0, "Lysholm": 1.0}},
                       seed=seed, adverse_events=False)
    design, _ = prepare(spec, bk.effect_sizes(data, measure="SMD"))
    dt = sample_spec(spec, design, seed=seed, draws=100, tune=100, extra_groups=False)
    out[seed] = dt["posterior"]["mu"].values.ravel().tolist()
print("DRAWS" + json.dumps(out))
"""


def _run(tmp_path) -> dict:
    env = {**os.environ,
           "BAYES_KOA_CACHE": str(tmp_path / "bk"),
           "BAYES_KOA_FIT_CACHE": "off",  # the draws must come from the sampler, not a stored result
           "NUMBA_CACHE_DIR": str(tmp_path / "numba"),
           "PYTENSOR_FLAGS": f"base_compiledir={tmp_path / 'pytensor'}"}
    proc = subprocess.run([sys.executable, "-c", SCRIPT], env=env, capture_output=True, text=True, timeout=1800)
    assert proc.returncode == 0, proc.stderr[-2000:]
    line = [ln for ln in proc.stdout.splitlines() if ln.startswith("DRAWS")][-1]
    return json.loads(line[len("DRAWS"):])


def test_cold_and_warm_processes_draw_the_same_chains(tmp_path):
    cold = _run(tmp_path)
    warm = _run(tmp_path)
    for seed in cold:
        assert cold[seed] == warm[seed], f"seed {seed}: cold-cache and warm-cache draws differ"
