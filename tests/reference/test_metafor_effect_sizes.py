"""Every value in tests/reference/data/metafor_effect_sizes.json, reproduced by bayes_koa.effects.conversions.

The JSON holds R metafor 3.8-1 ``escalc``/``rma`` output printed with 10 significant digits.
Tolerance: ``atol=1e-8`` (as asked) plus ``rtol=1e-9``; the relative part is the printed
precision (half a unit in the 10th digit is 5e-10 relative) and only matters for the few values
above 10 (e.g. vi = 150.2222222222, whose last printed digit is 1e-10 x 100).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from bayes_koa.effects import conversions as cv

REF = json.loads((Path(__file__).parent / "data" / "metafor_effect_sizes.json").read_text())
NORMAND = REF["normand1999"]
MORRIS = REF["morris2008"]

# 10 printed significant digits: relative rounding 5e-10; absolute floor 1e-8 (see module doc)
ATOL, RTOL = 1e-8, 1e-9


def _col(block, key):
    return np.array([row[key] for row in block["data"]], dtype=float)


def _normand_args():
    return [_col(NORMAND, k) for k in ("m1i", "sd1i", "n1i", "m2i", "sd2i", "n2i")]


NORMAND_FUNCS = {
    "MD": lambda *a: cv.md(*a),
    "SMD": cv.smd,
    "SMDH": cv.smdh,
    "ROM": cv.rom,
    "MD_HO": lambda *a: cv.md(*a, vtype="HO"),
}


@pytest.mark.parametrize("measure", sorted(NORMAND_FUNCS))
def test_normand1999_two_group_measures(measure):
    yi, vi = NORMAND_FUNCS[measure](*_normand_args())
    np.testing.assert_allclose(yi, NORMAND[measure]["yi"], atol=ATOL, rtol=RTOL)
    np.testing.assert_allclose(vi, NORMAND[measure]["vi"], atol=ATOL, rtol=RTOL)


def test_every_block_of_the_json_is_tested():
    tested = set(NORMAND_FUNCS) | {"SMD_REML"}
    assert {k for k in NORMAND if k not in ("description", "data")} == tested
    morris_tested = {"SMCR_treatment", "SMCR_control", "SMCC_treatment", "SMCC_control",
                     "MC_treatment"}
    assert {k for k in MORRIS if k not in ("description", "data")} == morris_tested


def _arm(group):
    """Morris (2008) columns of one group: (post mean, pre mean, post SD, pre SD, n, r)."""
    n = _col(MORRIS, "npre" if group == "t" else "nc")
    return (_col(MORRIS, f"mpost_{group}"), _col(MORRIS, f"mpre_{group}"),
            _col(MORRIS, f"sdpost_{group}"), _col(MORRIS, f"sdpre_{group}"), n, _col(MORRIS, "ri"))


@pytest.mark.parametrize("group,key", [("t", "SMCR_treatment"), ("c", "SMCR_control")])
def test_morris2008_smcr(group, key):
    post, pre, _sdpost, sdpre, n, r = _arm(group)
    yi, vi = cv.smcr(post, pre, sdpre, n, r)
    np.testing.assert_allclose(yi, MORRIS[key]["yi"], atol=ATOL, rtol=RTOL)
    np.testing.assert_allclose(vi, MORRIS[key]["vi"], atol=ATOL, rtol=RTOL)


@pytest.mark.parametrize("group,key", [("t", "SMCC_treatment"), ("c", "SMCC_control")])
def test_morris2008_smcc(group, key):
    post, pre, sdpost, sdpre, n, r = _arm(group)
    yi, vi = cv.smcc(post, pre, sdpost, sdpre, n, r)
    np.testing.assert_allclose(yi, MORRIS[key]["yi"], atol=ATOL, rtol=RTOL)
    np.testing.assert_allclose(vi, MORRIS[key]["vi"], atol=ATOL, rtol=RTOL)


def test_morris2008_mc():
    post, pre, sdpost, sdpre, n, r = _arm("t")
    yi, vi = cv.mc(post, pre, sdpost, sdpre, n, r)
    np.testing.assert_allclose(yi, MORRIS["MC_treatment"]["yi"], atol=ATOL, rtol=RTOL)
    np.testing.assert_allclose(vi, MORRIS["MC_treatment"]["vi"], atol=ATOL, rtol=RTOL)


# --------------------------------------------------------------------------- REML (test-only)


def _reml(yi, vi):
    """Random-effects REML fit as metafor's rma(method="REML"), to numerical convergence.

    tau^2 maximises the restricted log-likelihood; Fisher scoring as in metafor (Viechtbauer 2005,
    J Educ Behav Stat 30:261), iterated until the step is below 1e-15.
    I^2 = 100 tau^2 / (tau^2 + s^2), s^2 the "typical" within-study variance
    (k - 1) sum(w) / ((sum w)^2 - sum(w^2)), w = 1/vi (Higgins & Thompson 2002).
    """
    k = len(yi)
    w0 = 1.0 / vi
    mu0 = np.sum(w0 * yi) / np.sum(w0)
    qe = float(np.sum(w0 * (yi - mu0) ** 2))
    tau2 = max(0.0, (qe - (k - 1)) / (np.sum(w0) - np.sum(w0**2) / np.sum(w0)))  # DL start
    for _ in range(1000):
        w = 1.0 / (vi + tau2)
        p = np.diag(w) - np.outer(w, w) / np.sum(w)
        py = p @ yi
        step = (py @ py - np.trace(p)) / np.trace(p @ p)
        tau2_new = max(0.0, tau2 + step)
        if abs(tau2_new - tau2) < 1e-15:
            tau2 = tau2_new
            break
        tau2 = tau2_new
    w = 1.0 / (vi + tau2)
    est = np.sum(w * yi) / np.sum(w)
    s2 = (k - 1) * np.sum(w0) / (np.sum(w0) ** 2 - np.sum(w0**2))
    return {"estimate": est, "se": np.sqrt(1.0 / np.sum(w)), "tau2": tau2,
            "I2": 100.0 * tau2 / (tau2 + s2), "QE": qe}


def test_normand1999_smd_reml_pooled():
    yi, vi = cv.smd(*_normand_args())
    got = _reml(yi, vi)
    ref = NORMAND["SMD_REML"]
    # Same tolerance as above: metafor stops its Fisher scoring when the tau^2 step is < 1e-5,
    # but scoring converges fast enough that its printed tau^2 agrees with the converged
    # optimum to the printed precision; a looser tolerance is not needed.
    for key in ("estimate", "se", "tau2", "I2", "QE"):
        np.testing.assert_allclose(got[key], ref[key], atol=ATOL, rtol=RTOL, err_msg=key)
