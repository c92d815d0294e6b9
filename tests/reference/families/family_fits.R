# Maximum-likelihood reference fits for the families and distributional models of issue #17.
# Run from the repository root (after make_family_data.R):
#   Rscript tests/reference/families/family_fits.R
# Writes tests/reference/families/family_fits.json (jsonlite, 15 significant digits).
# glmmTMB (Laplace ML) for every case but the ordinal ones, ordinal::clmm (Laplace, nAGQ = 1)
# for those. All parameters are reported in brms / Stan parametrisation (README.md), the raw
# glmmTMB / clmm parameters beside them. For each case the per-row log density is computed
# with densities written out here and checked against the package itself:
#   glmmTMB: sum of log p(y | b) over all rows + log N(b | 0, Sigma) must equal minus the
#            joint objective TMB evaluates at (fixed, conditional modes) (obj$env$f);
#   clmm:    P(y_i | b) must equal clmm's fitted.values (probability of the observed category
#            at the conditional modes), and a Laplace approximation computed here must equal
#            logLik.
suppressPackageStartupMessages({
  library(glmmTMB); library(ordinal); library(lme4); library(jsonlite)
})
dir <- "tests/reference/families"
t_start <- Sys.time()

read_case <- function(name) {
  d <- read.csv(file.path(dir, paste0(name, ".csv")), stringsAsFactors = FALSE)
  d$g <- factor(d$g)
  d
}
# rows whose log density is logged: the first two rows at the lowest value (zeros, the
# first category) when it repeats, else rows 1 and 2; the row of the largest value; two more
pick_rows <- function(y) {
  low <- which(y == min(y))
  low <- if (length(low) >= 2) low[1:2] else c(1L, 2L)
  high <- which.max(y)
  rest <- setdiff(c(which.min(y), seq_along(y)), c(low, high))[1:2]
  sort(unique(c(low, rest, high)))
}
keep_warnings <- function(expr) {
  w <- character(0)
  val <- withCallingHandlers(expr, warning = function(c) {
    w <<- c(w, conditionMessage(c)); invokeRestart("muffleWarning")
  })
  list(value = val, warnings = w)
}
coef_table <- function(est, se, scale = 1) {
  # I(): length-1 vectors stay JSON arrays
  list(names = I(names(est)), estimate = I(unname(est) * scale), se = I(unname(se) * scale))
}

# ---- log densities in brms / Stan parametrisation (written out, not from the packages) ----
log1mexp <- function(a) ifelse(a > log(2), log1p(-exp(-a)), log(-expm1(-a)))  # log(1 - e^-a)
dens <- list(
  gaussian = function(y, p) dnorm(y, p$mu, p$sigma, log = TRUE),
  student = function(y, p) dt((y - p$mu) / p$sigma, p$nu, log = TRUE) - log(p$sigma),
  lognormal = function(y, p) dnorm(log(y), p$mu, p$sigma, log = TRUE) - log(y),
  beta = function(y, p) dbeta(y, p$mu * p$phi, (1 - p$mu) * p$phi, log = TRUE),
  beta_binomial = function(y, p) {
    a <- p$mu * p$phi; b <- (1 - p$mu) * p$phi
    lchoose(p$trials, y) + lbeta(y + a, p$trials - y + b) - lbeta(a, b)
  },
  negbinomial = function(y, p) dnbinom(y, size = p$shape, mu = p$mu, log = TRUE),
  zero_inflated_poisson = function(y, p) {
    ifelse(y == 0, log(p$zi + (1 - p$zi) * exp(-p$mu)),
           log1p(-p$zi) + dpois(y, p$mu, log = TRUE))
  },
  zero_inflated_negbinomial = function(y, p) {
    p0 <- (p$shape / (p$shape + p$mu))^p$shape
    ifelse(y == 0, log(p$zi + (1 - p$zi) * p0),
           log1p(-p$zi) + dnbinom(y, size = p$shape, mu = p$mu, log = TRUE))
  },
  hurdle_poisson = function(y, p) {
    ifelse(y == 0, log(p$hu), log1p(-p$hu) + dpois(y, p$mu, log = TRUE) - log1mexp(p$mu))
  },
  hurdle_negbinomial = function(y, p) {
    # log P(0) of NB2 = shape * log(shape / (shape + mu)); log(1 - P(0)) via log1mexp
    lp0 <- p$shape * log(p$shape / (p$shape + p$mu))
    ifelse(y == 0, log(p$hu),
           log1p(-p$hu) + dnbinom(y, size = p$shape, mu = p$mu, log = TRUE) - log1mexp(-lp0))
  }
)
cumulative_logp <- function(k, eta, cut, cdf) {
  cc <- c(-Inf, cut, Inf)
  log(cdf(cc[k + 1] - eta) - cdf(cc[k] - eta))
}
# log N(b | 0, Sigma) summed over groups; b is levels x q
re_log_prior <- function(b, sd, cor) {
  b <- as.matrix(b); q <- ncol(b)
  S <- if (q == 1) matrix(sd^2) else diag(sd) %*% cor %*% diag(sd)
  L <- t(chol(S)); z <- forwardsolve(L, t(b))
  sum(-0.5 * colSums(z^2)) - nrow(b) * (0.5 * q * log(2 * pi) + sum(log(diag(L))))
}

# ---- glmmTMB cases -------------------------------------------------------------------
# each: data, formulas (our API), brms formula, the glmmTMB call, how glmmTMB's disp / zi map
tmb_cases <- list(
  student = list(
    family = "student", link = "identity",
    formula = list(formula = "y ~ x + (1 | g)"),
    brms = "brm(y ~ x + (1 | g), family = student())",
    call = quote(glmmTMB(y ~ x + (1 | g), data = d, family = t_family())),
    disp = "sigma", disp_scale = 1,
    aux_note = paste("glmmTMB t_family: y = mu + sigma * t_nu; dispformula models log(sigma)",
                     "(sigma = exp(betad)); nu = exp(psi), psi estimated freely (no lower bound;",
                     "brms bounds nu >= 1 with a gamma(2, 0.1) prior)")),
  lognormal = list(
    family = "lognormal", link = "identity",
    formula = list(formula = "y ~ x + (1 | g)"),
    brms = "brm(y ~ x + (1 | g), family = lognormal())",
    call = quote(glmmTMB(log(y) ~ x + (1 | g), data = d, family = gaussian())),
    disp = "sigma", disp_scale = 0.5, log_response = TRUE,
    aux_note = paste("glmmTMB 1.1.5 has no lognormal family: fitted as gaussian on log(y);",
                     "logLik on the y scale = logLik(fit) - sum(log(y)); mu = meanlog,",
                     "sigma = sdlog (brms / Stan lognormal(mu, sigma)). glmmTMB's gaussian",
                     "betad = log(sigma^2)")),
  beta = list(
    family = "beta", link = "logit",
    formula = list(formula = "y ~ x + (1 + x | g)"),
    brms = "brm(y ~ x + (1 + x | g), family = Beta())",
    call = quote(glmmTMB(y ~ x + (1 + x | g), data = d, family = beta_family())),
    disp = "phi", disp_scale = 1,
    aux_note = paste("glmmTMB beta_family: shape1 = mu * phi, shape2 = (1 - mu) * phi,",
                     "Var = mu (1 - mu) / (1 + phi); betad = log(phi) (sigma(fit) = phi)")),
  beta_binomial = list(
    family = "beta_binomial", link = "logit",
    formula = list(formula = "cbind(y, trials - y) ~ x + (1 | g)"),
    brms = "brm(y | trials(trials) ~ x + (1 | g), family = beta_binomial())",
    call = quote(glmmTMB(cbind(y, trials - y) ~ x + (1 | g), data = d,
                         family = betabinomial())),
    disp = "phi", disp_scale = 1,
    aux_note = paste("glmmTMB betabinomial: p ~ Beta(mu * phi, (1 - mu) * phi), y ~ Binomial(trials, p);",
                     "betad = log(phi); Stan beta_binomial(trials, mu * phi, (1 - mu) * phi)")),
  zero_inflated_poisson = list(
    family = "zero_inflated_poisson", link = "log",
    formula = list(formula = "y ~ x + (1 | g)", zi = "~ 1"),
    brms = "brm(bf(y ~ x + (1 | g), zi ~ 1), family = zero_inflated_poisson())",
    call = quote(glmmTMB(y ~ x + (1 | g), ziformula = ~ 1, data = d, family = poisson())),
    zi = "zi",
    aux_note = "P(0) = zi + (1 - zi) exp(-mu); P(k > 0) = (1 - zi) Pois(k | mu); logit(zi) = zi formula"),
  zero_inflated_negbinomial = list(
    family = "zero_inflated_negbinomial", link = "log",
    formula = list(formula = "y ~ x + (1 | g)", zi = "~ 1"),
    brms = "brm(bf(y ~ x + (1 | g), zi ~ 1), family = zero_inflated_negbinomial())",
    call = quote(glmmTMB(y ~ x + (1 | g), ziformula = ~ 1, data = d, family = nbinom2())),
    disp = "shape", disp_scale = 1, zi = "zi",
    aux_note = paste("nbinom2: Var = mu + mu^2 / shape, betad = log(shape) (glmmTMB's theta,",
                     "sigma(fit)); P(0) = zi + (1 - zi) NB(0 | mu, shape)")),
  hurdle_poisson = list(
    family = "hurdle_poisson", link = "log",
    formula = list(formula = "y ~ x + (1 | g)", hu = "~ 1"),
    brms = "brm(bf(y ~ x + (1 | g), hu ~ 1), family = hurdle_poisson())",
    call = quote(glmmTMB(y ~ x + (1 | g), ziformula = ~ 1, data = d,
                         family = truncated_poisson())),
    zi = "hu",
    aux_note = paste("truncated_poisson + ziformula is a hurdle: P(0) = hu (glmmTMB's zi),",
                     "P(k > 0) = (1 - hu) Pois(k | mu) / (1 - exp(-mu)); mu is the mean of the",
                     "untruncated Poisson (exp of the linear predictor)")),
  hurdle_negbinomial = list(
    family = "hurdle_negbinomial", link = "log",
    formula = list(formula = "y ~ x + (1 | g)", hu = "~ 1"),
    brms = "brm(bf(y ~ x + (1 | g), hu ~ 1), family = hurdle_negbinomial())",
    call = quote(glmmTMB(y ~ x + (1 | g), ziformula = ~ 1, data = d,
                         family = truncated_nbinom2())),
    disp = "shape", disp_scale = 1, zi = "hu",
    aux_note = paste("truncated_nbinom2 + ziformula: P(0) = hu, P(k > 0) = (1 - hu) NB(k | mu, shape)",
                     "/ (1 - (shape / (shape + mu))^shape); mu = mean of the untruncated NB2")),
  gaussian_sigma = list(
    family = "gaussian", link = "identity",
    formula = list(formula = "y ~ x + (1 | g)", sigma = "~ x"),
    brms = "brm(bf(y ~ x + (1 | g), sigma ~ x), family = gaussian())",
    call = quote(glmmTMB(y ~ x + (1 | g), dispformula = ~ x, data = d, family = gaussian())),
    disp = "sigma", disp_scale = 0.5,
    aux_note = paste("glmmTMB's gaussian dispformula models log(sigma^2) (sigma = exp(betad / 2),",
                     "see sigma.glmmTMB's code): brms's log(sigma) coefficients = glmmTMB's disp",
                     "coefficients / 2 (SEs / 2), same model and logLik")),
  zero_inflated_poisson_zi_re = list(
    family = "zero_inflated_poisson", link = "log",
    formula = list(formula = "y ~ x + (1 | g)", zi = "~ 1 + (1 | g)"),
    brms = "brm(bf(y ~ x + (1 | g), zi ~ 1 + (1 | g)), family = zero_inflated_poisson())",
    call = quote(glmmTMB(y ~ x + (1 | g), ziformula = ~ 1 + (1 | g), data = d,
                         family = poisson())),
    zi = "zi",
    aux_note = paste("the (1 | g) terms of mu and zi are independent (glmmTMB always; brms unless",
                     "written (1 |ID| g))")),
  negbinomial_shape = list(
    family = "negbinomial", link = "log",
    formula = list(formula = "y ~ x + (1 | g)", shape = "~ x"),
    brms = "brm(bf(y ~ x + (1 | g), shape ~ x), family = negbinomial())",
    call = quote(glmmTMB(y ~ x + (1 | g), dispformula = ~ x, data = d, family = nbinom2())),
    disp = "shape", disp_scale = 1,
    aux_note = paste("nbinom2 dispformula models log(shape) (glmmTMB's theta; Var = mu + mu^2 / shape);",
                     "bayesmix's current negbinomial calls this parameter phi (Stan's neg_binomial_2)"))
)

ranef_table <- function(re) {
  # conditional modes: one row per level, one column per term
  lapply(re, function(m) list(names = I(colnames(m)), levels = rownames(m),
                                 values = unname(as.matrix(m))))
}
varcorr_tmb <- function(vc) {
  lapply(vc, function(m) {
    sd <- attr(m, "stddev")
    cor <- attr(m, "correlation")
    out <- list(names = I(names(sd)), sd = I(unname(sd)))
    if (length(sd) > 1) out$cor <- unname(cor)
    out
  })
}

fit_tmb <- function(name, spec) {
  d <- read_case(name)
  t0 <- Sys.time()
  r <- keep_warnings(eval(spec$call))
  f <- r$value
  secs <- as.numeric(difftime(Sys.time(), t0, units = "secs"))
  yfit <- if (isTRUE(spec$log_response)) log(d$y) else d$y
  n <- nrow(d)
  # per-row parameters at the conditional modes, rebuilt from the coefficients (so the
  # mapping betad -> sigma/phi/shape is ours) and compared with predict() below
  eta <- predict(f, type = "link")
  p <- list(mu = if (spec$link == "identity") eta else if (spec$link == "log") exp(eta)
            else plogis(eta))
  if (!is.null(spec$disp)) {
    Xd <- model.matrix(f$modelInfo$allForm$dispformula, d)
    eta_d <- drop(Xd %*% fixef(f)$disp)
    p[[spec$disp]] <- exp(eta_d * spec$disp_scale)
    stopifnot(max(abs(p[[spec$disp]] / predict(f, type = "disp") - 1)) < 1e-12)
  }
  if (spec$family == "student") p$nu <- unname(family_params(f))
  if (spec$family == "beta_binomial") p$trials <- d$trials
  if (!is.null(spec$zi)) p[[spec$zi]] <- predict(f, type = "zprob")
  fam <- if (isTRUE(spec$log_response)) "gaussian" else spec$family
  lp_fit <- dens[[fam]](yfit, p)  # density of what glmmTMB fitted (log(y) for lognormal)
  lp <- dens[[spec$family]](d$y, p)
  # joint check: sum log p(y | b) + log prior of b  vs  TMB's joint objective
  vc <- VarCorr(f)
  re <- ranef(f)
  prior <- 0
  for (comp in c("cond", "zi")) for (gname in names(vc[[comp]])) {
    m <- vc[[comp]][[gname]]
    prior <- prior + re_log_prior(re[[comp]][[gname]], attr(m, "stddev"), attr(m, "correlation"))
  }
  joint_tmb <- -f$obj$env$f(f$obj$env$last.par.best)
  joint_here <- sum(lp_fit) + prior
  rows <- pick_rows(d$y)
  # fixed effects of every sub-model, brms scale, with SEs
  raw <- summary(f$sdr, "fixed")
  part <- function(kind, est, scale = 1) coef_table(est, raw[rownames(raw) == kind, 2], scale)
  fx <- list(mu = part("beta", fixef(f)$cond))
  if (!is.null(spec$zi)) fx[[spec$zi]] <- part("betazi", fixef(f)$zi)
  if (!is.null(spec$disp)) fx[[spec$disp]] <- part("betad", fixef(f)$disp, spec$disp_scale)
  aux <- setNames(list(), character(0))
  if (!is.null(spec$disp) && length(fixef(f)$disp) == 1) {
    aux[[spec$disp]] <- list(value = exp(unname(fixef(f)$disp) * spec$disp_scale), link = "log",
                             sigma_glmmTMB = sigma(f))
  }
  if (spec$family == "student") {
    s <- summary(f$sdr, "fixed"); s <- s[rownames(s) == "psi", , drop = FALSE]
    aux$nu <- list(value = exp(s[1, 1]), link = "log (glmmTMB's psi; brms: identity, nu >= 1)",
                   log_estimate = s[1, 1], log_se = s[1, 2])
  }
  if (!is.null(spec$zi) && length(fixef(f)$zi) == 1 && is.null(vc$zi)) {
    aux[[spec$zi]] <- list(value = plogis(unname(fixef(f)$zi)), link = "logit")
  }
  ll <- as.numeric(logLik(f))
  # distance to the optimum a Newton step would still move (inverse Hessian x gradient)
  step <- drop(f$sdr$cov.fixed %*% f$sdr$gradient.fixed)
  out <- list(
    family = spec$family, link = spec$link, formula = spec$formula, brms = spec$brms,
    data = file.path(dir, paste0(name, ".csv")), nobs = n, package = "glmmTMB",
    r_call = paste(deparse(spec$call, width.cutoff = 500), collapse = " "),
    logLik = if (isTRUE(spec$log_response)) ll - sum(log(d$y)) else ll,
    df = attr(logLik(f), "df"),
    fixef = fx, varcorr = list(mu = varcorr_tmb(vc$cond)), aux = aux,
    ranef = list(mu = ranef_table(re$cond)),
    parametrisation = spec$aux_note,
    raw = list(names = rownames(raw), estimate = unname(raw[, 1]), se = unname(raw[, 2]),
               note = paste("glmmTMB's internal parameters (summary(fit$sdr, 'fixed')): beta = mu",
                            "coefficients, betazi = zi/hu (logit), betad = dispersion (log scale,",
                            "gaussian: log sigma^2), theta = log SDs then correlation parameters",
                            "per term, psi = family parameter (t: log nu)")),
    convergence = list(code = f$fit$convergence, message = f$fit$message, pdHess = f$sdr$pdHess,
                       max_abs_gradient = max(abs(f$sdr$gradient.fixed)),
                       max_abs_newton_step = max(abs(step)), warnings = r$warnings),
    per_row = c(list(rows = rows, y = d$y[rows], eta = unname(eta[rows])), lapply(p, function(v) {
      if (length(v) == 1) rep(v, length(rows)) else v[rows]
    }), list(logpdf = lp[rows])),
    check = list(
      note = paste("sum over all rows of the log densities written here (on the fitted scale) +",
                   "log N(b | 0, Sigma) at glmmTMB's conditional modes, against -obj$env$f at",
                   "last.par.best (TMB's own joint log density)"),
      joint_here = joint_here, joint_glmmTMB = joint_tmb, difference = joint_here - joint_tmb),
    seconds = secs)
  if (!is.null(vc$zi)) {
    out$varcorr[[spec$zi]] <- varcorr_tmb(vc$zi)
    out$ranef[[spec$zi]] <- ranef_table(re$zi)
  }
  if (isTRUE(spec$log_response)) {
    l4 <- lmer(log(y) ~ x + (1 | g), data = d, REML = FALSE)
    out$check$lme4_logLik_log_y <- as.numeric(logLik(l4))
    out$check$glmmTMB_logLik_log_y <- ll
    out$check$jacobian <- -sum(log(d$y))
  }
  stopifnot(abs(out$check$difference) < 1e-6)
  out
}

# ---- clmm cases ---------------------------------------------------------------------
laplace_1d <- function(loglik_g, s, m = NULL) {
  # log of integral over b of exp(loglik_g(b)) N(b | 0, s^2), by Laplace at the mode m
  # (found here unless given)
  h <- function(b) loglik_g(b) + dnorm(b, 0, s, log = TRUE)
  if (is.null(m)) m <- optimize(h, c(-10, 10), maximum = TRUE, tol = 1e-12)$maximum
  d2 <- function(e) (h(m + e) - 2 * h(m) + h(m - e)) / e^2
  h2 <- (4 * d2(5e-3) - d2(1e-2)) / 3  # Richardson: error O(e^4), rounding ~1e-12
  h(m) + 0.5 * log(2 * pi) - 0.5 * log(-h2)
}
fit_clmm <- function(name, link) {
  d <- read_case(name)
  d$y <- factor(d$y, ordered = TRUE)
  call <- bquote(clmm(y ~ x + (1 | g), data = d, link = .(link),
                      control = clmm.control(method = "ucminf", grtol = 1e-10)))
  t0 <- Sys.time()
  r <- keep_warnings(eval(call))
  f <- r$value
  secs <- as.numeric(difftime(Sys.time(), t0, units = "secs"))
  cdf <- if (link == "logit") plogis else pnorm
  cut <- unname(f$alpha); beta <- unname(f$beta)
  b <- ranef(f)$g[, 1]
  s <- unname(f$ST[[1]][1, 1])
  k <- as.integer(d$y)
  eta <- beta * d$x + b[as.integer(d$g)]
  lp <- cumulative_logp(k, eta, cut, cdf)
  fit_gap <- max(abs(exp(lp) - f$fitted.values))
  stopifnot(fit_gap < 1e-10)
  lap_at <- function(modes) sum(sapply(seq_len(nlevels(d$g)), function(j) {
    ii <- which(as.integer(d$g) == j)
    laplace_1d(function(bb) sum(cumulative_logp(k[ii], beta * d$x[ii] + bb, cut, cdf)), s,
               modes[[j]])
  }))
  lap <- lap_at(vector("list", nlevels(d$g)))  # modes found here
  lap_clmm_modes <- lap_at(as.list(b))          # at clmm's conditional modes
  se <- sqrt(diag(vcov(f)))
  agq <- clmm(y ~ x + (1 | g), data = d, link = link, nAGQ = 10,
              control = clmm.control(method = "ucminf", grtol = 1e-10))
  rows <- pick_rows(k)
  list(
    family = "cumulative", link = link, formula = list(formula = "y ~ x + (1 | g)"),
    brms = sprintf("brm(y ~ x + (1 | g), family = cumulative(\"%s\"))", link),
    data = file.path(dir, paste0(name, ".csv")), nobs = nrow(d), package = "ordinal::clmm",
    r_call = paste(deparse(call, width.cutoff = 500), collapse = " "),
    response = sprintf("y is an ordered factor with levels %s (the CSV holds the integers)",
                       paste(levels(d$y), collapse = " < ")),
    logLik = as.numeric(logLik(f)), df = attr(logLik(f), "df"),
    fixef = list(mu = coef_table(f$beta, se[names(f$beta)]),
                 cutpoints = coef_table(f$alpha, se[names(f$alpha)])),
    varcorr = list(mu = list(g = list(names = I("(Intercept)"), sd = I(s), sd_se = I(unname(se["ST1"]))))),
    ranef = list(mu = ranef_table(ranef(f))),
    aux = setNames(list(), character(0)),
    parametrisation = paste("clmm: P(y <= k) = F(theta_k - eta), eta = x'beta + b_g, no intercept;",
                            "Stan ordered_logistic(eta, c) / ordered_probit(eta, c) and brms",
                            "cumulative use the same sign: c = theta (the cutpoints here)"),
    convergence = list(code = f$optRes$convergence, message = f$optRes$message,
                       max_abs_gradient = max(abs(f$gradient)),
                       max_abs_newton_step = max(abs(solve(f$Hessian, f$gradient))),
                       warnings = r$warnings),
    per_row = list(rows = rows, y = k[rows], eta = eta[rows], cutpoints = cut,
                   logpdf = lp[rows]),
    check = list(
      note = paste("P(y_i | b) written here equals clmm's fitted.values (max abs gap logged);",
                   "a Laplace approximation computed here (optimize + finite-difference",
                   "curvature per group) against logLik; nAGQ = 10 logLik for information"),
      fitted_values_max_gap = fit_gap, laplace_here = lap, logLik_clmm = as.numeric(logLik(f)),
      difference = lap - as.numeric(logLik(f)),
      laplace_here_at_clmm_modes = lap_clmm_modes,
      difference_at_clmm_modes = lap_clmm_modes - as.numeric(logLik(f)),
      logLik_nAGQ10 = as.numeric(logLik(agq)), coef_nAGQ10 = as.list(coef(agq))),
    seconds = secs)
}

truth <- fromJSON(file.path(dir, "family_truth.json"), simplifyVector = FALSE)$cases
cases <- list()
for (name in names(tmb_cases)) cases[[name]] <- fit_tmb(name, tmb_cases[[name]])
cases$cumulative_logit <- fit_clmm("cumulative_logit", "logit")
cases$cumulative_probit <- fit_clmm("cumulative_probit", "probit")
for (name in names(cases)) cases[[name]]$truth <- truth[[name]]
cases <- cases[names(truth)]  # the order of make_family_data.R

pkg <- function(p) as.character(packageVersion(p))
out <- list(
  generator = "tests/reference/families/family_fits.R",
  meta = list(R = R.version.string, glmmTMB = pkg("glmmTMB"), TMB = pkg("TMB"),
              ordinal = pkg("ordinal"), lme4 = pkg("lme4"), Matrix = pkg("Matrix"),
              jsonlite = pkg("jsonlite"), date = format(Sys.Date()),
              seconds = as.numeric(difftime(Sys.time(), t_start, units = "secs"))),
  cases = cases)
writeLines(toJSON(out, digits = NA, auto_unbox = TRUE, pretty = TRUE, null = "null"),
           file.path(dir, "family_fits.json"))
cat(sprintf("%-30s %14s %10s %12s %s\n", "case", "logLik", "seconds", "check", "warnings"))
for (name in names(cases)) {
  cc <- cases[[name]]
  cat(sprintf("%-30s %14.6f %10.2f %12.2e %d\n", name, cc$logLik, cc$seconds, cc$check$difference,
              length(cc$convergence$warnings)))
}
