"""Model files and priors: typos are errors, never a silent fall-back to defaults; priors are finite (issue 10)."""

from __future__ import annotations

import numpy as np
import pytest
import xarray as xr

import bayes_koa as bk
from bayes_koa.inference.sampling import SamplingInterrupted, check_complete
from bayes_koa.spec import PriorError, SpecError, parse_prior

BASE = 'schema_version = 1\nname = "t"\n[structure]\nkind = "random"\n'


@pytest.mark.parametrize("extra, error, fragment", [
    ('[priros.MD]\ntau = "HalfNormal(sigma=1)"\n', SpecError, "unknown top-level key 'priros'.*did you mean 'priors'"),
    ('[priors.MD]\ntua = "HalfNormal(sigma=1)"\n', PriorError, "has no parameter 'tua'.*did you mean 'tau'"),
    ('[priors.md]\ntau = "HalfNormal(sigma=1)"\n', SpecError, "unknown effect measure 'md'.*did you mean 'MD'"),
])
def test_model_file_typos_are_errors(tmp_path, extra, error, fragment):
    path = tmp_path / "t.toml"
    path.write_text(BASE + extra)
    with pytest.raises(error, match=fragment):
        bk.load_spec(path, measure="MD")


def test_a_correct_file_table_is_used(tmp_path):
    path = tmp_path / "t.toml"
    path.write_text(BASE + '[priors.MD]\ntau = "HalfNormal(sigma=3)"\n')
    spec = bk.load_spec(path, measure="MD")
    assert str(spec.prior_dict["tau"]) == "HalfNormal(sigma=3)" and "model file" in spec.prior_dict["tau"].origin


@pytest.mark.parametrize("text", ["Normal(mu=-inf, sigma=1)", "Normal(mu=0, sigma=inf)", "Uniform(lower=0, upper=inf)"])
def test_prior_parameters_must_be_finite(text):
    with pytest.raises(PriorError, match="finite"):
        parse_prior(text)


def _trace(chains, draws, nan_from=None):
    x = np.random.default_rng(0).normal(size=(chains, draws))
    if nan_from is not None:
        x[:, nan_from:] = np.nan  # how nutpie pads a trace it was interrupted in
    return xr.DataTree.from_dict({"posterior": xr.Dataset({"mu": (("chain", "draw"), x)})})


def test_a_partial_trace_never_passes_for_a_result():
    check_complete(_trace(2, 50), 2, 50)
    with pytest.raises(SamplingInterrupted, match="60 of 100 draws complete"):
        check_complete(_trace(2, 50, nan_from=30), 2, 50)
    with pytest.raises(SamplingInterrupted, match="1 chains x 50 draws"):
        check_complete(_trace(1, 50), 2, 50)


def test_tree_depth_hits_are_reported():
    """Draws at nutpie's maximum tree depth (sample_stats/maxdepth_reached) become a stated problem."""
    from bayes_koa.inference.diagnostics import diagnose, diagnostics_flag

    dt = _trace(4, 500)
    hits = np.zeros((4, 500), dtype=bool)
    hits[:, :415] = True  # 1,660 of 2,000 draws, as in the adversarial report
    dt["sample_stats"] = xr.DataTree(xr.Dataset({"diverging": (("chain", "draw"), np.zeros((4, 500), bool)),
                                                 "maxdepth_reached": (("chain", "draw"), hits)}))
    d = diagnose(dt)
    assert d.attrs["max_treedepth_hits"] == 1660
    assert any("1660 of 2000 draws hit the maximum tree depth" in p for p in d.attrs["problems"])
    assert diagnostics_flag(d)["ok"] is False


def test_poor_sampling_travels_with_summary_rank_pairwise_and_claims():
    """Issue 10, item 7: 2 chains x 15 draws after 15 tuning steps cannot reach R-hat <= 1.01 and bulk
    ESS >= 100 per chain for the source model; every table made from that fit must say so."""
    import warnings

    from bayes_koa.inference.diagnostics import SamplingWarning

    eff = bk.effect_sizes(bk.load_simulated(), measure="MD", outcomes=["VAS"], times=[6])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", SamplingWarning)  # the warning is the point; it is checked below
        res = bk.fit(eff, model="source_hierarchical", measure="MD", draws=15, tune=15, chains=2, seed=1)
    tables = {"summary": res.summary(), "rank": res.rank(), "claims": res.claims()}
    for name, table in tables.items():
        flag = table.attrs["diagnostics"]
        assert flag["ok"] is False, name
        assert any("R-hat" in p or "ESS" in p for p in flag["problems"]), (name, flag["problems"])
    assert not tables["claims"]["diagnostics_ok"].any()
