# Reference fits for bayesmix's glmer (Laplace ML): simulated data sets, lme4 fits.
#
#   Rscript tests/reference/glmm_refs.R          (from the repository root)
#
# Writes tests/reference/glmm_<name>.csv (the data) and tests/reference/glmm_refs.json
# (the fits). Factor levels are zero-padded strings, so R's level order is the sorted order.
# Every case is fitted twice: with lme4's defaults ("results") and with a tight inner
# tolerance glmerControl(tolPwrss = 1e-12) ("tight": logLik, fixef, theta, SEs), because
# lme4's default PIRLS tolerance (1e-7) stops slightly short of the Laplace optimum and makes
# its finite-difference Hessian (hence the SEs) noisy: on cbpp the default SEs are 0.5-1.3%
# below the tight ones, which agree with the exact Laplace Hessian to 1e-5.
# The case cbpp_binomial uses lme4's own cbpp data (no CSV written).
suppressPackageStartupMessages({
  library(lme4)
  library(jsonlite)
})

out_dir <- "tests/reference"
RNG_SEED <- 20240611L

pad <- function(prefix, i, width = 2) sprintf(paste0("%s%0", width, "d"), prefix, i)

# ---------------------------------------------------------------- data

simulate_data <- function() {
  set.seed(RNG_SEED)
  data <- list()

  # 1. Poisson counts, crossed factors a (20 levels) x b (15 levels), 300 rows
  n <- 300
  a <- factor(pad("a", sample(rep(1:20, length.out = n))))
  b <- factor(pad("b", sample(rep(1:15, length.out = n))))
  x <- round(rnorm(n), 4)
  ua <- rnorm(20, 0, 0.6)
  ub <- rnorm(15, 0, 0.4)
  eta <- 0.5 + 0.3 * x + ua[as.integer(a)] + ub[as.integer(b)]
  data$pois_crossed <- data.frame(count = rpois(n, exp(eta)), x = x, a = a, b = b)

  # 2. Poisson with exposure offset and a correlated random slope (1 + x | g), 500 rows
  n <- 500
  g <- factor(pad("g", rep(1:25, each = 20)))
  x <- round(runif(n, -1, 1), 4)
  expo <- round(runif(n, 0.5, 3), 3)
  L <- matrix(c(0.5, 0, 0.2, 0.45), 2, 2, byrow = TRUE)
  re <- matrix(rnorm(50), 25, 2) %*% t(L)
  eta <- log(expo) + 0.2 - 0.4 * x + re[as.integer(g), 1] + re[as.integer(g), 2] * x
  data$pois_slope <- data.frame(count = rpois(n, exp(eta)), x = x, expo = expo, g = g)

  # 3. Negative binomial, plots nested in sites (12 sites x 4 plots x 5 visits = 240 rows)
  site <- rep(1:12, each = 20)
  plot <- rep(rep(1:4, each = 5), 12)
  x <- round(rnorm(240), 4)
  usite <- rnorm(12, 0, 0.5)
  uplot <- rnorm(48, 0, 0.3)
  eta <- 1.0 + 0.5 * x + usite[site] + uplot[(site - 1) * 4 + plot]
  data$nb_nested <- data.frame(
    y = rnbinom(240, mu = exp(eta), size = 2.5), x = x,
    site = factor(pad("s", site)), plot = factor(pad("p", plot)))

  # 4. Bernoulli rows whose covariates are cell-level (group x trt x dose), so that the
  #    same data aggregate exactly into a binomial data set: 30 groups x 2 x 3 cells x 8 rows
  cells <- expand.grid(dose = c(0, 1, 2), trt = c("ctl", "trt"), g = pad("h", 1:30),
                       stringsAsFactors = FALSE)[, c("g", "trt", "dose")]
  ug <- rnorm(30, 0, 0.8)
  cells$p <- plogis(-0.8 + 0.6 * (cells$trt == "trt") + 0.4 * cells$dose +
                    ug[as.integer(factor(cells$g))])
  rows <- cells[rep(seq_len(nrow(cells)), each = 8), ]
  rows$y <- rbinom(nrow(rows), 1, rows$p)
  rows$p <- NULL
  rownames(rows) <- NULL
  rows$g <- factor(rows$g)
  rows$trt <- factor(rows$trt)
  data$bern <- rows
  agg <- aggregate(y ~ g + trt + dose, data = rows, FUN = sum)
  names(agg)[names(agg) == "y"] <- "succ"
  agg$n <- 8L
  agg <- agg[order(agg$g, agg$trt, agg$dose), ]
  rownames(agg) <- NULL
  data$bern_agg <- agg

  # 5. Binomial counts for probit and cloglog links: 40 groups x 5 rows, 1..20 trials
  n <- 200
  g <- factor(pad("k", rep(1:40, each = 5)))
  x <- round(rnorm(n), 4)
  trials <- sample(1:20, n, replace = TRUE)
  ug <- rnorm(40, 0, 0.5)
  eta <- -0.3 + 0.7 * x + ug[as.integer(g)]
  data$binom_links <- data.frame(s = rbinom(n, trials, pnorm(eta)), trials = trials, x = x,
                                 g = g)

  # 6. Gamma responses (shape 4), 30 groups x 8 rows
  n <- 240
  g <- factor(pad("m", rep(1:30, each = 8)))
  x <- round(rnorm(n), 4)
  ug <- rnorm(30, 0, 0.4)
  mu <- exp(1 + 0.3 * x + ug[as.integer(g)])
  data$gamma <- data.frame(y = round(rgamma(n, shape = 4, scale = mu / 4), 5), x = x, g = g)

  # 7. Larger Poisson counts for the sqrt and identity links (mean about 16, so that the
  #    linear predictor stays far from 0), 20 groups x 10 rows
  n <- 200
  g <- factor(pad("c", rep(1:20, each = 10)))
  x <- round(rnorm(n), 4)
  ug <- rnorm(20, 0, 0.5)
  data$pois_links <- data.frame(count = rpois(n, (4 + 0.5 * x + ug[as.integer(g)])^2), x = x,
                                g = g)

  data
}

# ---------------------------------------------------------------- cases

cases <- list(
  cbpp_binomial = list(data = "cbpp", fitter = "glmer",
                       formula = cbind(incidence, size - incidence) ~ period + (1 | herd),
                       family = binomial()),
  pois_crossed = list(data = "pois_crossed", fitter = "glmer",
                      formula = count ~ x + (1 | a) + (1 | b), family = poisson()),
  pois_slope = list(data = "pois_slope", fitter = "glmer",
                    formula = count ~ x + offset(log(expo)) + (1 + x | g), family = poisson()),
  nb_nested = list(data = "nb_nested", fitter = "glmer.nb",
                   formula = y ~ x + (1 | site/plot), family = NULL),
  bern = list(data = "bern", fitter = "glmer",
              formula = y ~ trt + dose + (1 | g), family = binomial()),
  bern_agg = list(data = "bern_agg", fitter = "glmer",
                  formula = cbind(succ, n - succ) ~ trt + dose + (1 | g), family = binomial()),
  binom_probit = list(data = "binom_links", fitter = "glmer",
                      formula = cbind(s, trials - s) ~ x + (1 | g),
                      family = binomial(link = "probit")),
  binom_cloglog = list(data = "binom_links", fitter = "glmer",
                       formula = cbind(s, trials - s) ~ x + (1 | g),
                       family = binomial(link = "cloglog")),
  pois_sqrt = list(data = "pois_links", fitter = "glmer",
                   formula = count ~ x + (1 | g), family = poisson(link = "sqrt")),
  pois_identity = list(data = "pois_links", fitter = "glmer",
                       formula = count ~ x + (1 | g), family = poisson(link = "identity")),
  gamma_log = list(data = "gamma", fitter = "glmer",
                   formula = y ~ x + (1 | g), family = Gamma(link = "log"))
)

fit_case <- function(case, dat, control = glmerControl()) {
  if (case$fitter == "glmer.nb") {
    glmer.nb(case$formula, data = dat, control = control)
  } else {
    glmer(case$formula, data = dat, family = case$family, control = control)
  }
}

vec <- function(x, nm = names(x)) {
  force(nm)
  x <- as.numeric(x)
  if (!is.null(nm)) names(x) <- nm
  as.list(x)
}

ranef_list <- function(fit) {
  re <- ranef(fit, condVar = TRUE)
  out <- list()
  for (g in names(re)) {
    df <- re[[g]]
    pv <- attr(df, "postVar")
    vals <- lapply(seq_along(df), function(j) as.numeric(df[[j]]))
    sds <- lapply(seq_along(df), function(j) sqrt(as.numeric(pv[j, j, ])))
    names(vals) <- names(sds) <- names(df)
    out[[g]] <- list(levels = rownames(df), values = vals, condsd = sds)
  }
  out
}

varcorr_list <- function(fit) {
  vc <- as.data.frame(VarCorr(fit))
  lapply(seq_len(nrow(vc)), function(i) list(
    grp = vc$grp[i], var1 = if (is.na(vc$var1[i])) NULL else vc$var1[i],
    var2 = if (is.na(vc$var2[i])) NULL else vc$var2[i], vcov = vc$vcov[i],
    sdcor = vc$sdcor[i]))
}

summarize_fit <- function(fit, fitter) {
  ll <- logLik(fit)
  fam <- family(fit)
  res <- list(
    family = fam$family, link = fam$link,
    fixef = vec(fixef(fit)),
    fixef_se = vec(sqrt(diag(as.matrix(vcov(fit)))), names(fixef(fit))),
    vcov_fixef = unname(as.matrix(vcov(fit))),
    theta = vec(getME(fit, "theta")),
    varcorr = varcorr_list(fit),
    logLik = as.numeric(ll), logLik_df = attr(ll, "df"),
    AIC = AIC(fit), BIC = BIC(fit), deviance = deviance(fit),
    minus2logLik = -2 * as.numeric(ll),
    nobs = nobs(fit), ngrps = as.list(ngrps(fit)),
    isSingular = isSingular(fit),
    sigma = sigma(fit),
    ranef = ranef_list(fit),
    fitted_first5 = as.numeric(fitted(fit))[1:5],
    predict_first5 = list(
      re_form_NULL_link = as.numeric(predict(fit, type = "link"))[1:5],
      re_form_NA_link = as.numeric(predict(fit, re.form = NA, type = "link"))[1:5],
      re_form_NULL_response = as.numeric(predict(fit, type = "response"))[1:5],
      re_form_NA_response = as.numeric(predict(fit, re.form = NA, type = "response"))[1:5]),
    pearson_resid_quantiles = as.numeric(quantile(residuals(fit, type = "pearson",
                                                             scaled = TRUE))),
    devcomp_cmp = as.list(getME(fit, "devcomp")$cmp),
    optimizer = list(name = fit@optinfo$optimizer, conv = fit@optinfo$conv$opt,
                     messages = fit@optinfo$conv$lme4$messages),
    warnings = fit@optinfo$warnings
  )
  if (fitter == "glmer.nb") res$nb_theta <- getME(fit, "glmer.nb.theta")
  res
}

time_fit <- function(case, dat, reps = 5) {
  invisible(fit_case(case, dat))
  t <- vapply(seq_len(reps), function(i) system.time(fit_case(case, dat))[["elapsed"]],
              numeric(1))
  list(fit_times_s = t, median_s = median(t),
       method = sprintf("system.time()['elapsed'] of %d refits after 1 untimed fit", reps))
}

# ---------------------------------------------------------------- run

data <- simulate_data()
level_info <- list()
for (nm in names(data)) {
  write.csv(data[[nm]], file.path(out_dir, paste0("glmm_", nm, ".csv")), row.names = FALSE)
  dat <- data[[nm]]
  level_info[[nm]] <- lapply(Filter(is.factor, dat), levels)
}

results <- list()
for (nm in names(cases)) {
  case <- cases[[nm]]
  if (case$data == "cbpp") {
    dat <- lme4::cbpp
  } else {
    # read the data back from CSV like the Python tests do
    dat <- read.csv(file.path(out_dir, paste0("glmm_", case$data, ".csv")))
    for (col in names(level_info[[case$data]])) {
      dat[[col]] <- factor(dat[[col]], levels = level_info[[case$data]][[col]])
    }
  }
  cat("fitting", nm, "\n")
  fit <- fit_case(case, dat)
  tight <- fit_case(case, dat, glmerControl(tolPwrss = 1e-12))
  results[[nm]] <- list(
    formula = paste(deparse(case$formula), collapse = " "),
    data_file = if (case$data == "cbpp") NULL else paste0("glmm_", case$data, ".csv"),
    fitter = case$fitter,
    results = summarize_fit(fit, case$fitter),
    tight = list(control = "glmerControl(tolPwrss = 1e-12)",
                 logLik = as.numeric(logLik(tight)), fixef = vec(fixef(tight)),
                 theta = vec(getME(tight, "theta")),
                 fixef_se = vec(sqrt(diag(as.matrix(vcov(tight)))), names(fixef(tight))),
                 hessian = unname(tight@optinfo$derivs$Hessian),
                 ranef = ranef_list(tight),
                 nb_theta = if (case$fitter == "glmer.nb") getME(tight, "glmer.nb.theta")),
    timing = time_fit(case, dat)
  )
}

meta <- list(
  generated = format(Sys.time(), tz = "UTC", usetz = TRUE),
  R_version = R.version$version.string,
  packages = lapply(c(lme4 = "lme4", Matrix = "Matrix", jsonlite = "jsonlite"),
                    function(p) as.character(packageVersion(p))),
  seed = RNG_SEED,
  levels = level_info,
  conventions = list(
    deviance = "deviance() = sum of squared deviance residuals; minus2logLik = -2 logLik (summary's 'deviance')",
    fixef_se = "sqrt(diag(vcov(fit))) (lme4: beta block of 2 * solve(Hessian of the Laplace deviance in (theta, beta)))",
    logLik_df = "p + length(theta) (+1 for glmer.nb's theta)",
    tight = "refit with glmerControl(tolPwrss = 1e-12): closer to the exact Laplace optimum",
    timing = "median of 5 refits (system.time elapsed), after one untimed fit"
  )
)

writeLines(toJSON(list(meta = meta, cases = results), auto_unbox = TRUE, digits = NA,
                  pretty = TRUE, null = "null", na = "null"),
           file.path(out_dir, "glmm_refs.json"))
cat("wrote", file.path(out_dir, "glmm_refs.json"), "\n")
