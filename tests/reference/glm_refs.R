# References for tests/test_glm.py (lm/glm fits beyond the school tutorial's):
#
#   Rscript tests/reference/glm_refs.R          (from the repository root)
#
# Writes tests/reference/glm_refs.json: for each case coef, coef(summary()) columns, logLik,
# AIC, BIC, deviance, df.residual, nobs, the first five fitted values / residuals (lm: response,
# glm: deviance) / pearson residuals, null deviance, dispersion and iterations (glm), sigma,
# R-squared and F (lm), confint (lm) or confint.default (glm); and three summary() printouts.
# Base R only (stats) plus jsonlite. Printouts depend on the locale's quotes: run in a UTF-8
# locale (the script asks for C.UTF-8).
suppressPackageStartupMessages(library(jsonlite))
invisible(Sys.setlocale("LC_CTYPE", "C.UTF-8"))
options(useFancyQuotes = TRUE)

out_file <- "tests/reference/glm_refs.json"

cbpp <- read.csv("bayesmix/datasets/cbpp.csv")
cbpp$period <- factor(cbpp$period, levels = c("1", "2", "3", "4"))
cbpp$any <- as.integer(cbpp$incidence > 0)
cbpp$w <- (seq_len(nrow(cbpp)) %% 3) + 0.5
lmmdata <- read.csv("bayesmix/datasets/lmmdata.csv")
lmmdata$school <- factor(lmmdata$school, levels = c("I", "II", "III", "IV", "V", "VI"))

fits <- list(
  binomial = glm(cbind(incidence, size - incidence) ~ period, binomial, cbpp),
  binomial_probit = glm(cbind(incidence, size - incidence) ~ period,
                        binomial(link = "probit"), cbpp),
  bernoulli = glm(any ~ period + size, binomial, cbpp),
  # non-integer weights: R warns "non-integer #successes"; the fit is what the test compares
  bernoulli_weighted = suppressWarnings(glm(any ~ period + size, binomial, cbpp, weights = w)),
  poisson_offset = glm(incidence ~ period + offset(log(size)), poisson, cbpp),
  poisson_noint = glm(incidence ~ 0 + period, poisson, cbpp),
  gamma_log = glm(extro ~ open + agree + school, Gamma(link = "log"), lmmdata),
  gamma_inverse = glm(size ~ period, Gamma, cbpp),
  lm_weighted = lm(incidence ~ period + size, cbpp, weights = w),
  glm_gauss_weighted = glm(incidence ~ period + size, data = cbpp, weights = w),
  lm_noint = lm(incidence ~ 0 + size, cbpp)
)

first5 <- function(x) unname(as.numeric(x))[1:5]

summarize <- function(f) {
  tab <- coef(summary(f))
  res <- list(
    coef = as.list(coef(f)),
    se = unname(tab[, 2]), stat = unname(tab[, 3]), p = unname(tab[, 4]),
    logLik = as.numeric(logLik(f)), AIC = AIC(f), BIC = BIC(f), deviance = deviance(f),
    df_residual = df.residual(f), nobs = nobs(f),
    fitted_first5 = first5(fitted(f)),
    resid_first5 = first5(residuals(f)),          # lm: response; glm: deviance residuals
    pearson_first5 = first5(residuals(f, type = "pearson"))
  )
  if (inherits(f, "glm")) {
    res$null_deviance <- f$null.deviance
    res$dispersion <- summary(f)$dispersion
    res$iter <- f$iter
    ci <- confint.default(f)
  } else {
    s <- summary(f)
    res$sigma <- s$sigma
    res$r_squared <- s$r.squared
    res$adj_r_squared <- s$adj.r.squared
    res$F <- unname(s$fstatistic["value"])
    ci <- confint(f)
  }
  res$confint <- unname(lapply(seq_len(nrow(ci)), function(i) unname(ci[i, ])))
  res
}

# print.summary.* ends with an empty line, so the joined text ends with one newline
printout <- function(x) paste(capture.output(print(x)), collapse = "\n")

olsexamp <- lm(extro ~ open + agree + social, data = lmmdata)
ci_ols <- confint(olsexamp)

out <- list(
  meta = list(
    generated = format(Sys.time(), "%Y-%m-%d %H:%M:%S UTC", tz = "UTC"),
    R_version = R.version.string,
    packages = list(stats = as.character(packageVersion("stats")),
                    jsonlite = as.character(packageVersion("jsonlite"))),
    conventions = list(
      resid_first5 = "residuals(fit): response residuals for lm, deviance residuals for glm",
      confint = "lm: confint(); glm: confint.default() (Wald)",
      summaries = "paste(capture.output(print(summary(fit))), collapse = '\\n')")
  ),
  cases = lapply(fits, summarize),
  summaries = list(
    binomial = printout(summary(fits$binomial)),
    lm_weighted = printout(summary(fits$lm_weighted)),
    OLSexamp = printout(summary(olsexamp))
  ),
  confint_OLSexamp = unname(lapply(seq_len(nrow(ci_ols)), function(i) unname(ci_ols[i, ])))
)

writeLines(toJSON(out, auto_unbox = TRUE, digits = NA, pretty = TRUE, null = "null",
                  na = "null"), out_file)
cat("wrote", out_file, "\n")
