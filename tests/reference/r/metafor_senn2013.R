# Reproduces published.json["senn2013"]["metafor_reml"] (R 4.x, metafor 3.8-1, metadat 1.2-0):
# contrast-based random-effects NMA of dat.senn2013 (HbA1c mean differences), each trial's arms against
# its baseline arm (placebo where present, else the first arm in alphabetical order), shared-arm
# covariance V (var of the baseline mean on the off-diagonal), random = ~ contrast | study, CS, rho 1/2.
# Run: Rscript tests/reference/r/metafor_senn2013.R
library(metafor)
dat <- read.csv(file.path("tests", "reference", "data", "networks", "senn2013_arms.csv"))
dat$v <- dat$sd^2 / dat$n
rows <- list(); Vs <- list()
for (s in unique(dat$study)) {
  g <- dat[dat$study == s, ]
  b <- if ("placebo" %in% g$treatment) which(g$treatment == "placebo") else order(g$treatment)[1]
  k <- setdiff(seq_len(nrow(g)), b)
  rows[[s]] <- data.frame(study = s, trt = g$treatment[k], base = g$treatment[b],
                          yi = g$mean[k] - g$mean[b], contrast = paste(g$treatment[k], g$treatment[b]))
  V <- matrix(g$v[b], length(k), length(k)); diag(V) <- g$v[k] + g$v[b]
  Vs[[s]] <- V
}
cd <- do.call(rbind, rows)
trts <- setdiff(sort(unique(dat$treatment)), "placebo")
X <- sapply(trts, function(t) (cd$trt == t) - (cd$base == t))
fit <- rma.mv(yi, bldiag(Vs), mods = X, intercept = FALSE, random = ~ contrast | study, data = cd,
              struct = "CS", rho = 1/2, method = "REML")
print(fit)
print(sqrt(fit$tau2))
