"""Prior sweeps over every named set (many fits): run with `make test-slow`.

Data: the shipped SIMULATED data set (VAS at month 6, MD in mm).
"""

from __future__ import annotations

import warnings

import matplotlib

matplotlib.use("Agg")

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402

import bayes_koa as bk  # noqa: E402
from bayes_koa import cli# noqa: E402
from bayes_koa.workflows import sensitivity as ps  # noqa: E402
from bayes_koa.inference.diagnostics import SamplingWarning# noqa: E402
from bayes_koa.koa.simulation import load_simulated# noqa: E402

pytestmark = pytest.mark.slow

KW = dict(outcome="VAS", time=6, seed=20261126, draws=500, tune=500, chains=4, warn=False)


@pytest.fixture(scope="module")
def vas_md():
    data = load_simulated()
    eff = bk.effect_sizes(data, measure="MD", outcomes=["VAS"])
    eff.attrs.update(simulated=True, source=str(data.source))
    return eff


def test_every_md_set_equals_a_plain_fit(vas_md):
    """The sweep over all named sets with an MD table gives, set by set, the draws of bayes_koa.fit
    under that set (same seed and settings), and compiles one model per new prior-family signature."""
    ref = bk.fit(vas_md, "source_hierarchical", **KW)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", SamplingWarning)
        sweep = ps.sensitivity(ref)
    names = [n for n in sweep.prior_sets if n != "reference"]
    assert len(names) == 9  # the named sets with a [priors.MD] table (rhodes_* and turner_* have none)
    assert set(sweep.runs.loc[sweep.runs["prior_set"] != "reference", "path"]) == {ps.PATH_MCMC}
    specs = dict(ps.resolve_prior_sets(ref.spec)[0])
    families = {specs[n].structure_key() for n in names} - {ref.spec.structure_key()}
    assert sweep.table.attrs["compiled_models"] == len(families)
    for name in names:
        plain = bk.fit(vas_md, "source_hierarchical", priors=name, **KW)
        for var in ("mu", "tau", "sigma_source", "source_mean"):
            np.testing.assert_array_equal(sweep.posteriors[name][var].values, plain.dt["posterior"][var].values,
                                          err_msg=f"{name}: {var}")
        # claims are computed on the refit exactly as on a fit
        if "claims from" in sweep.table.attrs["claims"]:
            c = plain.claims().dropna(subset=["probability"]).set_index("claim")["probability"]
            t = sweep.table[(sweep.table["prior_set"] == name) & (sweep.table["kind"] == "claim")]
            got = dict(zip(t["quantity"].str.removeprefix("claim: "), t["value"]))
            assert got == pytest.approx(c.to_dict(), abs=1e-12)


def test_exact_path_agrees_with_mcmc(vas_md):
    """random_effects: the quadrature rows and MCMC refits under the same priors agree within Monte
    Carlo error. 4 MC SEs: a false alarm has probability ~6e-5 per comparison."""
    ref = bk.fit(vas_md, "random_effects", **KW)
    sets = ["tau_small", "tau_large", "sceptical", "heavy_tailed"]
    exact = ps.sensitivity(ref, sets).table.set_index(["prior_set", "quantity"])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", SamplingWarning)
        mcmc = ps.sensitivity(ref, sets, method="mcmc").table.set_index(["prior_set", "quantity"])
    assert set(exact["path"]) == {ps.PATH_EXACT}
    assert set(mcmc.loc[sets, "path"]) == {ps.PATH_MCMC}
    for name in ["reference"] + sets:
        for q in ("mu", "tau"):
            se = mcmc.loc[(name, q), "mcse"]
            assert abs(mcmc.loc[(name, q), "mean"] - exact.loc[(name, q), "mean"]) <= 4 * se, (name, q)
        # a probability estimated as 0 or 1 from n = 2000 draws has MC SE 0 but may be off by ~1/n
        se = mcmc.loc[(name, "P(mu<0)"), "mcse"]
        assert abs(mcmc.loc[(name, "P(mu<0)"), "value"] - exact.loc[(name, "P(mu<0)"), "value"]) <= 4 * se + 1 / 2000


def test_cli_writes_the_report(tmp_path, capsys):
    out = tmp_path / "report"
    # the kind's sampler settings (4 x (2000 + 2000) at 0.99): the run must pass its diagnostics and exit 0
    # (with 2 x 300 or 4 x 1000 draws it exits 3 with the sampling-problems banner; test_cli_reliability covers that)
    rc = cli.main(["sensitivity", "--prior-sets",
                   "tau_small,source_sd_narrow", "--out", str(out)])
    assert rc == 0, capsys.readouterr().out[-2000:]
    text = capsys.readouterr().out
    assert text.splitlines()[0].startswith("SIMULATED")
    assert "Conclusions that hold under every prior set:" in text and "Conclusions that flip:" in text
    assert "HalfNormal(sigma=3)" in text  # tau_small's resolved tau prior is shown
    for name in ("sensitivity.csv", "flips.csv", "sensitivity_priors.csv"):
        lines = (out / name).read_text().splitlines()
        assert lines[0].startswith("# SIMULATED"), name
    table = pd.read_csv(out / "sensitivity.csv", comment="#")
    assert list(dict.fromkeys(table["prior_set"])) == ["reference", "tau_small", "source_sd_narrow"]
    assert (out / "sensitivity.png").stat().st_size > 10_000
