# Reference values for multilevel (three- and two-level) meta-analysis, from R metafor.
#
# Run from the repository root:   Rscript tests/reference/r/metafor_multilevel.R
# Writes tests/reference/data/konstantopoulos2011.csv (the data, copied from metadat)
#    and tests/reference/data/metafor_multilevel.json (the estimates).
#
# Data: metadat::dat.konstantopoulos2011, from Konstantopoulos, S. (2011). Fixed effects and
# variance components estimation in three-level meta-analysis. Research Synthesis Methods,
# 2(1), 61-76. https://doi.org/10.1002/jrsm.35 (56 studies of modified school calendars,
# schools within 11 districts; yi = standardized mean difference, vi = its sampling variance).
suppressPackageStartupMessages({ library(metafor); library(jsonlite) })

out_dir <- file.path("tests", "reference", "data")
stopifnot(dir.exists(out_dir))

dat <- metadat::dat.konstantopoulos2011
dat <- dat[, c("district", "school", "study", "year", "yi", "vi")]
write.csv(dat, file.path(out_dir, "konstantopoulos2011.csv"), row.names = FALSE)

# Convergence of the REML optimiser (nlminb) tightened so the stored values are the optimum to
# many more digits than the tests ask for; the default-control values are stored beside them.
tight <- list(rel.tol = 1e-12, abs.tol = 1e-14, eval.max = 10000, iter.max = 10000)

summ_mv <- function(res) {
  ci <- confint(res)   # profile-likelihood CIs of each variance component
  comps <- lapply(seq_along(res$sigma2), function(i) {
    r <- if (length(res$sigma2) > 1) ci[[i]]$random else ci$random
    rownames(r) <- sub("\\.[0-9]+$", "", rownames(r))   # "sigma^2.1" -> "sigma^2"
    list(level = res$s.names[i], nlevels = res$s.nlevels[i],
         sigma2 = res$sigma2[i], sigma = sqrt(res$sigma2[i]),
         sigma2_ci_profile = unname(r["sigma^2", c("ci.lb", "ci.ub")]),
         sigma_ci_profile = unname(r["sigma", c("ci.lb", "ci.ub")]))
  })
  re <- ranef(res)
  blup <- lapply(names(re), function(nm) {
    d <- re[[nm]]
    list(level = nm, id = rownames(d), intrcpt = d$intrcpt, se = d$se,
         mean_effect = as.numeric(res$b) + d$intrcpt)
  })
  # multilevel I^2 as in the metafor FAQ ("I^2 for multilevel and multivariate models"):
  # sigma2 / (sum(sigma2) + (k - p) / tr(P)), P = W - W X (X'W X)^-1 X'W, W = V^-1
  W <- solve(res$V); X <- model.matrix(res)
  P <- W - W %*% X %*% solve(t(X) %*% W %*% X) %*% t(X) %*% W
  typical <- (res$k - res$p) / sum(diag(P))
  I2 <- list(typical_within_variance = typical,
             I2_percent_by_level = setNames(as.list(100 * res$sigma2 / (sum(res$sigma2) + typical)),
                                            res$s.names),
             I2_percent_total = 100 * sum(res$sigma2) / (sum(res$sigma2) + typical))
  list(mu = as.numeric(res$b), se = res$se, I2 = I2, zval = res$zval, pval = res$pval,
       ci_lb = res$ci.lb, ci_ub = res$ci.ub, k = res$k,
       logLik_REML = as.numeric(logLik(res)), QE = res$QE, QE_df = res$k - res$p,
       QEp = res$QEp, variance_components = comps, blups = blup)
}

three <- rma.mv(yi, vi, random = ~ 1 | district/school, data = dat, method = "REML",
                control = list(optCtrl = tight))
three_default <- rma.mv(yi, vi, random = ~ 1 | district/school, data = dat, method = "REML")
two <- rma.mv(yi, vi, random = ~ 1 | district, data = dat, method = "REML",
              control = list(optCtrl = tight))
two_default <- rma.mv(yi, vi, random = ~ 1 | district, data = dat, method = "REML")
# the usual random-effects model, one true effect per study, ignoring the nesting
uni <- rma(yi, vi, data = dat, method = "REML", control = list(threshold = 1e-14, maxiter = 10000))

out <- list(
  description = paste(
    "R metafor REML fits on metadat dat.konstantopoulos2011 (Konstantopoulos 2011, Res Synth",
    "Methods 2:61-76; 56 studies, schools within 11 districts). three_level: rma.mv(yi, vi,",
    "random = ~ 1 | district/school); two_level_district: rma.mv(yi, vi, random = ~ 1 | district)",
    "(studies of a district share one true effect); random_effects_study: rma(yi, vi) (REML).",
    "CIs of mu are Wald (z); variance-component CIs are profile-likelihood (confint). blups:",
    "ranef() per level, mean_effect = mu + BLUP. *_default: same model with metafor's default",
    "optimiser control (the others use nlminb rel.tol 1e-12). I2: multilevel I^2 by the",
    "metafor FAQ formula, sigma2_l / (sum sigma2 + (k-p)/tr(P)), in percent."),
  script = "tests/reference/r/metafor_multilevel.R",
  r_version = R.version.string,
  metafor_version = as.character(packageVersion("metafor")),
  metadat_version = as.character(packageVersion("metadat")),
  three_level = summ_mv(three),
  three_level_default = list(mu = as.numeric(three_default$b), se = three_default$se,
                             sigma2 = three_default$sigma2),
  two_level_district = summ_mv(two),
  two_level_district_default = list(mu = as.numeric(two_default$b), se = two_default$se,
                                    sigma2 = two_default$sigma2),
  random_effects_study = list(mu = as.numeric(uni$b), se = uni$se, ci_lb = uni$ci.lb,
                              ci_ub = uni$ci.ub, tau2 = uni$tau2, I2 = uni$I2, H2 = uni$H2,
                              QE = uni$QE, QEp = uni$QEp)
)
writeLines(toJSON(out, auto_unbox = TRUE, digits = NA, pretty = TRUE),
           file.path(out_dir, "metafor_multilevel.json"))
print(three); print(two)
