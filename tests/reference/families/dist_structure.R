# Laplace ML references for the two shapes of the distributional programs' random-effects
# system (stan/dist_laplace.stan): block diagonal (every term groups by one factor; here a
# correlated slope plus a zi intercept, three columns of Z per level) and dense (terms on
# crossed factors, the zi part on a factor of its own); and for beta's phi and the hurdle's hu
# with formulas of their own. Simulates the data sets (written beside this script) and fits
# them with glmmTMB. Run from the repository root:
#   Rscript tests/reference/families/dist_structure.R
# Writes tests/reference/families/dist_structure.json.
suppressPackageStartupMessages({library(glmmTMB); library(jsonlite)})
dir <- "tests/reference/families"
set.seed(20261203)

sim <- function(n, n_g, n_h, slopes) {
  g <- sample(n_g, n, replace = TRUE); h <- sample(n_h, n, replace = TRUE)
  x <- rnorm(n)
  b0 <- rnorm(n_g, 0, 0.5); b1 <- 0.5 * b0 + rnorm(n_g, 0, 0.25)
  eta <- 0.6 + 0.3 * x + b0[g] + (if (slopes) b1[g] * x else 0)
  zeta <- -0.8 + 0.2 * x
  if (slopes) zeta <- zeta + rnorm(n_g, 0, 0.6)[g] else {
    eta <- eta + rnorm(n_h, 0, 0.4)[h]
    zeta <- zeta + rnorm(n_h, 0, 0.7)[h]
  }
  y <- ifelse(runif(n) < plogis(zeta), 0L, rpois(n, exp(eta)))
  data.frame(y = y, x = round(x, 6), g = sprintf("g%02d", g), h = sprintf("h%02d", h))
}
# two more distributional parameters with their own formula (the 13 cases of family_fits.R
# model sigma, shape and zi): beta's precision phi (glmmTMB's dispformula, log link) and the
# hurdle probability hu (glmmTMB's ziformula with a truncated family, logit link)
sim_beta_phi <- function(n, n_g) {
  g <- sample(n_g, n, replace = TRUE); x <- rnorm(n)
  mu <- plogis(-0.3 + 0.6 * x + rnorm(n_g, 0, 0.5)[g]); phi <- exp(2 + 0.7 * x)
  data.frame(y = round(pmin(pmax(rbeta(n, mu * phi, (1 - mu) * phi), 1e-6), 1 - 1e-6), 8),
             x = round(x, 6), g = sprintf("g%02d", g), h = "h01")
}
sim_hurdle_hu <- function(n, n_g) {
  g <- sample(n_g, n, replace = TRUE); x <- rnorm(n)
  lambda <- exp(0.8 + 0.3 * x + rnorm(n_g, 0, 0.4)[g])
  hu <- plogis(-0.5 + 0.8 * x + rnorm(n_g, 0, 0.6)[g])
  pos <- sapply(lambda, function(l) { repeat { v <- rpois(1, l); if (v > 0) return(v) } })
  data.frame(y = ifelse(runif(n) < hu, 0L, pos), x = round(x, 6), g = sprintf("g%02d", g),
             h = "h01")
}
cases <- list(
  zip_slopes = list(data = sim(900, 30, 1, TRUE), formula = y ~ x + (1 + x | g),
                    zi = ~ 1 + (1 | g), bf = list(formula = "y ~ x + (1 + x | g)",
                                                  zi = "~ 1 + (1 | g)")),
  zip_crossed = list(data = sim(900, 25, 12, FALSE), formula = y ~ x + (1 | g) + (1 | h),
                     zi = ~ x + (1 | h), bf = list(formula = "y ~ x + (1 | g) + (1 | h)",
                                                   zi = "~ x + (1 | h)")),
  beta_phi = list(data = sim_beta_phi(700, 35), formula = y ~ x + (1 | g), disp = ~ x,
                  family = beta_family(), ours = "beta",
                  bf = list(formula = "y ~ x + (1 | g)", phi = "~ x")),
  hurdle_hu = list(data = sim_hurdle_hu(800, 40), formula = y ~ x + (1 | g),
                   zi = ~ x + (1 | g), family = truncated_poisson(), ours = "hurdle_poisson",
                   bf = list(formula = "y ~ x + (1 | g)", hu = "~ x + (1 | g)"))
)
out <- list(generator = "tests/reference/families/dist_structure.R",
            glmmTMB = as.character(packageVersion("glmmTMB")), cases = list())
for (name in names(cases)) {
  cs <- cases[[name]]
  csv <- file.path(dir, paste0(name, ".csv"))
  write.csv(cs$data, csv, row.names = FALSE)
  d <- read.csv(csv)
  fam <- if (is.null(cs$family)) poisson() else cs$family
  m <- glmmTMB(cs$formula, ziformula = if (is.null(cs$zi)) ~ 0 else cs$zi,
               dispformula = if (is.null(cs$disp)) ~ 1 else cs$disp, family = fam, data = d)
  s <- summary(m)$coefficients
  vc <- VarCorr(m)
  sds <- function(part) lapply(vc[[part]], function(v) list(
    names = I(colnames(v)), sd = I(unname(attr(v, "stddev"))),
    cor = if (ncol(v) > 1) unname(attr(v, "correlation")) else NULL))
  table <- function(tb) list(names = I(rownames(tb)), estimate = I(unname(tb[, 1])),
                             se = I(unname(tb[, 2])))
  # our names of glmmTMB's parts: cond -> mu; zi -> zi (hu for the hurdle families); disp ->
  # phi (beta: glmmTMB's dispersion model is log phi, brms's phi with a log link)
  zi_name <- if (is.null(cs$ours)) "zi" else if (cs$ours == "hurdle_poisson") "hu" else "zi"
  fixef <- list(mu = table(s$cond))
  varcorr <- list(mu = sds("cond"))
  if (!is.null(cs$zi)) {
    fixef[[zi_name]] <- table(s$zi)
    if (length(vc$zi)) varcorr[[zi_name]] <- sds("zi")
  }
  if (!is.null(cs$disp)) fixef$phi <- table(s$disp)
  out$cases[[name]] <- list(
    data = csv, formula = cs$bf,
    family = if (is.null(cs$ours)) "zero_inflated_poisson" else cs$ours,
    r_call = paste(deparse(m$call), collapse = " "),
    logLik = as.numeric(logLik(m)), df = attr(logLik(m), "df"), nobs = nrow(d),
    pdHess = m$sdr$pdHess, fixef = fixef, varcorr = varcorr)
}
writeLines(toJSON(out, auto_unbox = TRUE, digits = 15, pretty = TRUE),
           file.path(dir, "dist_structure.json"))
