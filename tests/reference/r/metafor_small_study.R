# Reference values for small-study-effect tests (metafor regtest) and heterogeneity statistics.
#
# Run from the repository root:   Rscript tests/reference/r/metafor_small_study.R
# Writes tests/reference/data/bcg.csv, hackshaw1998.csv, egger2001.csv (data copied from metadat,
# with the escalc yi, vi, ni used) and tests/reference/data/metafor_small_study.json.
#
# Data (R package metadat):
#  dat.bcg: Colditz, G. A., et al. (1994). Efficacy of BCG vaccine in the prevention of
#    tuberculosis. JAMA, 271(9), 698-702. 13 trials, 2x2 tables.
#  dat.hackshaw1998: Hackshaw, A. K., Law, M. R., & Wald, N. J. (1997). The accumulated evidence
#    on lung cancer and environmental tobacco smoke. BMJ, 315(7114), 980-988. 37 studies,
#    log odds ratios yi with variances vi as given in metadat.
#  dat.egger2001: Egger, M., Davey Smith, G., & Altman, D. G. (Eds.) (2001). Systematic reviews
#    in health care: Meta-analysis in context (2nd ed.). BMJ Books. 16 trials of intravenous
#    magnesium after myocardial infarction (death), 2x2 tables.
suppressPackageStartupMessages({ library(metafor); library(jsonlite) })

out_dir <- file.path("tests", "reference", "data")
stopifnot(dir.exists(out_dir))

# REML by Fisher scoring, converged far beyond the default threshold (1e-5 on tau^2) so the
# stored values are the REML optimum to ~1e-10; default-control values are stored beside them.
TIGHT <- list(threshold = 1e-13, maxiter = 10000, stepadj = 0.5)

rt <- function(res, model, predictor) {
  r <- regtest(res, model = model, predictor = predictor)
  out <- list(model = model, predictor = predictor, stat = unname(r$zval),
              stat_type = if (is.na(r$ddf)) "z" else "t",
              df = if (is.na(r$ddf)) NULL else unname(r$ddf), pval = unname(r$pval),
              slope = unname(tail(coef(r$fit), 1)),
              printed = paste(capture.output(print(r)), collapse = "\n"))
  if (model == "lm") {
    out$slope_se <- unname(tail(coef(summary(r$fit))[, 2], 1))
  } else {
    out$slope_se <- unname(tail(r$fit$se, 1)); out$tau2 <- r$fit$tau2
  }
  if (!is.null(r$est)) {
    out$limit_estimate <- unname(r$est); out$limit_ci_lb <- unname(r$ci.lb)
    out$limit_ci_ub <- unname(r$ci.ub)
  }
  out
}

tests_for <- function(yi, vi, ni = NULL, control) {
  res <- if (is.null(ni)) rma(yi, vi, method = "REML", control = control)
         else rma(yi, vi, ni = ni, method = "REML", control = control)
  preds <- if (is.null(ni)) "sei" else c("sei", "ninv")
  tests <- list()
  for (p in preds) for (m in c("rma", "lm"))
    tests[[paste(if (p == "sei") "egger" else "peters", m, sep = "_")]] <- rt(res, m, p)
  tests
}

# --- dat.bcg, log risk ratio ---------------------------------------------------------------
bcg <- escalc(measure = "RR", ai = tpos, bi = tneg, ci = cpos, di = cneg, data = metadat::dat.bcg)
bcg$ni <- with(bcg, tpos + tneg + cpos + cneg)
bcg_or <- escalc(measure = "OR", ai = tpos, bi = tneg, ci = cpos, di = cneg, data = metadat::dat.bcg)
bcg_csv <- data.frame(bcg[, c("trial", "author", "year", "tpos", "tneg", "cpos", "cneg", "ablat")],
                      yi_rr = c(bcg$yi), vi_rr = c(bcg$vi), yi_or = c(bcg_or$yi),
                      vi_or = c(bcg_or$vi), ni = bcg$ni)
write.csv(bcg_csv, file.path(out_dir, "bcg.csv"), row.names = FALSE)

het <- function(method, control) {
  r <- rma(yi, vi, data = bcg, method = method, control = control)
  w <- 1 / r$vi; k <- r$k
  ci <- if (method == "REML") confint(r)$random else NULL
  out <- list(method = method, k = k, mu = as.numeric(r$b), se = r$se, tau2 = r$tau2,
              se_tau2 = r$se.tau2, I2_percent = r$I2, H2 = r$H2, QE = r$QE, QEp = r$QEp,
              typical_within_variance = (k - 1) * sum(w) / (sum(w)^2 - sum(w^2)))
  if (!is.null(ci)) out$ci_q_profile <- list(
    tau2 = unname(ci["tau^2", c("ci.lb", "ci.ub")]),
    I2_percent = unname(ci["I^2(%)", c("ci.lb", "ci.ub")]),
    H2 = unname(ci["H^2", c("ci.lb", "ci.ub")]))
  out
}

# --- dat.hackshaw1998, log odds ratio as given ---------------------------------------------
hack <- metadat::dat.hackshaw1998
write.csv(hack[, c("study", "author", "year", "country", "design", "cases", "or", "or.lb",
                   "or.ub", "yi", "vi")],
          file.path(out_dir, "hackshaw1998.csv"), row.names = FALSE)

# --- dat.egger2001, log odds ratio (escalc adds 1/2 to every cell of a table with a zero) --
egg <- escalc(measure = "OR", ai = ai, n1i = n1i, ci = ci, n2i = n2i, data = metadat::dat.egger2001)
egg$ni <- with(egg, n1i + n2i)
write.csv(data.frame(egg[, c("id", "study", "year", "ai", "n1i", "ci", "n2i")], yi = c(egg$yi),
                     vi = c(egg$vi), ni = egg$ni),
          file.path(out_dir, "egger2001.csv"), row.names = FALSE)

sets <- list(
  bcg_rr = list(yi = c(bcg$yi), vi = c(bcg$vi), ni = bcg$ni),
  bcg_or = list(yi = c(bcg_or$yi), vi = c(bcg_or$vi), ni = bcg$ni),
  hackshaw1998_or = list(yi = hack$yi, vi = hack$vi, ni = NULL),
  egger2001_or = list(yi = c(egg$yi), vi = c(egg$vi), ni = egg$ni))

# Egger's test after a moderator: rma(yi, vi, mods = ~ ablat) on the bcg log risk ratios; regtest
# adds sei to the moderators (no limit estimate then)
with_mods <- function(control) {
  res <- rma(yi, vi, mods = ~ ablat, data = bcg, method = "REML", control = control)
  list(egger_rma = rt(res, "rma", "sei"), egger_lm = rt(res, "lm", "sei"))
}

out <- list(
  description = paste(
    "R metafor regtest() on rma(yi, vi, method = 'REML') fits. Keys: egger_* use predictor 'sei'",
    "(Egger's test), peters_* predictor 'ninv' (1/ni, ni = total sample size; metafor weights",
    "by 1/vi, not by Peters' original n-based weights); *_rma = mixed-effects meta-regression",
    "with the predictor as moderator (REML tau^2, z test); *_lm = weighted least squares",
    "yi ~ predictor with weights 1/vi and multiplicative dispersion (t test, k-2 df).",
    "stat = the z or t of the predictor's slope; limit_estimate = the intercept (with its CI).",
    "'tests' used REML with Fisher-scoring threshold 1e-13; 'tests_default_control' metafor's",
    "default (threshold 1e-5). heterogeneity_bcg: log risk ratios of dat.bcg, rma() with",
    "REML and DL; I2_percent = 100 tau2 / (tau2 + s2), H2 = (tau2 + s2) / s2, s2 =",
    "typical_within_variance = (k-1) sum w / ((sum w)^2 - sum w^2), w = 1/vi;",
    "ci_q_profile from confint() (Q-profile). 'printed' is regtest's own print-out.",
    "bcg_rr_mods_ablat: regtest after rma(yi, vi, mods = ~ ablat) (sei added to the moderators;",
    "stat and slope are those of sei, the last coefficient)."),
  script = "tests/reference/r/metafor_small_study.R",
  r_version = R.version.string,
  metafor_version = as.character(packageVersion("metafor")),
  metadat_version = as.character(packageVersion("metadat")),
  data_files = list(bcg_rr = "bcg.csv (yi_rr, vi_rr, ni)", bcg_or = "bcg.csv (yi_or, vi_or, ni)",
                    hackshaw1998_or = "hackshaw1998.csv (yi, vi)",
                    egger2001_or = "egger2001.csv (yi, vi, ni)"),
  tests = lapply(sets, function(s) tests_for(s$yi, s$vi, s$ni, TIGHT)),
  tests_default_control = lapply(sets, function(s) tests_for(s$yi, s$vi, s$ni, list())),
  bcg_rr_mods_ablat = with_mods(TIGHT),
  heterogeneity_bcg = list(REML = het("REML", TIGHT), DL = het("DL", list()),
                           REML_default_control = het("REML", list())))
writeLines(toJSON(out, auto_unbox = TRUE, digits = NA, pretty = TRUE, null = "null"),
           file.path(out_dir, "metafor_small_study.json"))
for (nm in names(sets)) {
  cat("\n====", nm, "\n")
  for (t in out$tests[[nm]]) cat(t$printed, "\n")
}
str(out$heterogeneity_bcg)
