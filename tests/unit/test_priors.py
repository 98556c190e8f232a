import math

import numpy as np
import pytest
from scipy import integrate, stats

from bayes_koa.kinds.common import prior_variable
from bayes_koa.spec.priors import DISTRIBUTIONS, PriorError, parse_prior


@pytest.mark.parametrize("text", ["HalfNormal(sigma=0.5)", "Normal(mu=0, sigma=50)", "HalfCauchy(beta=25)",
                                  "LogNormal(mu=-1.07, sigma=0.87)", "StudentT(nu=3, mu=-1, sigma=2.5)"])
def test_prior_prints_as_written(text):
    assert str(parse_prior(text)) == text


def test_parse_normalises_spacing_and_order():
    assert str(parse_prior(" Normal( sigma=2 ,mu=-1 ) ")) == "Normal(mu=-1, sigma=2)"


@pytest.mark.parametrize("text, fragment", [
    ("Halfnormal(sigma=1)", "unknown distribution 'Halfnormal'"),
    ("HalfNormal(0.5)", "give parameters by name"),
    ("HalfNormal(sigma=-1)", "sigma must be a finite positive number"),
    ("HalfNormal(scale=1)", "HalfNormal has parameters sigma, not 'scale'"),
    ("Normal(mu=0)", "Normal needs sigma"),
    ("HalfNormal(sigma=x)", "must be plain numbers"),
    ("__import__('os').system('true')", "write it like"),
    ("HalfNormal(sigma=1", "cannot read prior"),
    ("Uniform(lower=2, upper=1)", "lower must be below upper"),
])
def test_bad_prior_strings_get_clear_errors(text, fragment):
    with pytest.raises(PriorError, match=fragment.replace("(", r"\(").replace(")", r"\)")):
        parse_prior(text)


def _positive_mass(prior):
    return integrate.quad(lambda x: math.exp(prior.logp(x)), 0, np.inf, limit=200)[0]


@pytest.mark.parametrize("text", ["HalfNormal(sigma=0.5)", "HalfCauchy(beta=0.3)", "Exponential(lam=2)",
                                  "LogNormal(mu=-1.07, sigma=0.87)", "HalfStudentT(nu=3, sigma=0.5)",
                                  "LogStudentT(nu=5, mu=-1.5, sigma=0.9)", "Gamma(alpha=2, beta=3)",
                                  "InverseGamma(alpha=3, beta=1)"])
def test_positive_priors_integrate_to_one(text):
    # quad's default tolerance (1.5e-8 relative) is far below the 1e-6 asked here; any error in a
    # normalising constant (a missing factor 2 for half-distributions, the Jacobian of log-t) is O(1).
    assert _positive_mass(parse_prior(text)) == pytest.approx(1.0, abs=1e-6)


def test_logp_matches_scipy_for_real_line_priors():
    x = np.linspace(-3, 3, 7)
    assert np.allclose(parse_prior("Normal(mu=1, sigma=2)").logp(x), stats.norm.logpdf(x, 1, 2))
    assert np.allclose(parse_prior("StudentT(nu=4, mu=0, sigma=1.5)").logp(x), stats.t.logpdf(x, 4, 0, 1.5))


def test_log_student_t_is_a_t_on_the_log_scale():
    # P(tau < c) under LogStudentT equals the t cdf at log(c): the change of variables the docstring states
    p = parse_prior("LogStudentT(nu=5, mu=-1.0, sigma=0.8)")
    c = 0.5
    mass = integrate.quad(lambda x: math.exp(p.logp(x)), 0, c)[0]
    assert mass == pytest.approx(stats.t.cdf(math.log(c), 5, -1.0, 0.8), abs=1e-7)


def test_pymc_variable_matches_string_and_uses_data_containers():
    import pymc as pm

    with pm.Model() as m:
        prior_variable(parse_prior("HalfNormal(sigma=0.5)"), "tau")
    assert "prior__tau__sigma" in m.named_vars
    # the PyMC log density equals SciPy's (same parameterisation)
    lp = m.compile_logp(jacobian=False)({"tau_log__": np.log(0.3)})
    assert lp == pytest.approx(stats.halfnorm.logpdf(0.3, scale=0.5), rel=1e-10)


def test_every_distribution_has_a_density_branch():
    examples = {"Flat": "Flat()", "HalfFlat": "HalfFlat()", "Uniform": "Uniform(lower=0, upper=2)",
                "Cauchy": "Cauchy(alpha=0, beta=1)"}
    for name, fam in DISTRIBUTIONS.items():
        text = examples.get(name) or f"{name}(" + ", ".join(f"{p}=1" for p in fam.params) + ")"
        assert np.isfinite(parse_prior(text).logp(np.array([0.5]))).all(), name


# One proper example per family offered; PyMC's log density is the independent reference.
_EXAMPLES = {
    "Normal": "Normal(mu=1, sigma=2)", "StudentT": "StudentT(nu=4, mu=-1, sigma=0.5)",
    "Cauchy": "Cauchy(alpha=0.5, beta=2)", "Uniform": "Uniform(lower=-1, upper=3)",
    "HalfNormal": "HalfNormal(sigma=0.7)", "HalfCauchy": "HalfCauchy(beta=1.5)",
    "HalfStudentT": "HalfStudentT(nu=3, sigma=0.4)", "Exponential": "Exponential(lam=2)",
    "LogNormal": "LogNormal(mu=-0.9, sigma=0.8)", "LogStudentT": "LogStudentT(nu=5, mu=-1, sigma=0.8)",
    "Gamma": "Gamma(alpha=2, beta=3)", "InverseGamma": "InverseGamma(alpha=3, beta=2)",
}


def test_every_proper_family_has_an_example():
    proper = {k for k, f in DISTRIBUTIONS.items() if f.note != "improper"}
    assert proper == set(_EXAMPLES)


@pytest.mark.parametrize("family", sorted(_EXAMPLES))
def test_logp_equals_pymc_for_every_family(family):
    """Prior.logp (SciPy, used by the exact quadrature path) equals PyMC's log density, to 1e-6."""
    import pymc as pm

    prior = parse_prior(_EXAMPLES[family])
    xs = np.array([0.15, 0.6, 1.3, 2.7]) if prior.support == "positive" else np.array([-0.8, 0.1, 0.9, 2.2])
    kw = dict(prior.params)
    if family == "LogStudentT":  # x = exp(t): density of x is t(log x) / x
        ref = pm.logp(pm.StudentT.dist(**kw), np.log(xs)).eval() - np.log(xs)
    else:
        ref = pm.logp(getattr(pm, family).dist(**kw), xs).eval()
    # rtol 1e-6: PyTensor's constants and gammaln differ from SciPy's by up to ~4e-8 (measured, Gamma);
    # a wrong parameterisation (rate vs scale, half vs full) misses by O(1)
    np.testing.assert_allclose(prior.logp(xs), ref, rtol=1e-6, atol=1e-9)
