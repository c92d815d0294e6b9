# References for tests/test_dist_inference.py: glmmTMB 1.1.5 Wald intervals and the
# likelihood-ratio table of poisson vs zero-inflated poisson on zero_inflated_poisson.csv.
# Run from the repository root: Rscript tests/reference/families/dist_inference_refs.R
suppressPackageStartupMessages({library(glmmTMB); library(jsonlite)})
d <- read.csv("tests/reference/families/zero_inflated_poisson.csv")
m0 <- glmmTMB(y ~ x + (1 | g), data = d, family = poisson)
m1 <- glmmTMB(y ~ x + (1 | g), zi = ~ 1, data = d, family = poisson)
ci <- confint(m1, method = "wald", level = 0.95)
a <- anova(m0, m1)  # glmmTMB 1.1.5 columns: Df (= npar), Chisq, Chi Df, Pr(>Chisq)
out <- list(
  generator = "tests/reference/families/dist_inference_refs.R",
  glmmTMB = as.character(packageVersion("glmmTMB")),
  confint_zip = list(names = rownames(ci), lower = unname(ci[, 1]), upper = unname(ci[, 2]),
                     estimate = unname(ci[, 3])),
  anova_pois_zip = list(npar = a$Df, AIC = a$AIC, BIC = a$BIC, logLik = a$logLik,
                        deviance = a$deviance, Chisq = a$Chisq[2], Df = a[["Chi Df"]][2],
                        p = a[["Pr(>Chisq)"]][2]))
writeLines(toJSON(out, digits = NA, auto_unbox = TRUE, pretty = TRUE),
           "tests/reference/families/dist_inference_refs.json")
