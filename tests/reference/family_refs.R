# R's family() functions at fixed points: the reference of tests/test_families.py.
# Run from the repository root:  Rscript tests/reference/family_refs.R
# Writes tests/reference/family_refs.json (jsonlite keeps 15 significant digits).
library(jsonlite)
library(MASS)  # negative.binomial(theta)

eta <- c(-40, -8, -2.5, -0.3, 0, 0.7, 3, 9, 40)  # includes R's guard regions (|eta| > 30)
eta_pos <- c(0.05, 0.4, 1, 2.5, 7)                 # inverse / sqrt links need eta > 0
prob <- c(0.001, 0.07, 0.3, 0.5, 0.77, 0.95, 0.999)  # means for linkfun, exact in JSON
pos <- c(1e-6, 0.2, 1, 3.5, 800)
links <- list(
  logit = list(fam = binomial("logit"), eta = eta, mu = prob),
  probit = list(fam = binomial("probit"), eta = eta, mu = prob),
  cloglog = list(fam = binomial("cloglog"), eta = c(-40, -8, -2.5, -0.3, 0, 0.7, 2, 3.5),
                 mu = prob),
  log = list(fam = poisson("log"), eta = c(-40, -8, -2.5, 0, 0.7, 3, 9), mu = pos),
  identity = list(fam = gaussian("identity"), eta = eta, mu = c(-3, 0, 0.25, 7)),
  inverse = list(fam = Gamma("inverse"), eta = eta_pos, mu = pos),
  sqrt = list(fam = poisson("sqrt"), eta = eta_pos, mu = pos)
)
link_out <- lapply(links, function(l) {
  list(eta = l$eta, linkinv = l$fam$linkinv(l$eta), mu_eta = l$fam$mu.eta(l$eta),
       mu = l$mu, linkfun = l$fam$linkfun(l$mu))
})

theta <- 2.7  # negative binomial size
fams <- list(
  gaussian = list(fam = gaussian(), y = c(-1.5, 0, 0.3, 2, 4), mu = c(-1, 0.5, 0.3, 1.1, 6),
                  wt = c(1, 2, 0.5, 1, 3)),
  binomial = list(fam = binomial(), y = c(0, 0.25, 0.5, 1, 0.9), mu = c(0.1, 0.3, 0.5, 0.8, 0.6),
                  wt = c(4, 8, 2, 3, 10)),
  poisson = list(fam = poisson(), y = c(0, 1, 3, 10, 2), mu = c(0.4, 1.5, 3, 7.2, 0.1),
                 wt = c(1, 1, 2, 0.5, 1)),
  negbinomial = list(fam = negative.binomial(theta), y = c(0, 1, 3, 10, 2),
                     mu = c(0.4, 1.5, 3, 7.2, 0.1), wt = c(1, 1, 2, 0.5, 1)),
  Gamma = list(fam = Gamma(), y = c(0.2, 1, 3.5, 10, 0.05), mu = c(0.5, 1, 2, 12, 0.3),
               wt = c(1, 2, 1, 0.5, 1))
)
fam_out <- lapply(fams, function(f) {
  list(y = f$y, mu = f$mu, wt = f$wt, variance = f$fam$variance(f$mu),
       dev_resids = f$fam$dev.resids(f$y, f$mu, f$wt))
})
fam_out$negbinomial$theta <- theta

out <- list(generator = "tests/reference/family_refs.R", R = R.version.string,
            links = link_out, families = fam_out)
writeLines(toJSON(out, digits = NA, auto_unbox = TRUE, pretty = TRUE),
           "tests/reference/family_refs.json")
