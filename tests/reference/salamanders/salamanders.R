# glmmTMB's Salamanders data (Price et al. 2016, as shipped in glmmTMB 1.1.5) written to
# bayesmix/datasets/Salamanders.csv, and the zero-inflated Poisson fit of the gallery notebook
# (notebooks/salamanders_zip.ipynb) by glmmTMB, Laplace ML, for its test.
# Run from the repository root: Rscript tests/reference/salamanders/salamanders.R
suppressMessages({library(glmmTMB); library(jsonlite)})
data(Salamanders, package = "glmmTMB")
d <- Salamanders
out <- data.frame(site = as.character(d$site), mined = as.character(d$mined), cover = d$cover,
                  sample = d$sample, DOP = d$DOP, Wtemp = d$Wtemp, DOY = d$DOY,
                  spp = as.character(d$spp), count = d$count)
write.csv(out, "bayesmix/datasets/Salamanders.csv", row.names = FALSE)
fit <- glmmTMB(count ~ spp + mined + (1 | site), ziformula = ~ spp + mined,
               family = poisson, data = d)
s <- summary(fit)
ref <- list(
  r_call = "glmmTMB(count ~ spp + mined + (1 | site), ziformula = ~ spp + mined, family = poisson, data = Salamanders)",
  glmmTMB = as.character(packageVersion("glmmTMB")),
  levels = list(spp = levels(d$spp), mined = levels(d$mined), site = levels(d$site)),
  logLik = as.numeric(logLik(fit)), df = attr(logLik(fit), "df"), nobs = nobs(fit),
  fixef = list(
    mu = list(names = names(fixef(fit)$cond), estimate = unname(fixef(fit)$cond),
              se = unname(s$coefficients$cond[, 2])),
    zi = list(names = names(fixef(fit)$zi), estimate = unname(fixef(fit)$zi),
              se = unname(s$coefficients$zi[, 2]))),
  sd_site = unname(attr(VarCorr(fit)$cond$site, "stddev")))
writeLines(toJSON(ref, auto_unbox = TRUE, digits = NA, pretty = TRUE),
           "tests/reference/salamanders/salamanders_zip.json")
