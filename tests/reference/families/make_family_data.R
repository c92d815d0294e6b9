# Simulated data sets for the families and distributional models of issue #17.
# Run from the repository root:  Rscript tests/reference/families/make_family_data.R
# Writes tests/reference/families/<case>.csv and family_truth.json (the simulation truth).
# Every case has its own seed, so adding a case never changes the others' data.
# Parametrisations of the truth are brms's / Stan's (see README.md in this folder).
library(jsonlite)
dir <- "tests/reference/families"

groups <- function(ng, per) {
  # balanced groups g01..gNN, rows ordered by group; x ~ N(0, 1) per row
  g <- factor(sprintf("g%02d", rep(seq_len(ng), each = per)))
  list(g = g, x = round(rnorm(ng * per), 4), idx = as.integer(g))
}
rtnbinom <- function(n, mu, size) {
  # zero-truncated NB2 by rejection (means here are >= ~1, so few rejections)
  out <- integer(n)
  for (i in seq_len(n)) repeat {
    out[i] <- rnbinom(1, mu = mu[i], size = size)
    if (out[i] > 0) break
  }
  out
}
rtpois <- function(n, mu) {
  out <- integer(n)
  for (i in seq_len(n)) repeat {
    out[i] <- rpois(1, mu[i])
    if (out[i] > 0) break
  }
  out
}

cases <- list()

cases$student <- function() {
  set.seed(1701); d <- groups(30, 20)
  tr <- list(b = c(`(Intercept)` = 1, x = 0.5), sd_g = 0.7, sigma = 0.8, nu = 5)
  b <- rnorm(30, 0, tr$sd_g)
  y <- tr$b[1] + tr$b[2] * d$x + b[d$idx] + tr$sigma * rt(length(d$x), df = tr$nu)
  list(data = data.frame(y = round(y, 6), x = d$x, g = d$g), truth = tr)
}
cases$lognormal <- function() {
  set.seed(1702); d <- groups(30, 20)
  tr <- list(b = c(`(Intercept)` = 0.5, x = 0.4), sd_g = 0.5, sigma = 0.6)  # meanlog, sdlog
  b <- rnorm(30, 0, tr$sd_g)
  y <- exp(tr$b[1] + tr$b[2] * d$x + b[d$idx] + rnorm(length(d$x), 0, tr$sigma))
  list(data = data.frame(y = signif(y, 8), x = d$x, g = d$g), truth = tr)
}
cases$beta <- function() {  # the random-slope case
  set.seed(1703); d <- groups(40, 20)
  tr <- list(b = c(`(Intercept)` = -0.3, x = 0.6), sd_g = c(`(Intercept)` = 0.5, x = 0.3),
             cor_g = 0.3, phi = 15)
  S <- diag(tr$sd_g) %*% matrix(c(1, tr$cor_g, tr$cor_g, 1), 2) %*% diag(tr$sd_g)
  B <- matrix(rnorm(80), 40) %*% chol(S)
  mu <- plogis(tr$b[1] + B[d$idx, 1] + (tr$b[2] + B[d$idx, 2]) * d$x)
  y <- rbeta(length(mu), mu * tr$phi, (1 - mu) * tr$phi)
  y <- pmin(pmax(signif(y, 8), 1e-6), 1 - 1e-6)  # rounding must not reach 0 or 1
  list(data = data.frame(y = y, x = d$x, g = d$g), truth = tr)
}
cases$beta_binomial <- function() {
  set.seed(1704); d <- groups(30, 20)
  tr <- list(b = c(`(Intercept)` = -0.5, x = 0.7), sd_g = 0.6, phi = 8)
  b <- rnorm(30, 0, tr$sd_g)
  trials <- sample(5:20, length(d$x), replace = TRUE)
  mu <- plogis(tr$b[1] + tr$b[2] * d$x + b[d$idx])
  p <- rbeta(length(mu), mu * tr$phi, (1 - mu) * tr$phi)
  y <- rbinom(length(mu), trials, p)
  list(data = data.frame(y = y, trials = trials, x = d$x, g = d$g), truth = tr)
}
ordinal_case <- function(seed, tr, rlatent) {
  set.seed(seed); d <- groups(30, 20)
  b <- rnorm(30, 0, tr$sd_g)
  eta <- tr$b * d$x + b[d$idx]
  # latent z = eta + e; y = k when cut[k-1] < z <= cut[k]: P(y <= k) = F(cut[k] - eta)
  z <- eta + rlatent(length(eta))
  y <- findInterval(z, tr$cutpoints, left.open = TRUE) + 1L
  list(data = data.frame(y = y, x = d$x, g = d$g), truth = tr)
}
cases$cumulative_logit <- function() {
  ordinal_case(1705, list(b = c(x = 0.8), sd_g = 0.8, cutpoints = c(-2, -0.7, 0.5, 1.8)),
               function(n) rlogis(n))
}
cases$cumulative_probit <- function() {
  ordinal_case(1706, list(b = c(x = 0.6), sd_g = 0.5, cutpoints = c(-0.8, 0.2, 1.1)),
               function(n) rnorm(n))
}
cases$zero_inflated_poisson <- function() {
  set.seed(1707); d <- groups(30, 20)
  tr <- list(b = c(`(Intercept)` = 0.8, x = 0.4), sd_g = 0.5, zi = 0.25)
  b <- rnorm(30, 0, tr$sd_g)
  mu <- exp(tr$b[1] + tr$b[2] * d$x + b[d$idx])
  y <- ifelse(runif(length(mu)) < tr$zi, 0L, rpois(length(mu), mu))
  list(data = data.frame(y = y, x = d$x, g = d$g), truth = tr)
}
cases$zero_inflated_negbinomial <- function() {
  set.seed(1708); d <- groups(40, 20)
  tr <- list(b = c(`(Intercept)` = 1, x = 0.4), sd_g = 0.4, shape = 2, zi = 0.2)
  b <- rnorm(40, 0, tr$sd_g)
  mu <- exp(tr$b[1] + tr$b[2] * d$x + b[d$idx])
  y <- ifelse(runif(length(mu)) < tr$zi, 0L, rnbinom(length(mu), mu = mu, size = tr$shape))
  list(data = data.frame(y = y, x = d$x, g = d$g), truth = tr)
}
cases$hurdle_poisson <- function() {
  set.seed(1709); d <- groups(30, 20)
  tr <- list(b = c(`(Intercept)` = 1, x = 0.5), sd_g = 0.4, hu = 0.3)
  b <- rnorm(30, 0, tr$sd_g)
  mu <- exp(tr$b[1] + tr$b[2] * d$x + b[d$idx])
  y <- ifelse(runif(length(mu)) < tr$hu, 0L, rtpois(length(mu), mu))
  list(data = data.frame(y = y, x = d$x, g = d$g), truth = tr)
}
cases$hurdle_negbinomial <- function() {
  set.seed(1710); d <- groups(40, 20)
  tr <- list(b = c(`(Intercept)` = 1.2, x = 0.4), sd_g = 0.5, shape = 1.5, hu = 0.35)
  b <- rnorm(40, 0, tr$sd_g)
  mu <- exp(tr$b[1] + tr$b[2] * d$x + b[d$idx])
  y <- ifelse(runif(length(mu)) < tr$hu, 0L, rtnbinom(length(mu), mu, tr$shape))
  list(data = data.frame(y = y, x = d$x, g = d$g), truth = tr)
}
cases$gaussian_sigma <- function() {
  set.seed(1711); d <- groups(30, 20)
  tr <- list(b = c(`(Intercept)` = 2, x = 0.7), sd_g = 0.6,
             b_sigma = c(`(Intercept)` = -0.2, x = 0.4))  # log(sigma) = -0.2 + 0.4 x
  b <- rnorm(30, 0, tr$sd_g)
  sigma <- exp(tr$b_sigma[1] + tr$b_sigma[2] * d$x)
  y <- tr$b[1] + tr$b[2] * d$x + b[d$idx] + rnorm(length(sigma), 0, sigma)
  list(data = data.frame(y = round(y, 6), x = d$x, g = d$g), truth = tr)
}
cases$zero_inflated_poisson_zi_re <- function() {
  set.seed(1712); d <- groups(40, 20)
  tr <- list(b = c(`(Intercept)` = 0.8, x = 0.4), sd_g = 0.4,
             b_zi = c(`(Intercept)` = -1), sd_g_zi = 0.8)  # logit(zi) = -1 + u_g, independent of b
  b <- rnorm(40, 0, tr$sd_g)
  u <- rnorm(40, 0, tr$sd_g_zi)
  mu <- exp(tr$b[1] + tr$b[2] * d$x + b[d$idx])
  zi <- plogis(tr$b_zi[1] + u[d$idx])
  y <- ifelse(runif(length(mu)) < zi, 0L, rpois(length(mu), mu))
  list(data = data.frame(y = y, x = d$x, g = d$g), truth = tr)
}
cases$negbinomial_shape <- function() {
  set.seed(1713); d <- groups(40, 20)
  tr <- list(b = c(`(Intercept)` = 1, x = 0.5), sd_g = 0.5,
             b_shape = c(`(Intercept)` = 0.7, x = 0.5))  # log(shape) = 0.7 + 0.5 x
  b <- rnorm(40, 0, tr$sd_g)
  mu <- exp(tr$b[1] + tr$b[2] * d$x + b[d$idx])
  shape <- exp(tr$b_shape[1] + tr$b_shape[2] * d$x)
  y <- rnbinom(length(mu), mu = mu, size = shape)
  list(data = data.frame(y = y, x = d$x, g = d$g), truth = tr)
}

truth <- list()
for (name in names(cases)) {
  r <- cases[[name]]()
  path <- file.path(dir, paste0(name, ".csv"))
  write.csv(r$data, path, row.names = FALSE, quote = FALSE)
  truth[[name]] <- c(list(csv = path, n = nrow(r$data), groups = nlevels(r$data$g)),
                     lapply(r$truth, function(v) if (is.null(names(v))) v else as.list(v)))
}
out <- list(generator = "tests/reference/families/make_family_data.R",
            R = R.version.string, RNGkind = RNGkind(), cases = truth)
writeLines(toJSON(out, digits = NA, auto_unbox = TRUE, pretty = TRUE),
           file.path(dir, "family_truth.json"))
