# lme4 reference fits (tests/reference/lme4_refs.json, also ../shared/reference/lme4_refs.json):
# 17 lmer / glmer cases on lme4's data sets and the school data, plus the school tutorial's
# lm / glm fits and F tests ("glm_cases").
#
#   Rscript tests/reference/lme4_refs.R [OUT.json] [DATA_DIR]      (from the repository root)
#
# OUT defaults to tests/reference/lme4_refs.regenerated.json (the committed JSON is left alone:
# compare with `python tests/reference/compare_refs.py tests/reference/lme4_refs.json OUT`);
# DATA_DIR defaults to bayesmix/datasets (the same files as ../shared/data). Takes ~2.5 minutes,
# most of it InstEval (6 fits of ~12 s: one for the results and five timed).
#
# Each CSV is read back and its columns re-typed like lme4's own data object of the same name
# (factor levels, ordered factors, integer vs numeric), so the fits are those of lme4's
# objects ("csv_roundtrip_vs_lme4_object" records the check); lmmdata is not in lme4: its
# factors get sorted levels. lme4's defaults throughout (lmerControl(), glmerControl(), nAGQ=1).
suppressPackageStartupMessages({
  library(lme4)
  library(jsonlite)
})

args <- commandArgs(trailingOnly = TRUE)
out_file <- if (length(args) >= 1) args[[1]] else "tests/reference/lme4_refs.regenerated.json"
data_dir <- if (length(args) >= 2) args[[2]] else "bayesmix/datasets"
MAX_RANEF_LEVELS <- 100

# ---------------------------------------------------------------- data

LME4_OBJECTS <- c("sleepstudy", "cbpp", "Penicillin", "Pastes", "Dyestuff", "InstEval")

read_data <- function(name) {
  dat <- read.csv(file.path(data_dir, paste0(name, ".csv")), stringsAsFactors = FALSE)
  identical_factors <- NULL
  if (name %in% LME4_OBJECTS) {
    obj <- get(name, envir = asNamespace("lme4"))
    for (col in intersect(names(obj), names(dat))) {
      v <- obj[[col]]
      if (is.factor(v)) {
        dat[[col]] <- factor(as.character(dat[[col]]), levels = levels(v),
                             ordered = is.ordered(v))
      } else if (is.integer(v)) {
        dat[[col]] <- as.integer(dat[[col]])
      } else {
        dat[[col]] <- as.numeric(dat[[col]])
      }
    }
    fac <- names(obj)[vapply(obj, is.factor, logical(1))]
    identical_factors <- list(factors_identical = isTRUE(all.equal(
      lapply(dat[fac], identity), lapply(as.data.frame(obj)[fac], identity),
      check.attributes = TRUE)))
  } else {
    for (col in names(dat)) {
      if (is.character(dat[[col]])) dat[[col]] <- factor(dat[[col]],
                                                         levels = sort(unique(dat[[col]])))
    }
  }
  list(data = dat, roundtrip = identical_factors)
}

column_info <- function(dat) {
  lapply(dat, function(v) {
    if (is.ordered(v)) list(type = "ordered", levels = levels(v))
    else if (is.factor(v)) list(type = "factor", levels = levels(v))
    else list(type = if (is.integer(v)) "integer" else "numeric")
  })
}

# ---------------------------------------------------------------- cases

lmer_case <- function(formula, data, REML, note = NULL)
  list(formula = formula, data = data, REML = REML, fitter = "lmer", note = note)
LMM_X <- "extro ~ open + agree + social"
cases <- list(
  lmmdata_school_REML = lmer_case(paste(LMM_X, "+ (1|school)"), "lmmdata", TRUE),
  lmmdata_school_ML = lmer_case(paste(LMM_X, "+ (1|school)"), "lmmdata", FALSE),
  lmmdata_school_class_REML = lmer_case(paste(LMM_X, "+ (1|school) + (1|class)"), "lmmdata", TRUE),
  lmmdata_school_class_ML = lmer_case(paste(LMM_X, "+ (1|school) + (1|class)"), "lmmdata", FALSE),
  lmmdata_nested_REML = lmer_case(paste(LMM_X, "+ (1|school/class)"), "lmmdata", TRUE),
  lmmdata_nested_ML = lmer_case(paste(LMM_X, "+ (1|school/class)"), "lmmdata", FALSE),
  lmmdata_nested_slope_REML = lmer_case(paste(LMM_X, "+ (1+open|school/class)"), "lmmdata", TRUE),
  sleepstudy_slope_REML = lmer_case("Reaction ~ Days + (Days|Subject)", "sleepstudy", TRUE),
  sleepstudy_slope_ML = lmer_case("Reaction ~ Days + (Days|Subject)", "sleepstudy", FALSE),
  sleepstudy_uncorr_REML = lmer_case(
    "Reaction ~ Days + (Days||Subject)", "sleepstudy", TRUE,
    note = "|| expands to (1|Subject) + (0+Days|Subject); VarCorr groups are 'Subject' and 'Subject.1'"),
  sleepstudy_intercept_ML = lmer_case("Reaction ~ Days + (1|Subject)", "sleepstudy", FALSE),
  penicillin_crossed_REML = lmer_case("diameter ~ 1 + (1|plate) + (1|sample)", "Penicillin", TRUE),
  pastes_nested_REML = lmer_case("strength ~ 1 + (1|batch/cask)", "Pastes", TRUE),
  dyestuff_REML = lmer_case("Yield ~ 1 + (1|Batch)", "Dyestuff", TRUE),
  dyestuff_ML = lmer_case("Yield ~ 1 + (1|Batch)", "Dyestuff", FALSE),
  cbpp_binomial = list(formula = "cbind(incidence, size - incidence) ~ period + (1|herd)",
                       data = "cbpp", fitter = "glmer", family = "binomial", nAGQ = 1L),
  insteval_REML = lmer_case("y ~ 1 + service + (1|s) + (1|d) + (1|dept:service)", "InstEval",
                            TRUE)
)

# The variable names (formula, dat, REML, family, nAGQ) are what getCall() records.
fit_case <- function(case, dat) {
  formula <- as.formula(case$formula)
  if (case$fitter == "lmer") {
    REML <- case$REML
    lmer(formula = formula, data = dat, REML = REML)
  } else {
    family <- get(case$family)()
    nAGQ <- case$nAGQ
    glmer(formula = formula, data = dat, family = family, nAGQ = nAGQ)
  }
}

# the fit, with the warnings and messages it raised (lme4's singular-fit note is a message)
fit_quietly <- function(case, dat) {
  w <- character(0)
  m <- character(0)
  fit <- withCallingHandlers(fit_case(case, dat),
    warning = function(c) {
      w <<- c(w, conditionMessage(c))
      invokeRestart("muffleWarning")
    },
    message = function(c) {
      m <<- c(m, sub("\n$", "", conditionMessage(c)))
      invokeRestart("muffleMessage")
    })
  list(fit = fit, warnings = w, messages = m)
}

# ---------------------------------------------------------------- summaries

named <- function(x) as.list(setNames(as.numeric(x), names(x)))
# a matrix as a list of rows, each a JSON array even when it has one element
matrix_rows <- function(m) unname(lapply(seq_len(nrow(m)), function(i) I(unname(m[i, ]))))

table_rows <- function(tab) {
  rows <- lapply(seq_len(nrow(tab)), function(i) unname(as.numeric(tab[i, ])))
  list(columns = colnames(tab), rows = setNames(rows, rownames(tab)))
}

varcorr_list <- function(fit) {
  vc <- VarCorr(fit)
  lapply(vc, function(m) {
    sd <- attr(m, "stddev")
    terms <- names(sd)
    cor <- NULL
    if (length(terms) > 1) {
      cm <- attr(m, "correlation")
      cor <- list()
      for (i in seq_along(terms)) for (j in seq_along(terms)) if (j > i)
        cor[[paste(terms[i], "|", terms[j])]] <- cm[i, j]
    }
    list(sd = named(sd), cor = cor, cov = matrix_rows(m), terms = I(terms))
  })
}

varcorr_table <- function(fit) {
  vc <- as.data.frame(VarCorr(fit))
  lapply(seq_len(nrow(vc)), function(i) list(
    grp = vc$grp[i], var1 = if (is.na(vc$var1[i])) NULL else vc$var1[i],
    var2 = if (is.na(vc$var2[i])) NULL else vc$var2[i], vcov = vc$vcov[i],
    sdcor = vc$sdcor[i]))
}

ranef_list <- function(fit) {
  n_levels <- vapply(getME(fit, "flist"), nlevels, integer(1))
  re <- ranef(fit, condVar = TRUE)
  out <- list()
  for (g in names(re)) {
    if (n_levels[[g]] > MAX_RANEF_LEVELS) {
      out[[g]] <- list(omitted = TRUE, n_levels = n_levels[[g]])
      next
    }
    df <- re[[g]]
    pv <- attr(df, "postVar")
    vals <- lapply(seq_along(df), function(j) as.numeric(df[[j]]))
    # one array for a term's coefficients; a list of arrays when several terms share the
    # grouping factor ((Days || Subject)), each term's own diagonal
    sds <- if (is.list(pv)) {
      unlist(lapply(pv, function(a) lapply(seq_len(dim(a)[1]),
                                          function(j) sqrt(as.numeric(a[j, j, ])))),
             recursive = FALSE)
    } else {
      lapply(seq_along(df), function(j) sqrt(as.numeric(pv[j, j, ])))
    }
    names(vals) <- names(sds) <- names(df)
    out[[g]] <- list(levels = rownames(df), values = vals, condsd = sds)
  }
  out
}

time_fit <- function(case, dat, reps = 5) {
  t <- vapply(seq_len(reps), function(i)
    system.time(suppressMessages(fit_case(case, dat)))[["elapsed"]], numeric(1))
  list(fit_times_s = t, median_s = median(t),
       method = sprintf("system.time()['elapsed'] of %d refits after 1 untimed fit", reps))
}

summarize_fit <- function(fitted, case, dat) {
  fit <- fitted$fit
  is_lmer <- case$fitter == "lmer"
  reml <- is_lmer && isREML(fit)
  ll <- logLik(fit)
  V <- as.matrix(vcov(fit))
  cmp <- getME(fit, "devcomp")$cmp
  cmp <- cmp[!is.na(cmp)]
  y <- model.response(model.frame(fit))
  if (is.matrix(y)) y <- y[, 1]
  contr <- attr(getME(fit, "X"), "contrasts")
  res <- list(
    fixef = named(fixef(fit)),
    fixef_se = named(setNames(sqrt(diag(V)), names(fixef(fit)))),
    coef_table = table_rows(coef(summary(fit))),
    vcov_fixef = matrix_rows(V),
    X_colnames = I(colnames(getME(fit, "X"))),
    contrasts = if (length(contr)) lapply(contr, as.character) else NULL,
    varcorr = varcorr_list(fit),
    varcorr_table = varcorr_table(fit),
    sigma = if (is_lmer) sigma(fit) else NULL,
    theta = named(getME(fit, "theta")),
    logLik = as.numeric(ll), logLik_df = attr(ll, "df"),
    AIC = AIC(fit), BIC = BIC(fit), minus2logLik = -2 * as.numeric(ll),
    deviance = if (reml) NULL else deviance(fit),
    REMLcrit = if (reml) REMLcrit(fit) else NULL,
    deviance_ML_at_REML_fit = if (reml) deviance(fit, REML = FALSE) else NULL,
    AICtab = named(summary(fit)$AICtab),
    devcomp_cmp = named(cmp),
    nobs = nobs(fit), df_residual = df.residual(fit),
    ngrps = as.list(ngrps(fit)),
    isSingular = isSingular(fit),
    warnings = I(fitted$warnings), messages = I(fitted$messages),
    optimizer = list(name = fit@optinfo$optimizer, feval = fit@optinfo$feval,
                     conv_opt = fit@optinfo$conv$opt,
                     lme4_messages = I(as.character(unlist(fit@optinfo$conv$lme4$messages))),
                     optinfo_warnings = I(as.character(unlist(fit@optinfo$warnings)))),
    ranef = ranef_list(fit),
    first5_response = as.numeric(y)[1:5],
    timing = time_fit(case, dat)
  )
  first5 <- function(x) as.numeric(x)[1:5]
  res$predict_first5 <- if (is_lmer) {
    list(re_form_NULL = first5(predict(fit)), re_form_NA = first5(predict(fit, re.form = NA)))
  } else {
    list(re_form_NULL_link = first5(predict(fit, type = "link")),
         re_form_NA_link = first5(predict(fit, re.form = NA, type = "link")),
         re_form_NULL_response = first5(predict(fit, type = "response")),
         re_form_NA_response = first5(predict(fit, re.form = NA, type = "response")))
  }
  if (!is_lmer) res$nAGQ <- case$nAGQ
  res
}

# ---------------------------------------------------------------- the school tutorial's lm/glm

glm_cases <- function(lmmdata) {
  out <- list(data_file = "data/lmmdata.csv")
  ols <- lm(extro ~ open + agree + social, data = lmmdata)
  s <- summary(ols)
  out$OLSexamp <- list(
    formula = "extro ~ open + agree + social", fitter = "lm",
    coef = named(coef(ols)), se = named(coef(s)[, 2]), coef_table = table_rows(coef(s)),
    sigma = s$sigma, r_squared = s$r.squared, adj_r_squared = s$adj.r.squared,
    fstatistic = named(s$fstatistic), AIC = AIC(ols), BIC = BIC(ols),
    logLik = as.numeric(logLik(ols)))
  formulas <- c(MLexamp = "extro ~ open + agree + social",
                MLexamp.2 = "extro ~ open + agree + social + class",
                MLexamp.3 = "extro ~ open + agree + social + school",
                MLexamp.4 = "extro ~ open + agree + social + school:class")
  fits <- list()
  for (nm in names(formulas)) {
    f <- glm(as.formula(formulas[[nm]]), data = lmmdata)
    fits[[nm]] <- f
    s <- summary(f)
    ll <- logLik(f)
    cf <- coef(f)
    out[[nm]] <- list(
      formula = formulas[[nm]], family = "gaussian(identity)",
      coef = lapply(as.list(cf), function(v) if (is.na(v)) NULL else v),
      aliased_coefs = I(names(cf)[is.na(cf)]),
      coef_table = table_rows(coef(s)),
      AIC = AIC(f), BIC = BIC(f), logLik = as.numeric(ll), logLik_df = attr(ll, "df"),
      deviance = deviance(f), null_deviance = f$null.deviance,
      df_residual = df.residual(f), dispersion = s$dispersion)
  }
  for (other in c("MLexamp.3", "MLexamp.2", "MLexamp.4")) {
    tab <- anova(fits$MLexamp, fits[[other]], test = "F")
    key <- paste0("anova_MLexamp_vs_", sub("MLexamp.", "", other, fixed = TRUE), "_F")
    out[[key]] <- list(
      call = sprintf("anova(MLexamp, %s, test=\"F\")", other), columns = colnames(tab),
      rows = lapply(seq_len(nrow(tab)), function(i) unname(as.numeric(tab[i, ]))))
  }
  out
}

# ---------------------------------------------------------------- run

data_sets <- c("lmmdata", "sleepstudy", "cbpp", "Penicillin", "Pastes", "Dyestuff", "InstEval")
loaded <- lapply(setNames(data_sets, data_sets), read_data)
data_info <- list()
for (nm in data_sets) {
  d <- loaded[[nm]]
  data_info[[paste0(nm, ".csv")]] <- list(
    file = paste0("data/", nm, ".csv"), nrow = nrow(d$data), columns = column_info(d$data),
    csv_roundtrip_vs_lme4_object = d$roundtrip)
}

# LME4_REFS_CASES=a,b runs only those cases (a quick check; the JSON then holds just them)
only <- strsplit(Sys.getenv("LME4_REFS_CASES"), ",")[[1]]
if (length(only)) cases <- cases[only]

results <- list()
for (key in names(cases)) {
  case <- cases[[key]]
  dat <- loaded[[case$data]]$data
  cat("fitting", key, "\n")
  fitted <- fit_quietly(case, dat)
  fit <- fitted$fit
  fam <- family(fit)
  results[[key]] <- list(
    formula = case$formula, data_file = paste0("data/", case$data, ".csv"), data = case$data,
    family = fam$family, link = fam$link,
    method = if (case$fitter == "glmer") sprintf("ML (Laplace, nAGQ=%d)", case$nAGQ)
             else if (case$REML) "REML" else "ML",
    fitter = case$fitter,
    call = paste(deparse(getCall(fit), width.cutoff = 500L), collapse = " "),
    note = case$note, extra = NULL,
    results = summarize_fit(fitted, case, dat))
}

si <- sessionInfo()
meta <- list(
  generated = format(Sys.time(), "%Y-%m-%d %H:%M:%S UTC", tz = "UTC"),
  R_version = R.version$version.string,
  packages = lapply(c(lme4 = "lme4", Matrix = "Matrix", jsonlite = "jsonlite",
                      nloptr = "nloptr", minqa = "minqa"),
                    function(p) as.character(packageVersion(p))),
  platform = R.version$platform, os = utils::osVersion,
  BLAS = basename(normalizePath(si$BLAS)), LAPACK = basename(normalizePath(si$LAPACK)),
  n_cpu = parallel::detectCores(),
  source = "Debian bookworm packages r-base-core, r-cran-lme4, r-cran-jsonlite",
  controls = "lme4 defaults: lmer -> lmerControl() (nloptwrap/bobyqa); glmer -> glmerControl() (bobyqa then Nelder_Mead), nAGQ = 1 (Laplace)",
  number_format = "jsonlite digits=NA (15 significant digits)",
  conventions = list(
    AIC_BIC = "as lme4 reports: for REML fits they use the REML log-likelihood",
    deviance = "lmer ML: deviance() == -2 logLik; lmer REML: null (deviance() is deprecated there) -> see REMLcrit and deviance_ML_at_REML_fit; glmer: deviance() = sum of squared deviance residuals, which differs from minus2logLik (summary()'s 'deviance' == minus2logLik, see AICtab)",
    ranef = "conditional modes (ranef(condVar=TRUE)) with conditional sds, only for grouping factors with <= 100 levels",
    predict_first5 = "predict() on the fitted data rows 1-5: re.form=NULL (with random effects) and re.form=NA (population level); glmer cases give link and response scale",
    fixef_se = "sqrt(diag(vcov(fit)))",
    data = "fits use data/<name>.csv read back with factors re-typed to the level order recorded in 'data' (identical to lme4's objects)",
    timing = "median of 5 refits (system.time elapsed), after one untimed fit; single R process, reference BLAS"
  )
)

out <- list(meta = meta, data = data_info, cases = results,
            glm_cases = glm_cases(loaded$lmmdata$data))
writeLines(toJSON(out, auto_unbox = TRUE, digits = NA, pretty = TRUE, null = "null",
                  na = "null"), out_file)
cat("wrote", out_file, "\n")
