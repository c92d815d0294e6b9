# brms's Stan code and default priors for each case of family_fits.json: the model the
# Bayesian comparisons of issue #17 are to match (no sampling here, nothing is compiled).
# Run from the repository root:  Rscript tests/reference/families/brms_priors.R
# Writes tests/reference/families/brms_priors.json and brms_stancode/<case>.stan.
suppressPackageStartupMessages({ library(brms); library(jsonlite) })
dir <- "tests/reference/families"
dir.create(file.path(dir, "brms_stancode"), showWarnings = FALSE)
read_case <- function(name) {
  d <- read.csv(file.path(dir, paste0(name, ".csv")), stringsAsFactors = FALSE)
  d$g <- factor(d$g)
  if (startsWith(name, "cumulative")) d$y <- factor(d$y, ordered = TRUE)
  d
}
# the brms calls of family_fits.json's "brms" fields, as formula + family objects
specs <- list(
  student = list(bf(y ~ x + (1 | g)), student()),
  lognormal = list(bf(y ~ x + (1 | g)), lognormal()),
  beta = list(bf(y ~ x + (1 + x | g)), Beta()),
  beta_binomial = list(bf(y | trials(trials) ~ x + (1 | g)), beta_binomial()),
  cumulative_logit = list(bf(y ~ x + (1 | g)), cumulative("logit")),
  cumulative_probit = list(bf(y ~ x + (1 | g)), cumulative("probit")),
  zero_inflated_poisson = list(bf(y ~ x + (1 | g), zi ~ 1), zero_inflated_poisson()),
  zero_inflated_negbinomial = list(bf(y ~ x + (1 | g), zi ~ 1), zero_inflated_negbinomial()),
  hurdle_poisson = list(bf(y ~ x + (1 | g), hu ~ 1), hurdle_poisson()),
  hurdle_negbinomial = list(bf(y ~ x + (1 | g), hu ~ 1), hurdle_negbinomial()),
  gaussian_sigma = list(bf(y ~ x + (1 | g), sigma ~ x), gaussian()),
  zero_inflated_poisson_zi_re = list(bf(y ~ x + (1 | g), zi ~ 1 + (1 | g)), zero_inflated_poisson()),
  negbinomial_shape = list(bf(y ~ x + (1 | g), shape ~ x), negbinomial())
)
out <- list()
for (name in names(specs)) {
  d <- read_case(name)
  s <- specs[[name]]
  code <- make_stancode(s[[1]], data = d, family = s[[2]])
  path <- file.path(dir, "brms_stancode", paste0(name, ".stan"))
  writeLines(code, path)
  p <- as.data.frame(get_prior(s[[1]], data = d, family = s[[2]]))
  out[[name]] <- list(
    stancode = path,
    family = s[[2]]$family, links = as.list(unlist(s[[2]][grepl("^link(_|$)", names(s[[2]]))])),
    priors = lapply(c("prior", "class", "coef", "group", "dpar", "lb", "ub"),
                    function(k) p[[k]]) |> setNames(c("prior", "class", "coef", "group", "dpar", "lb", "ub")),
    likelihood = trimws(grep("target \\+= .*_lp[dm]f\\(Y", strsplit(code, "\n")[[1]], value = TRUE)))
}
writeLines(toJSON(list(generator = "tests/reference/families/brms_priors.R",
                       meta = list(R = R.version.string, brms = as.character(packageVersion("brms")),
                                   date = format(Sys.Date())),
                       cases = out), auto_unbox = TRUE, pretty = TRUE),
           file.path(dir, "brms_priors.json"))
