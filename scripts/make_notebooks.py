"""Write the notebooks in notebooks/ from the cell lists below (outputs are not committed).

Run: .venv/bin/python scripts/make_notebooks.py. The notebooks are executed by
tests/test_notebooks.py (with BAYES_KOA_FAST=1, fewer draws) so they never go stale.
"""

from pathlib import Path

import nbformat as nbf

HERE = Path(__file__).resolve().parent.parent / "notebooks"

FAST = '''import os
FAST = os.environ.get("BAYES_KOA_FAST") == "1"   # CI runs the notebooks with fewer draws
DRAWS = dict(draws=300, tune=300) if FAST else {}'''


def md(text):
    return nbf.v4.new_markdown_cell(text.strip())


def code(text, tag=None):
    """A code cell; ``tag`` names it for the notebook tests, which check what the cell shows."""
    cell = nbf.v4.new_code_cell(text.strip())
    if tag:
        cell.metadata["tags"] = [tag]
    return cell


def write(name, cells):
    nb = nbf.v4.new_notebook()
    nb.cells = cells
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    path = HERE / name
    nbf.write(nb, path)
    print("wrote", path)


THIN = [
    md("""
# What the real bundled data can and cannot tell

This notebook fits the **real** extracted numbers shipped in `bayes_koa/koa/data/koa_msc/` (every number with its
published source). Of 33 trials with designs, only four have outcome numbers, and for one of them the per-arm
sample sizes are not reported. The point is to show how bayes_koa reports what it left out, why, and which
parameters the data cannot inform, instead of printing confident-looking numbers.
"""),
    code(FAST),
    code("""
import warnings
import pandas as pd
import bayes_koa as bk

with warnings.catch_warnings(record=True) as caught:   # the loader warns about two documented caveats
    warnings.simplefilter("always")
    data = bk.load_koa_msc()
for w in caught:
    print("WARNING:", w.message)
data
"""),
    md("""
## Effect sizes, and every comparison left out

`effect_sizes` keeps every trial x comparison x outcome x time it could not compute, with the reason.
Medians and IQRs are converted with Wan et al. (2014) and marked in `estimated`.
"""),
    code("""
eff = bk.effect_sizes(data, measure="SMD")
usable = eff[eff.excluded_reason == ""]
print(len(eff), "rows;", len(usable), "usable")
usable[["trial_id", "comparison", "outcome", "time_months", "yi", "sei", "n_msc", "n_control", "estimated"]].round(3)
"""),
    code("""
eff[eff.excluded_reason != ""].groupby("excluded_reason").trial_id.unique().to_frame("trials")
"""),
    md("""
Lamo-Espinosa 2016 reports medians (IQR) but not the number of patients in each MSC arm, so its standard errors
cannot be computed. If you have a source for those numbers, pass them with
`bk.effect_sizes(data, n_override={"LamoEspinosa_2016": {"msc_low": ..., "msc_high": ...}})`; the table will
record them as `n_from = "user"`. We do not guess them here.

## A meta-analysis of one trial

Only Lamo-Espinosa 2020 has usable WOMAC totals. A random-effects fit at 12 months is possible, but one
trial says almost nothing about the between-trial SD: its posterior keeps most of the prior's variance
(contraction near or below 0.2 in the table), so the interval for mu and for a new trial is as the  
prior on tau makes it.
"""),
    code("""
res = bk.fit(eff, "random_effects", outcome="WOMAC_total", time=12, seed=1, **DRAWS)
res
"""),
    code("""
res.contraction().round(3)
"""),
    md("""
The exact posterior (quadrature over tau, no MCMC) gives the same answer and is instant:
"""),
    code("""
rows = res.effects
exact = bk.exact_normal_normal(rows.yi.to_numpy(float), rows.sei.to_numpy(float),
                               mu_prior=(0.0, 1.0), tau_prior=res.spec.prior_dict["tau"])
pd.concat({"exact": exact.summary().loc[["mu", "tau"], ["mean", "q2.5", "q97.5"]]
                    .set_axis(["mean", "eti95_lb", "eti95_ub"], axis=1),
           "MCMC": res.summary().loc[["mu", "tau"], ["mean", "eti95_lb", "eti95_ub"]]}, axis=1).round(3)
"""),
    md("""
## Ranking cell sources: not possible

With one bone-marrow trial, the source model has nothing to compare. The claims table lists each of the 2023
paper's conclusions and says what it would need.
"""),
    code("""
src = bk.fit(eff, "source_hierarchical", outcome="WOMAC_total", time=12, seed=1, **DRAWS)
print("sources with trials:", list(src.posterior["source"].values))
src.claims()[["claim", "probability", "interpretation"]]
"""),
    md("""
**Conclusion.** The real bundled numbers support no ranking and no claim about cell sources; they show one
trial's WOMAC difference with an interval that the between-trial prior widens. The simulated data set (notebook
01) exists to show what the full analysis does when the trials report their numbers.
"""),
]


WALK = [
    md("""
# MSC injections for knee osteoarthritis: the full Bayesian meta-analysis

**SIMULATED DATA.** Every outcome number in this notebook comes from `bayes_koa/koa/data/simulated/`: arm-level
summaries drawn (seed 20261126) on the 25 real in-scope trial designs from a stated truth, because the real
extracted outcome numbers are far too thin to rank cell sources (see notebook 03). The truth is sized on
published pooled estimates and makes the 2023 paper's ordering UC > AD > BM true, so you can watch the
analysis find it. Nothing here is a trial result.

The 2023 J Orthop Res meta-analysis (16 RCTs, 875 patients) concluded: MSCs beat controls from month 3 on;
UC and AD cells relieve pain most (UC > AD > BM); autologous AD beats allogeneic AD while autologous and
allogeneic BM do not differ; four injections beat two; the cells are safe. Each becomes a posterior
probability below, with the model check that says whether to believe it.
"""),
    code(FAST),
    code("""
import warnings
import pandas as pd
import matplotlib.pyplot as plt
import bayes_koa as bk

data = bk.load_simulated()
data
"""),
    md("""
## 1. Effect sizes

One row per trial x comparison x outcome x time. Effects are MSC minus control with **negative = benefit**
on every scale (Lysholm, where higher is better, is sign-flipped and `flipped` says so). Multi-arm trials
split their shared control so no control patient counts twice. Rows that cannot be used stay in the table
with the reason.
"""),
    code("""
vas = bk.effect_sizes(data, measure="MD", outcomes=["VAS"])     # VAS 0-100 mm: mean differences in mm
vas[vas.time_months == 6][["trial_id", "comparison", "yi", "sei", "n_msc", "n_control",
                           "cell_source", "origin", "cells_per_injection", "n_injections"]].round(2).head(12)
"""),
    md("""
## 2. Trials within cell sources: ranking BM, UC and AD

`source_hierarchical`: each trial's effect is drawn from its source's distribution, the source means from
an overall distribution. The printed summary shows the resolved priors and where each came from
(call argument > model file > package default) and the sampler diagnostics.
"""),
    code("""
res = bk.fit(vas, "source_hierarchical", time=6, seed=20261126, **DRAWS)
res
"""),
    code("""
res.rank()[["source", "mean_rank", "p_best", "sucra", "sucra_lower", "sucra_upper",
            "P(rank=1)", "P(rank=2)", "P(rank=3)"]].round(3)
""", tag="ranking"),
    code("""
res.pairwise()   # P(row source better than column source)
"""),
    code("""
res.plot_forest();
"""),
    code("""
res.plot_rankogram();
"""),
    md("""
### Model checks for the source model

Posterior predictive p-values and LOO-PIT per trial (values near 0 or 1 flag a trial the model does not
predict), PSIS-LOO with Pareto k (k > 0.7: the approximation is unreliable for that trial and it is refitted
where it matters), and the influence of leaving each trial out on the pooled effect and on the ranking.
"""),
    code("""
res.ppc()[["y", "pp_mean", "pp_lower", "pp_upper", "p_value", "loo_pit", "flag"]].round(3).head(10)
"""),
    code("""
loo = res.loo()
print({k: round(v, 2) for k, v in loo.attrs.items() if isinstance(v, float)})
infl = res.influence()
infl[["trial", "method", "mu_change", "first_ranked", "first_ranked_changes"]].sort_values(
    "mu_change", key=abs, ascending=False).head(8).round(2)
"""),
    code("""
res.plot_ppc();
"""),
    md("""
## 3. Origin within source: autologous vs allogeneic

`source_origin` nests autologous/allogeneic cells within each source. Trials that do not report the origin
are left out (and listed). Cells with no trial (e.g. autologous UC) are prior-only and are not ranked.
"""),
    code("""
res_origin = bk.fit(vas, "source_origin", time=6, seed=20261126, **DRAWS)
print(res_origin.excluded[["trial_id", "comparison", "excluded_reason"]].to_string(index=False))
res_origin.summary(include_trials=False).filter(like="cell_mean", axis=0)[["mean", "eti95_lb", "eti95_ub", "n_comparisons"]].round(2)
"""),
    md("""
## 4. Dose and number of injections

`source_regression` adds log10(cells per injection / 4e7) and the number of extra injections as
meta-regression terms (switchable in the model file). The 'four vs two injections' answer is
P(2 x beta_n_injections < 0).
"""),
    code("""
res_reg = bk.fit(vas, "source_regression", time=6, seed=20261126, **DRAWS)
res_reg.summary(include_trials=False).filter(like="beta_", axis=0)[["mean", "eti95_lb", "eti95_ub", "p_benefit"]].round(2)
"""),
    md("""
## 5. Does grouping by cell source help?

PSIS-LOO stacking weights for the source model against the plain random-effects model, fitted to the same
rows (`compare` refuses results fitted to different data; the origin and regression models leave out trials
with a missing origin or dose, so they are compared on their own rows only).
"""),
    code("""
res_re = bk.fit(vas, "random_effects", time=6, seed=20261126, **DRAWS)
bk.compare({"random_effects": res_re, "source_hierarchical": res})
"""),
    md("""
## 6. Time course and several outcomes

`time_course` models VAS at every reported time (3, 6, 12 months) in one model: a trial's effects are
correlated over time (a shared trial effect plus a trial x time deviation), the sampling errors of one
comparison's times are correlated (`rho_time`, a stated assumption in the model file), and the overall effect
follows a random walk over months. Trials that report only some times contribute what they have.
"""),
    code("""
vas_all = bk.effect_sizes(data, measure="SMD", outcomes=["VAS"])
res_time = bk.fit(vas_all, "time_course", seed=20261126, **DRAWS)
res_time.p_better_by_time().round(3)
"""),
    code("""
res_time.p_better_by_time(by_source=True).round(3)
"""),
    md("""
`multi_outcome` pools VAS, WOMAC total, Lequesne and Lysholm (sign-flipped: higher is better) on the SMD
scale, with outcome-specific effects that share strength and a stated within-trial correlation between
outcomes (`rho_outcome`). To see how much that assumption matters, refit with another value:
`bk.fit(..., structure={"rho_outcome": 0.8})`.
"""),
    code("""
four = bk.effect_sizes(data, measure="SMD", outcomes=["VAS", "WOMAC_total", "Lequesne", "Lysholm"])
res_multi = bk.fit(four, "multi_outcome", seed=20261126, **DRAWS)
res_multi.summary(include_trials=False).filter(regex="outcome_effect|overall_by_time|source_mean", axis=0)[
    ["mean", "eti95_lb", "eti95_ub", "p_benefit"]].round(3)
"""),
    md("""
## 7. Safety: adverse events

An arm-based binomial model (`safety.toml`): each trial has its own baseline risk, the MSC arm's log odds
ratio is drawn from its source's distribution. Arms with zero events need no continuity correction. The
between-trial SD has the Turner et al. (2015) empirical prior for adverse-event log odds ratios.
"""),
    code("""
ae = bk.effect_sizes(data, measure="logOR", outcomes=["AE_any"])
res_ae = bk.fit(ae, "safety", seed=20261126, **DRAWS)
res_ae.summary(include_trials=False).filter(regex="odds_ratio|^mu|tau", axis=0)[["mean", "eti95_lb", "eti95_ub"]].round(2)
""", tag="ae-summary"),
    code("""
res_ae.p_or_above(1.5)[["level", "p", "mcse"]].round(3)    # P(odds of an AE more than 1.5 times higher)
"""),
    md("""
## 8. The claims table

Each of the paper's conclusions as a posterior probability, taken from the model that estimates it, with
the model, outcome, time and data it came from. Read it together with the model checks above and the
prior-sensitivity analysis (notebook 02: `bk.sensitivity(res)` refits under every named prior set and lists
the conclusions that flip).
"""),
    code("""
table = bk.claims_table([res, res_origin, res_reg, res_time, res_ae])
table[["claim", "probability", "mc_se", "interpretation", "model", "measure", "outcome", "time_months"]]
"""),
    md("""
## 9. Bringing your own extraction

Your data need the same two tables as `bayes_koa/koa/data/koa_msc/` (schema in `docs/data_schema.md`): one row per
trial x arm (design, cell source, origin, dose, n) and one row per trial x arm x outcome x time (mean/SD, or
SE, CI, median/IQR; `events` for adverse events), each row with its source. `bk.read_trials` validates them
and names the trial, arm and column of every problem. Here we write the simulated tables to CSV and read
them back as a user's extraction:
"""),
    code("""
import tempfile, pathlib
folder = pathlib.Path(tempfile.mkdtemp())
data.trials.to_csv(folder / "trials.csv", index=False)
data.outcomes.to_csv(folder / "outcomes.csv", index=False)
mine = bk.read_trials(folder / "trials.csv", folder / "outcomes.csv")
print(mine)
bad = data.outcomes.copy()
bad.loc[bad.index[0], "sd"] = -1.0
try:
    bk.read_trials(data.trials, bad)
except bk.DataValidationError as e:
    print(e)
"""),
]

DESIGN = [
    md("""
# How sure can a ranking be? A design study

**SIMULATED META-ANALYSES.** Nothing in this notebook is a trial result: every number comes from
meta-analyses simulated from a *stated truth* on the real trial designs, then fitted like the real data.

The 2023 meta-analysis ranked umbilical-cord MSC (UC) first. With the trials that exist (14 BM, 2 UC,
9 AD in the bundled in-scope designs), how often would `source_hierarchical` rank the truly best source
first if the truth were what the published estimates suggest? And which next trial would help most?

`bayes_koa.koa.design.design_study` simulates `n_sims` meta-analyses per scenario (arm-level VAS at
month 6, as the shipped simulated data set is made), fits each, and records whether the truly best source
gets the largest P(best), the coverage and width of the 95% intervals, the claims' probabilities and the
sampler's health. The fits run in parallel on Dask; the same seed gives the same numbers on any number of
workers.
"""),
    code("""
import os
FAST = os.environ.get("BAYES_KOA_FAST") == "1"      # CI runs this notebook with a small study
N_SIMS = 6 if FAST else 200
SAMPLER = {"draws": 300, "tune": 300} if FAST else None   # None: 2 chains x 1000 draws per fit
"""),
    code("""
import json
import pandas as pd
from distributed import Client, LocalCluster
from bayes_koa.koa import design as kd

pd.set_option("display.width", 200)
pd.set_option("display.max_columns", 30)
# one cluster for the whole notebook: each worker compiles the model once and keeps it
client = Client(LocalCluster(n_workers=2, threads_per_worker=1, dashboard_address=None))
client
"""),
    md("""
## The truth

SMD, MSC - control, negative = benefit. The defaults are the stated truth of the shipped simulated data
(`bayes_koa/koa/data/simulated/truth.json`): source means BM -0.45, UC -0.85, AD -0.68 (their mean, -0.66,
is Ma 2020's pooled WOMAC SMD; the three values are chosen so that the paper's ordering UC > AD > BM is
true), between-trial SD tau = 0.25, no comparator effects. The study switches off the origin, dose and
injection terms, so the data come from the model that is fitted (`kd.STUDY_TRUTH`).
"""),
    code("""
print(kd.Scenario())
print(json.dumps(kd.STUDY_TRUTH))
""", tag="truth"),
    md("""
## The real design, and one or two more UC trials

Three scenarios: the design as it is, plus one or two UC-MSC vs placebo trials of 50 patients per arm.
`paired=True` gives every scenario the same random numbers in each simulation (common random numbers), so
the differences between scenarios are measured on the same meta-analyses.
"""),
    code("""
scenarios = kd.scenarios_adding("UC", "placebo", n=50, counts=(0, 1, 2))
study = kd.design_study(scenarios=scenarios, n_sims=N_SIMS, seed=1, client=client, sampler=SAMPLER,
                        paired=True)
table = kd.summary(study)
table[["scenario", "n_added_patients", "fits", "healthy", "p_top_correct", "p_top_lower", "p_top_upper",
       "mean_p_best_true", "coverage", "width_UC"]].round(3)
""", tag="summary"),
    code("""
for r in table.itertuples():
    print(f"P(correct top rank) | {r.scenario}: {r.p_top_correct:.3f} [{r.p_top_lower:.3f}, {r.p_top_upper:.3f}] "
          f"(Clopper-Pearson 95%, {r.fits} meta-analyses)")
""", tag="p-top"),
    code("""
fig = kd.plot_power(study, x="n_added_patients", target=0.9)
line = fig.axes[0].lines[0]
print("plotted (added patients, P(correct top rank)):",
      ", ".join(f"({x:g}, {y:.3f})" for x, y in zip(line.get_xdata(), line.get_ydata())))
""", tag="power-plot"),
    md("""
`kd.by_source(study)` gives each source's coverage (with its interval), bias and mean width: with two
UC trials the UC interval is the widest, and the hierarchical model shrinks UC (the most extreme source)
toward the overall mean.
"""),
    code("""
kd.by_source(study).round(3)
""", tag="by-source"),
    md("""
## Value of the next trial

Which single 100-patient trial would raise P(correct top rank) most? `compare_additions` runs the base
design and one scenario per candidate with common random numbers, ranks the candidates by the gain
(with its paired SE) and by how much the truly best source's interval shrinks, and names the smallest
addition that reaches the target.
"""),
    code("""
additions = kd.compare_additions([("UC", "placebo", 50), ("AD", "placebo", 50), ("BM", "HA", 50)],
                                 n_sims=N_SIMS, seed=2, client=client, sampler=SAMPLER, target=0.9)
additions
""", tag="additions"),
    md("""
## A design without UC trials

A source with no trial in the design is not estimable: its metrics are NaN, it is not ranked (P(best) is
over the other sources), and the study says so.
"""),
    code("""
base = kd.bundled_design()   # the real designs, one row per trial x arm
no_uc = kd.design_study(design=base[base["cell_source"] != "UC"], n_sims=3 if FAST else 50, seed=3,
                        client=client, sampler=SAMPLER)
for note in json.loads(no_uc.attrs["notes"]):
    if "not estimable" in note:
        print("note:", note)
kd.by_source(no_uc)[["source", "estimable", "note", "coverage", "mean_p_best"]]
""", tag="no-uc"),
    md("""
## From the command line, and on a real cluster

```bash
bayes-koa design --scenarios my_scenarios.toml --n-sims 200 --workers 2 --out reports/design
```

writes the store (one file per finished fit: rerun the same command to resume a killed study), the
summary tables and the plots. `--scheduler tcp://host:8786` (or `client="tcp://host:8786"` here) runs the
fits on an existing Dask cluster.
"""),
    code("""
client.close()
"""),
]


NETWORK = [
    md("""
# Ranking cell sources against a common comparator: network meta-analysis

**SIMULATED DATA.** Every outcome number here comes from `bayes_koa/koa/data/simulated/` (the real trial designs,
outcomes drawn from a stated truth; notebook 01). Nothing here is a trial result.

The pooled models compare "MSC minus control" over whatever the control was: HA, placebo/saline, PRP,
corticosteroid, conservative care. When the cell sources were tested against different comparators, a source
ranking then mixes the source with its comparator. The `network` kind puts the comparators in the network as
nodes of their own and the MSC treatments in a nested class (all MSC -> cell source -> origin):

- arm-based with trial baselines (NICE DSU TSD2): every arm enters with its own mean and SE, so a multi-arm
  trial is one trial and the correlation of its contrasts (they share an arm) is exact;
- random trial effects with SD `tau` (correlation 1/2 between the contrasts of a multi-arm trial);
- basic parameters `d`: each node against the reference (placebo);
- `source_effect`: each source's mean effect against placebo; `cell_effect`: each source x origin cell.
"""),
    code(FAST),
    code("""
import warnings
import pandas as pd
import bayes_koa as bk
from bayes_koa.koa.network import network_arms

pd.set_option("display.width", 220)
pd.set_option("display.max_columns", 30)
data = bk.load_simulated()
arms = network_arms(data, "VAS", 6, measure="SMD")     # one row per trial arm, VAS at month 6
print("SIMULATED:", arms.attrs["simulated"])
used = arms[arms.excluded_reason == ""]
print(len(arms), "arm rows;", len(used), "usable, in", used.study.nunique(), "trials")
used.groupby("treatment", sort=False).agg(trials=("study", "nunique"), patients=("n", "sum"))
""", tag="arms"),
    md("""
## The fit

Standardised mean differences (the simulation's truth is on that scale). `bk.fit` takes any arm table:
`study=` and `treatment=` name its columns, `reference=` the node every `d` is against.
"""),
    code("""
res = bk.fit(arms, "network", study="study", treatment="treatment", reference="placebo", measure="SMD",
             seed=4, **DRAWS)
res
""", tag="fit"),
    code("""
nodes, edges = res.network_graph()
fig = res.plot_network()
print("SIMULATED network:", len(nodes), "nodes,", len(edges), "directly compared pairs")
nodes
""", tag="graph"),
    md("""
## Source effects against placebo, and the truth

`source_effect[s]` is source s's mean effect against placebo (negative = less pain). The simulation's stated
truth (`data.truth`) has the source means below and no comparator effects (HA, PRP, ... = placebo).
"""),
    code("""
summ = res.summary(include_trials=False)
src = summ[summ.index.str.startswith("source_effect[")][["mean", "eti95_lb", "eti95_ub", "p_benefit", "n_comparisons"]]
src.insert(0, "truth", [data.truth["source_means"][s] for s in res.posterior["source"].values])
print("SIMULATED: source effects vs placebo (SMD)")
src.round(3)
""", tag="source-effects"),
    code("""
summ[summ.index.str.startswith(("d[", "tau"))][["what", "mean", "eti95_lb", "eti95_ub"]].round(3)
""", tag="basic"),
    md("""
## Ranks: sources, origin cells, every node

Rank 1 = largest benefit. SUCRA comes with its 95% interval (the SUCRA of each draw's ranks); P(best) and
P(rank = k) with Monte Carlo SEs in the full table.
"""),
    code("""
for level in ("source", "origin", "treatment"):
    r = res.rank(level)
    print(f"SIMULATED ranking ({level}):")
    print(r[[r.columns[0], "mean_rank", "p_best", "sucra", "sucra_lower", "sucra_upper"]].round(3).to_string(index=False))
    print()
""", tag="ranks"),
    md("""
## League table and what is informed only indirectly

Every pairwise relative effect (row minus column, mean and 95% interval). Pairs that no trial compares
directly are estimated only through the network (and, for MSC nodes, through the class model).
"""),
    code("""
res.league(wide=True, digits=2)
""", tag="league"),
    code("""
ind = res.indirect_only()
print(f"{len(ind)} of {len(res.league()) // 2} pairs are informed only indirectly, e.g.:")
ind.head(8)
""", tag="indirect"),
    md("""
## Inconsistency

Where the network has loops of independent evidence, the unrelated-mean-effects model (every contrast with a
trial baseline its own effect; TSD4) is fitted with the same priors and compared with the consistency model
by PSIS-LOO. Without loops there is nothing to check, and the statement says so.
"""),
    code("""
from bayes_koa.analysis.checks import ParetoKWarning

with warnings.catch_warnings():
    warnings.simplefilter("ignore", ParetoKWarning)   # arm-level LOO of an arm-based model: high k expected
    check = res.inconsistency()
print("SIMULATED:", check.statement)
check.pairs.round(3) if check.pairs is not None else None
""", tag="inconsistency"),
    md("""
## Comparator evidence from outside the trials

The prior set `comparator_evidence` puts a published network meta-analysis's HA-vs-placebo pain effect on
`d[HA]` (its citation is in `models/priors/comparator_evidence.toml`). Refitting under it shows how far the
source ranking rests on that external evidence. Any element of `d` takes its own prior the same way:
`priors={"d[HA]": "Normal(mu=..., sigma=...)"}`.
"""),
    code("""
ps = bk.load_prior_set("comparator_evidence")
print(ps.citation.strip()[:200], "...")
ext = bk.fit(arms, "network", study="study", treatment="treatment", reference="placebo", measure="SMD",
             priors=ps, seed=4, **DRAWS)
both = pd.DataFrame({"P(best), model file priors": res.rank("source").set_index("source")["p_best"],
                     "P(best), comparator_evidence": ext.rank("source").set_index("source")["p_best"]})
print("SIMULATED:")
both.round(3)
""", tag="comparator-evidence"),
    md("""
## Against the pooled model

`source_hierarchical` pools MSC minus control over every comparator. Here the truth has no comparator
effects, so the two should agree on the order; when comparators differ (HA or PRP better than placebo) and
sources were tested against different comparators, only the network separates source from comparator.
"""),
    code("""
eff = bk.effect_sizes(data, measure="SMD", outcomes=["VAS"])
pooled = bk.fit(eff, "source_hierarchical", outcome="VAS", time=6, seed=4, **DRAWS)
cmp = pd.DataFrame({"truth": data.truth["source_means"],
                    "network P(best)": res.rank("source").set_index("source")["p_best"],
                    "pooled P(best)": pooled.rank("source").set_index("source")["p_best"]})
print("SIMULATED:")
cmp.round(3)
""", tag="pooled"),
]


if __name__ == "__main__":
    write("01_msc_koa_meta_analysis.ipynb", WALK)
    write("03_real_thin_data.ipynb", THIN)
    write("04_network_meta_analysis.ipynb", NETWORK)
    write("05_design_study.ipynb", DESIGN)
