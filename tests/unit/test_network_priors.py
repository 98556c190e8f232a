"""The prior grammar's element priors (``d[HA]``) and the Uniform-on-SD rule: pure spec code, no PyMC."""

from __future__ import annotations

import pytest

from bayes_koa.kinds import load_spec, spec_from_text
from bayes_koa.spec.model_spec import element_key
from bayes_koa.spec.priors import PriorError, PriorSet, parse_prior

TEXT = """
schema_version = 1
name = "net_test"
[structure]
kind = "network"
levels = []
[priors.MD]
d = "Normal(mu=0, sigma=40)"
"d[HA]" = "Normal(mu=-3, sigma=2)"
[priors]
"d[PRP]" = "Normal(mu=-1, sigma=5)"
"""


def test_element_key_reads_name_and_label():
    assert element_key("d[HA]") == ("d", "HA")
    assert element_key("d[ BM autologous ]") == ("d", "BM autologous")
    for bad in ("d", "d[]", "[HA]", "d[a[b]]", "dHA]", 3):
        assert element_key(bad) is None


def test_element_priors_from_file_and_call_with_precedence():
    spec = spec_from_text(TEXT, measure="MD")
    pr = spec.prior_dict
    # measure table, default table, and the parameter's own prior all resolved; order: after d
    assert str(pr["d"]) == "Normal(mu=0, sigma=40)"
    assert str(pr["d[HA]"]) == "Normal(mu=-3, sigma=2)" and pr["d[HA]"].origin.startswith("model file")
    assert str(pr["d[PRP]"]) == "Normal(mu=-1, sigma=5)"
    names = list(spec.parameters)
    assert names[:3] == ["d", "d[HA]", "d[PRP]"]
    # a call argument wins over the file for the same element, and adds new elements
    spec2 = spec_from_text(TEXT, measure="MD", priors={"d[HA]": "Normal(mu=-5, sigma=1)",
                                                       "d[placebo2]": "Normal(mu=0, sigma=1)"})
    assert str(spec2.prior_dict["d[HA]"]) == "Normal(mu=-5, sigma=1)"
    assert spec2.prior_dict["d[HA]"].origin == "argument"
    assert "d[placebo2]" in spec2.prior_dict


def test_element_prior_of_unknown_parameter_is_an_error():
    with pytest.raises(PriorError, match="no parameter 'mu\\[HA\\]'"):
        load_spec("network", measure="MD", priors={"mu[HA]": "Normal(mu=0, sigma=1)"})


def test_element_priors_on_positive_parameters_must_be_positive():
    with pytest.raises(PriorError, match="tau\\[x\\] must be on positive values"):
        load_spec("network", measure="MD", priors={"tau[x]": "Normal(mu=0, sigma=1)"})


def test_with_priors_adds_and_replaces_elements():
    spec = load_spec("network", measure="SMD", levels=[])
    new = spec.with_priors({"d[HA]": "Normal(mu=-0.2, sigma=0.1)"})
    assert str(new.prior_dict["d[HA]"]) == "Normal(mu=-0.2, sigma=0.1)"
    assert list(new.parameters).index("d[HA]") == list(new.parameters).index("d") + 1
    again = new.with_priors({"d[HA]": "Normal(mu=0, sigma=0.5)"})
    assert str(again.prior_dict["d[HA]"]) == "Normal(mu=0, sigma=0.5)"
    assert len(again.parameters) == len(new.parameters)


def test_prior_set_with_element_keys_applies_to_models_with_that_parameter():
    ps = PriorSet(name="s", description="", citation="",
                  priors={"SMD": {"d[HA]": parse_prior("Normal(mu=-0.19, sigma=0.07)"),
                                  "mu": parse_prior("Normal(mu=0, sigma=1)")}})
    net = load_spec("network", measure="SMD", levels=[], priors=ps)
    assert str(net.prior_dict["d[HA]"]) == "Normal(mu=-0.19, sigma=0.07)"
    assert "mu" not in net.prior_dict  # not a network parameter: skipped, as prior sets do
    uni = load_spec("random_effects", measure="SMD", priors=ps)
    assert "d[HA]" not in uni.prior_dict and str(uni.prior_dict["mu"]) == "Normal(mu=0, sigma=1)"


def test_uniform_from_zero_is_a_prior_for_an_sd():
    # the NICE DSU TSD2 WinBUGS prior sd ~ dunif(0, 5)
    assert parse_prior("Uniform(lower=0, upper=5)").support == "positive"
    assert parse_prior("Uniform(lower=-1, upper=5)").support == "real"
    spec = load_spec("network", measure="logOR", levels=[], priors={"tau": "Uniform(lower=0, upper=5)"})
    assert str(spec.prior_dict["tau"]) == "Uniform(lower=0, upper=5)"
    with pytest.raises(PriorError, match="tau must be on positive values"):
        load_spec("network", measure="logOR", levels=[], priors={"tau": "Uniform(lower=-1, upper=5)"})


def test_comparator_evidence_prior_set_is_cited_and_sweeps_d_ha_only_under_smd():
    """The shipped set: HA vs placebo from a published knee-OA network meta-analysis (SMD 0.34, 95% CrI
    0.26 to 0.42, favouring HA), written in the package's direction (negative = benefit) with
    sigma = half the CrI width / 1.96; MD fits skip it (no MD value was found)."""
    from bayes_koa.spec.priors import load_prior_set
    from bayes_koa.workflows.sensitivity import resolve_prior_sets

    ps = load_prior_set("comparator_evidence")
    assert "0.34" in ps.citation and "0.26 to 0.42" in ps.citation and "https://" in ps.citation
    pr = ps.for_measure("SMD")["d[HA]"]
    assert pr.kwargs["mu"] == pytest.approx(-0.34) and pr.kwargs["sigma"] == pytest.approx((0.42 - 0.26) / 2 / 1.96, abs=5e-4)
    specs, skipped = resolve_prior_sets(load_spec("network", measure="SMD"), "comparator_evidence")
    (name, spec), = specs
    assert name == "comparator_evidence" and spec.prior_dict["d[HA]"] == pr and len(skipped) == 0
    assert str(spec.prior_dict["d"]) == str(load_spec("network", measure="SMD").prior_dict["d"])  # others unchanged
    with pytest.warns(UserWarning, match="comparator_evidence: no \\[priors.MD\\] table"):
        specs, skipped = resolve_prior_sets(load_spec("network", measure="MD"), "comparator_evidence")
    assert specs == [] and list(skipped["prior_set"]) == ["comparator_evidence"]
    # a model without d skips it, with the reason
    _, skipped = resolve_prior_sets(load_spec("source_hierarchical", measure="SMD"), None)
    assert "comparator_evidence" in set(skipped["prior_set"])
