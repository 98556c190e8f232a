# The main model (source_hierarchical, MD) in R brms, for benchmarks/run_all.py: same data, priors and
# sampler settings as bayes_koa's fit. Usage: Rscript benchmarks/brms_main_model.R EFFECTS.csv
# EFFECTS.csv: the rows bayes_koa used (columns yi, sei, cell_source). Prints one line of JSON.
#   y_i ~ N(theta_i, sei_i); theta_i ~ N(source_mean[s], tau); source_mean[s] ~ N(mu, sigma_source)
#   mu ~ Normal(0, 50), tau ~ HalfNormal(20), sigma_source ~ HalfNormal(20) (models/source_hierarchical.toml, MD)
t_start <- Sys.time()
suppressPackageStartupMessages({ library(brms); library(posterior) })
if (!nzchar(system.file("include", package = "BH")) && dir.exists("/usr/include/boost"))
  rstan::rstan_options(boost_lib = "/usr/include")
args <- commandArgs(trailingOnly = TRUE)
dat <- read.csv(args[1])
dat$row <- factor(seq_len(nrow(dat)))
priors <- c(prior(normal(0, 50), class = Intercept),
            prior(normal(0, 20), class = sd, group = cell_source),   # sd has lower bound 0: half-normal
            prior(normal(0, 20), class = sd, group = row))
CHAINS <- as.integer(Sys.getenv("BRMS_CHAINS", "4")); ITER <- as.integer(Sys.getenv("BRMS_DRAWS", "2000"))
t0 <- Sys.time()
fit <- brm(yi | se(sei) ~ 1 + (1 | cell_source) + (1 | row), data = dat, prior = priors,
           chains = CHAINS, iter = 2 * ITER, warmup = ITER, cores = 2, seed = 20261126,
           control = list(adapt_delta = 0.99), refresh = 0, silent = 2)
t_fit <- as.numeric(difftime(Sys.time(), t0, units = "secs"))
dr <- as_draws_matrix(fit)
mu <- dr[, "b_Intercept"]
cat(sprintf('{"seconds_total": %.2f, "seconds_fit": %.2f, "mu_mean": %.4f, "mu_sd": %.4f, "ess_bulk_mu": %.0f}\n',
            as.numeric(difftime(Sys.time(), t_start, units = "secs")), t_fit, mean(mu), sd(mu), ess_bulk(mu)))
