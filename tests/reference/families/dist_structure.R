# Laplace ML references for the two shapes of the distributional programs' random-effects
# system (stan/dist_laplace.stan): block diagonal (every term groups by one factor; here a
# correlated slope plus a zi intercept, three columns of Z per level) and dense (terms on
# crossed factors, the zi part on a factor of its own). Simulates both data sets (written
# beside this script) and fits them with glmmTMB. Run from the repository root:
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
cases <- list(
  zip_slopes = list(data = sim(900, 30, 1, TRUE), formula = y ~ x + (1 + x | g),
                    zi = ~ 1 + (1 | g), bf = list(formula = "y ~ x + (1 + x | g)",
                                                  zi = "~ 1 + (1 | g)")),
  zip_crossed = list(data = sim(900, 25, 12, FALSE), formula = y ~ x + (1 | g) + (1 | h),
                     zi = ~ x + (1 | h), bf = list(formula = "y ~ x + (1 | g) + (1 | h)",
                                                   zi = "~ x + (1 | h)"))
)
out <- list(generator = "tests/reference/families/dist_structure.R",
            glmmTMB = as.character(packageVersion("glmmTMB")), cases = list())
for (name in names(cases)) {
  cs <- cases[[name]]
  csv <- file.path(dir, paste0(name, ".csv"))
  write.csv(cs$data, csv, row.names = FALSE)
  d <- read.csv(csv)
  m <- glmmTMB(cs$formula, ziformula = cs$zi, family = poisson, data = d)
  s <- summary(m)$coefficients
  vc <- VarCorr(m)
  sds <- function(part) lapply(vc[[part]], function(v) list(
    names = I(colnames(v)), sd = I(unname(attr(v, "stddev"))),
    cor = if (ncol(v) > 1) unname(attr(v, "correlation")) else NULL))
  out$cases[[name]] <- list(
    data = csv, formula = cs$bf, family = "zero_inflated_poisson",
    r_call = paste(deparse(m$call), collapse = " "),
    logLik = as.numeric(logLik(m)), df = attr(logLik(m), "df"), nobs = nrow(d),
    pdHess = m$sdr$pdHess,
    fixef = list(mu = list(names = I(rownames(s$cond)), estimate = I(unname(s$cond[, 1])),
                           se = I(unname(s$cond[, 2]))),
                 zi = list(names = I(rownames(s$zi)), estimate = I(unname(s$zi[, 1])),
                           se = I(unname(s$zi[, 2])))),
    varcorr = list(mu = sds("cond"), zi = sds("zi")))
}
writeLines(toJSON(out, auto_unbox = TRUE, digits = 15, pretty = TRUE),
           file.path(dir, "dist_structure.json"))
