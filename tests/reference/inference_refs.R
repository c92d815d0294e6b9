# Reference numbers for bayesmix's inference on lmer fits (issue 18, items 1-2):
#   * lmerTest 3.1-3 summary() coefficient tables with Satterthwaite and Kenward-Roger df/p
#     (KR through pbkrtest, REML fits only),
#   * lmerTest type III anova() tables with both ddf methods,
#   * lme4 confint(method = "profile", oldNames = FALSE) at 95% (and one case at 90%),
#   * lme4 confint(method = "Wald", oldNames = FALSE),
#   * for two glmer fits (cbpp binomial, a poisson random slope with an offset): lme4's profile
#     and Wald intervals (Laplace, lme4's defaults).
#
#   Rscript tests/reference/inference_refs.R          (from the repository root)
#
# Writes tests/reference/inference_refs.json. Data come from bayesmix/datasets/*.csv; every
# column that bayesmix reads as a factor is made a factor here with its levels in sorted order
# (numeric order for numeric-looking codes), which is lme4's order for these data sets
# (bayesmix.datasets.load does the same).
suppressPackageStartupMessages({
  library(lme4)
  library(lmerTest)
  library(pbkrtest)
  library(jsonlite)
})

data_dir <- "bayesmix/datasets"
out_file <- "tests/reference/inference_refs.json"

factors <- list(
  cbpp = c("herd", "period"),
  glmm_pois_slope = c("g"),
  sleepstudy = c("Subject"),
  lmmdata = c("class", "school"),
  Penicillin = c("plate", "sample"),
  Pastes = c("batch", "cask", "sample")
)

read_data <- function(name) {
  dir <- if (startsWith(name, "glmm_")) "tests/reference" else data_dir
  d <- read.csv(file.path(dir, paste0(name, ".csv")),
                colClasses = setNames(rep("character", length(factors[[name]])),
                                      factors[[name]]))
  for (col in factors[[name]]) {
    v <- d[[col]]
    num <- suppressWarnings(as.numeric(unique(v)))
    lev <- if (all(!is.na(num))) unique(v)[order(num)] else sort(unique(v), method = "radix")
    d[[col]] <- factor(v, levels = lev)
  }
  d
}

cases <- list(
  sleepstudy_slope_REML = list(data = "sleepstudy", REML = TRUE,
                               formula = "Reaction ~ Days + (Days | Subject)", levels = c(0.95, 0.90)),
  sleepstudy_slope_ML = list(data = "sleepstudy", REML = FALSE,
                             formula = "Reaction ~ Days + (Days | Subject)", levels = 0.95),
  sleepstudy_intercept_REML = list(data = "sleepstudy", REML = TRUE,
                                   formula = "Reaction ~ Days + (1 | Subject)", levels = 0.95),
  lmmdata_nested_REML = list(data = "lmmdata", REML = TRUE,
                             formula = "extro ~ open + agree + social + (1 | school/class)",
                             levels = 0.95),
  penicillin_crossed_REML = list(data = "Penicillin", REML = TRUE,
                                 formula = "diameter ~ 1 + (1 | plate) + (1 | sample)",
                                 levels = 0.95),
  pastes_nested_REML = list(data = "Pastes", REML = TRUE,
                            formula = "strength ~ 1 + (1 | batch/cask)", levels = 0.95),
  lmmdata_factor_REML = list(data = "lmmdata", REML = TRUE,
                             formula = "extro ~ open + agree + class + (1 | school)",
                             levels = 0.95),
  lmmdata_factor_ML = list(data = "lmmdata", REML = FALSE,
                           formula = "extro ~ open + agree + class + (1 | school)",
                           levels = numeric(0)),
  sleepstudy_uncorr_REML = list(data = "sleepstudy", REML = TRUE,
                                formula = "Reaction ~ Days + (Days || Subject)", levels = 0.95),
  lmmdata_interaction_REML = list(data = "lmmdata", REML = TRUE,
                                  formula = "extro ~ open * agree + social + (1 | school)",
                                  levels = numeric(0)),
  lmmdata_factor_interaction_REML = list(data = "lmmdata", REML = TRUE,
                                         formula = "extro ~ open * class + agree + (1 | school)",
                                         levels = numeric(0))
)

# glmer fits (Laplace): profile and Wald intervals only (no df/p-value methods for GLMMs)
glmer_cases <- list(
  cbpp_binomial = list(data = "cbpp", family = "binomial",
                       formula = "cbind(incidence, size - incidence) ~ period + (1 | herd)"),
  pois_slope = list(data = "glmm_pois_slope", family = "poisson",
                    formula = "count ~ x + offset(log(expo)) + (1 + x | g)")
)

table_json <- function(tab) {
  tab <- as.data.frame(tab, check.names = FALSE)
  list(columns = colnames(tab), rows = rownames(tab),
       values = lapply(seq_len(nrow(tab)), function(i) unname(as.numeric(tab[i, ]))))
}

out <- list(
  meta = list(
    generated = format(Sys.time(), "%Y-%m-%d %H:%M:%S UTC", tz = "UTC"),
    R_version = R.version.string,
    packages = list(lme4 = as.character(packageVersion("lme4")),
                    lmerTest = as.character(packageVersion("lmerTest")),
                    pbkrtest = as.character(packageVersion("pbkrtest")),
                    Matrix = as.character(packageVersion("Matrix")),
                    numDeriv = as.character(packageVersion("numDeriv"))),
    source = "Debian bookworm packages r-cran-lme4, r-cran-lmertest, r-cran-pbkrtest",
    conventions = list(
      coef_table = "summary(fit, ddf = ...)$coefficients of lmerTest::lmer fits",
      anova = "anova(fit, type = 3, ddf = ...) (lmerTest)",
      kenward_roger = "REML fits only (lmerTest and pbkrtest refuse ML fits)",
      confint_profile = "confint(fit, method = 'profile', oldNames = FALSE, level = ...); lme4 profiles the ML deviance (a REML fit is refitted by ML first) and inverts an interpolating spline of the signed root deviance",
      confint_wald = "confint(fit, method = 'Wald', oldNames = FALSE): NA for variance parameters",
      na = "NA is written as null"
    )
  ),
  cases = list()
)

for (key in names(cases)) {
  spec <- cases[[key]]
  dat <- read_data(spec$data)
  fit <- lmerTest::lmer(as.formula(spec$formula), data = dat, REML = spec$REML)
  res <- list(formula = spec$formula, data = spec$data, REML = spec$REML,
              theta = unname(getME(fit, "theta")), sigma = sigma(fit),
              fixef = as.list(fixef(fit)),
              logLik = as.numeric(logLik(fit)))
  res$coef_satterthwaite <- table_json(summary(fit, ddf = "Satterthwaite")$coefficients)
  res$anova_satterthwaite <- table_json(anova(fit, type = 3, ddf = "Satterthwaite"))
  if (spec$REML) {
    res$coef_kenward_roger <- table_json(summary(fit, ddf = "Kenward-Roger")$coefficients)
    res$anova_kenward_roger <- table_json(anova(fit, type = 3, ddf = "Kenward-Roger"))
  }
  res$confint_wald <- table_json(confint(fit, method = "Wald", oldNames = FALSE))
  res$confint_profile <- list()
  for (lev in spec$levels) {
    t0 <- proc.time()[["elapsed"]]
    ci <- suppressWarnings(confint(fit, method = "profile", oldNames = FALSE, level = lev))
    el <- proc.time()[["elapsed"]] - t0
    entry <- table_json(ci)
    entry$level <- lev
    entry$seconds <- el
    res$confint_profile[[length(res$confint_profile) + 1]] <- entry
  }
  out$cases[[key]] <- res
  cat(key, "done\n")
}

out$glmer_cases <- list()
for (key in names(glmer_cases)) {
  spec <- glmer_cases[[key]]
  dat <- read_data(spec$data)
  fit <- glmer(as.formula(spec$formula), data = dat, family = spec$family)
  res <- list(formula = spec$formula, data = spec$data, family = spec$family,
              theta = unname(getME(fit, "theta")), fixef = as.list(fixef(fit)),
              logLik = as.numeric(logLik(fit)))
  res$confint_wald <- table_json(confint(fit, method = "Wald", oldNames = FALSE))
  t0 <- proc.time()[["elapsed"]]
  ci <- suppressWarnings(confint(fit, method = "profile", oldNames = FALSE))
  el <- proc.time()[["elapsed"]] - t0
  entry <- table_json(ci)
  entry$level <- 0.95
  entry$seconds <- el
  res$confint_profile <- list(entry)
  out$glmer_cases[[key]] <- res
  cat(key, "done\n")
}

writeLines(toJSON(out, auto_unbox = TRUE, digits = NA, null = "null", na = "null",
                  pretty = TRUE), out_file)
cat("wrote", out_file, "\n")
