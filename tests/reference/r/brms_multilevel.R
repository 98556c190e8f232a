# Bayesian reference fits of the Konstantopoulos (2011) multilevel data with R brms (Stan).
#
# Run from the repository root, after metafor_multilevel.R wrote the CSV:
#   Rscript tests/reference/r/brms_multilevel.R
# Writes tests/reference/data/brms_multilevel.json.
#
# Data: tests/reference/data/konstantopoulos2011.csv = metadat::dat.konstantopoulos2011
# (Konstantopoulos 2011, Research Synthesis Methods 2:61-76).
suppressPackageStartupMessages({ library(brms); library(posterior); library(jsonlite) })

# Debian's r-cran-bh links the system Boost (libboost-dev) instead of shipping BH/include,
# which rstan looks for; point rstan at the system headers when BH/include is absent.
if (!nzchar(system.file("include", package = "BH")) && dir.exists("/usr/include/boost"))
  rstan::rstan_options(boost_lib = "/usr/include")

out_dir <- file.path("tests", "reference", "data")
dat <- read.csv(file.path(out_dir, "konstantopoulos2011.csv"))
dat$sei <- sqrt(dat$vi)
dat$district <- factor(dat$district, levels = sort(unique(dat$district)))

CHAINS <- 4; WARMUP <- 4000; DRAWS <- 4000; SEED <- 20261127; ADAPT_DELTA <- 0.99
# brms: class "sd" has lower bound 0, so normal(0, 0.5) on it is a half-normal(0, 0.5).
priors <- c(prior(normal(0, 1), class = Intercept),
            prior(normal(0, 0.5), class = sd))

summ <- function(x) {
  q <- quantile(x, c(0.025, 0.975), names = FALSE)
  list(mean = mean(x), sd = sd(x), q2.5 = q[1], q97.5 = q[2],
       mcse_mean = mcse_mean(x), mcse_q2.5 = unname(mcse_quantile(x, 0.025)),
       mcse_q97.5 = unname(mcse_quantile(x, 0.975)),
       ess_bulk = ess_bulk(x), ess_tail = ess_tail(x), rhat = rhat(x))
}

fit_one <- function(formula, sd_names) {
  t0 <- Sys.time()
  fit <- brm(formula, data = dat, family = gaussian(), prior = priors,
             chains = CHAINS, iter = WARMUP + DRAWS, warmup = WARMUP, cores = 1,
             seed = SEED, control = list(adapt_delta = ADAPT_DELTA), refresh = 0)
  secs <- as.numeric(difftime(Sys.time(), t0, units = "secs"))
  dr <- as_draws_matrix(fit)
  # posterior::rhat etc. want chain structure: use draws_array per variable
  da <- as_draws_array(fit)
  one <- function(v) summ(extract_variable_matrix(da, v))
  sds <- setNames(lapply(sd_names, one), sd_names)
  mu_m <- extract_variable_matrix(da, "b_Intercept")
  lev <- levels(dat$district)
  district_mean <- lapply(lev, function(d) {
    v <- sprintf("r_district[%s,Intercept]", d)
    c(list(district = d), summ(mu_m + extract_variable_matrix(da, v)))
  })
  np <- nuts_params(fit)
  list(formula = deparse(formula(fit)$formula),
       n_divergent = sum(np$Value[np$Parameter == "divergent__"]),
       seconds_compile_and_sample = secs,
       intercept = one("b_Intercept"), sd = sds, district_mean = district_mean)
}

three <- fit_one(bf(yi | se(sei) ~ 1 + (1 | district) + (1 | district:school)),
                 c("sd_district__Intercept", "sd_district:school__Intercept"))
two <- fit_one(bf(yi | se(sei) ~ 1 + (1 | district)), c("sd_district__Intercept"))

out <- list(
  description = paste(
    "R brms fits on metadat dat.konstantopoulos2011 (Konstantopoulos 2011, Res Synth Methods",
    "2:61-76). yi | se(sqrt(vi)) is a normal likelihood with known SE (sigma fixed at 0).",
    "three_level: 1 + (1|district) + (1|district:school); two_level_district: 1 + (1|district).",
    "district_mean = b_Intercept + r_district[d] per draw. Quantiles are equal-tailed;",
    "mcse_* from the posterior package (mcse_mean, mcse_quantile); brms's default",
    "non-centred group effects."),
  script = "tests/reference/r/brms_multilevel.R",
  priors = list(
    Intercept = "normal(0, 1)",
    sd_district__Intercept = "half-normal(0, 0.5): brms prior(normal(0, 0.5), class = sd), lower bound 0",
    `sd_district:school__Intercept` = "half-normal(0, 0.5): same class-sd prior (three_level only)",
    brms_prior_table = paste(capture.output(print(priors)), collapse = "\n")),
  sampler = list(chains = CHAINS, warmup = WARMUP, draws_per_chain = DRAWS, seed = SEED,
                 adapt_delta = ADAPT_DELTA, algorithm = "NUTS (Stan, rstan)"),
  r_version = R.version.string,
  brms_version = as.character(packageVersion("brms")),
  rstan_version = as.character(packageVersion("rstan")),
  stan_version = rstan::stan_version(),
  posterior_version = as.character(packageVersion("posterior")),
  three_level = three,
  two_level_district = two)
writeLines(toJSON(out, auto_unbox = TRUE, digits = NA, pretty = TRUE),
           file.path(out_dir, "brms_multilevel.json"))
str(three[c("n_divergent", "intercept", "sd")])
