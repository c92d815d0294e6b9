# References for tests/test_bootstrap.py: Rscript tests/reference/bootstrap_refs.R
# (writes bootstrap_refs.json next to this script). lme4's bootMer percentile intervals,
# boot's norm.inter, pbkrtest's PBmodcomp. Bootstrap numbers depend on R's random numbers, so
# the tests compare them with Monte Carlo tolerances, not exactly; norm.inter is exact.
suppressPackageStartupMessages({library(lme4); library(boot); library(pbkrtest); library(jsonlite)})
out <- list(versions = list(lme4 = as.character(packageVersion("lme4")),
                            boot = as.character(packageVersion("boot")),
                            pbkrtest = as.character(packageVersion("pbkrtest")),
                            R = R.version.string))
# boot's interpolation of order statistics (exact reference)
t1 <- (1:57)^1.3
t2 <- sin(1:200) * 10 + (1:200) / 20
a <- c(0.025, 0.975, 0.1, 0.9, 0.005, 0.995)
out$norm_inter <- list(t1 = t1, t2 = t2, alpha = a,
                       q1 = boot:::norm.inter(t1, a)[, 2], q2 = boot:::norm.inter(t2, a)[, 2])
# sleepstudy (Days | Subject), REML: SEs and bootMer percentile intervals
fm <- lmer(Reaction ~ Days + (Days | Subject), sleepstudy)
out$se <- as.list(sqrt(diag(as.matrix(vcov(fm)))))
names(out$se) <- names(fixef(fm))
t0 <- proc.time()[["elapsed"]]
ci <- confint(fm, method = "boot", nsim = 1000, seed = 1, oldNames = FALSE)
out$boot_seconds <- proc.time()[["elapsed"]] - t0
out$confint_boot <- list(names = rownames(ci), lower = unname(ci[, 1]), upper = unname(ci[, 2]),
                         nsim = 1000)
# PBmodcomp: a clearly significant fixed effect, and a pure-noise covariate
ss <- sleepstudy
ss$noise <- ((1:180 * 37) %% 101) / 101 - 0.5
m1 <- lmer(Reaction ~ Days + (Days | Subject), ss, REML = FALSE)
m0 <- lmer(Reaction ~ 1 + (Days | Subject), ss, REML = FALSE)
mn <- lmer(Reaction ~ Days + noise + (Days | Subject), ss, REML = FALSE)
pb_sig <- PBmodcomp(m1, m0, nsim = 500, seed = 1)
pb_null <- PBmodcomp(mn, m1, nsim = 500, seed = 1)
tab <- function(pb) list(stat = pb$test["LRT", "stat"], df = pb$test["LRT", "df"],
                         p_chisq = pb$test["LRT", "p.value"], p_pb = pb$test["PBtest", "p.value"],
                         nsim = 500)
out$pb_significant <- tab(pb_sig)
out$pb_null <- tab(pb_null)
here <- tryCatch(dirname(sys.frame(1)$ofile), error = function(e) NULL)
if (is.null(here)) {
  args <- commandArgs(FALSE)
  f <- sub("^--file=", "", args[grep("^--file=", args)])
  here <- if (length(f)) dirname(f) else "."
}
writeLines(toJSON(out, auto_unbox = TRUE, digits = NA, pretty = TRUE),
           file.path(here, "bootstrap_refs.json"))
