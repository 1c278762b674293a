# Reference fits for skhlm's tests: lme4 1.1-31 and lmerTest 3.1-3 on R 4.2.
#
# Run from the repository root, after python tests/data/make_reference_data.py:
#     Rscript tests/data/lme4/fit_lme4.R
# Writes tests/data/lme4/lme4_reference.json (vectors stay arrays even of length 1).  The test suite reads that file and
# never needs R.
#
# Every model is fitted twice: with lme4's default optimizer settings ("default")
# and with tight tolerances ("tight"), the reference for agreement tests: lme4's
# defaults stop when the deviance changes by < 1e-8 in absolute terms, which leaves
# its variance ratio accurate to only ~1e-5.

suppressPackageStartupMessages({
  library(lme4)
  library(lmerTest)
  library(jsonlite)
})

here <- "tests/data/lme4"
models <- read.csv(file.path(here, "models.csv"), stringsAsFactors = FALSE)

tight <- lmerControl(
  optimizer = "nloptwrap",
  optCtrl = list(xtol_abs = 1e-14, ftol_abs = 1e-15, xtol_rel = 0, ftol_rel = 0, maxeval = 1e5),
  check.conv.singular = "ignore"
)

read_data <- function(name) {
  d <- read.csv(file.path(here, paste0(name, ".csv")), stringsAsFactors = FALSE)
  # Sort levels byte-wise (C locale), as Python sorts strings.
  d$g <- factor(d$g, levels = sort(unique(d$g), method = "radix"))
  d
}

profile_ci <- function(m) {
  ci <- tryCatch(
    suppressWarnings(confint(m, method = "profile", oldNames = TRUE, level = 0.95)),
    error = function(e) NULL
  )
  if (is.null(ci)) return(NULL)
  out <- list()
  for (r in rownames(ci)) out[[r]] <- unname(ci[r, ])
  out
}

fit_one <- function(d, terms, reml) {
  f <- as.formula(paste("y ~", terms, "+ (1 | g)"))
  m <- lmerTest::lmer(f, data = d, REML = reml, control = tight)
  m_default <- lme4::lmer(f, data = d, REML = reml)
  re <- ranef(m, condVar = TRUE)$g
  vc <- as.data.frame(VarCorr(m))
  coefs <- summary(m)$coefficients  # lmerTest: Satterthwaite df and p-values
  lm_fit <- lm(as.formula(paste("y ~", terms)), data = d)
  list(
    fixef = as.list(fixef(m)),
    fixef_names = I(names(fixef(m))),
    vcov = unname(as.matrix(vcov(m))),
    s2u = vc$vcov[vc$grp == "g"],
    s2e = sigma(m)^2,
    theta = unname(getME(m, "theta")),
    logLik = as.numeric(logLik(m)),
    AIC = AIC(m),
    BIC = BIC(m),
    criterion = if (reml) REMLcrit(m) else deviance(m),
    isSingular = isSingular(m),
    ranef = unname(re[, 1]),
    condVar = unname(as.numeric(attr(re, "postVar"))),
    levels = rownames(re),
    satterthwaite = list(
      std_error = I(unname(coefs[, "Std. Error"])),
      df = I(unname(coefs[, "df"])),
      t_value = I(unname(coefs[, "t value"])),
      p_value = I(unname(coefs[, "Pr(>|t|)"]))
    ),
    confint_profile = profile_ci(m),
    confint_wald = {
      w <- confint(m, method = "Wald", parm = "beta_")
      list(lower = I(unname(w[, 1])), upper = I(unname(w[, 2])))
    },
    lm_logLik = as.numeric(logLik(lm_fit, REML = reml)),
    # lmerTest's t-based intervals (estimate +- qt(0.975, Satterthwaite df) * SE).
    satterthwaite_ci = {
      p <- length(fixef(m))
      ci <- do.call(rbind, lapply(seq_len(p), function(k) {
        L <- numeric(p)
        L[k] <- 1
        lmerTest::contest(m, L, joint = FALSE, confint = TRUE, level = 0.95)
      }))
      list(lower = I(unname(ci$lower)), upper = I(unname(ci$upper)))
    },
    # lmerTest's LRT of the random intercept (REML vs REML, ML vs ML); its p-value
    # is the naive chi2(1) one, not the 50:50 mixture.
    ranova = {
      r <- lmerTest::ranova(m)
      list(LRT = r$LRT[2], Df = r$Df[2], p_value = r[["Pr(>Chisq)"]][2])
    },
    n_obs = nrow(d),
    n_groups = nlevels(d$g),
    default = list(
      fixef = I(unname(fixef(m_default))),
      s2u = as.data.frame(VarCorr(m_default))$vcov[1],
      s2e = sigma(m_default)^2,
      logLik = as.numeric(logLik(m_default)),
      feval = m_default@optinfo$feval
    )
  )
}

out <- list(
  meta = list(
    R = R.version.string,
    lme4 = as.character(packageVersion("lme4")),
    lmerTest = as.character(packageVersion("lmerTest"))
  ),
  fits = list(),
  anova = list()
)

for (i in seq_len(nrow(models))) {
  d <- read_data(models$data[i])
  for (reml in c(TRUE, FALSE)) {
    key <- paste(models$data[i], models$model[i], if (reml) "reml" else "ml", sep = "/")
    message("fitting ", key)
    out$fits[[key]] <- fit_one(d, models$terms[i], reml)
  }
}

# lme4's anova() on nested models: REML fits are refitted with ML first.
pisa <- read_data("pisa")
rim0 <- lme4::lmer(y ~ 1 + (1 | g), data = pisa, control = tight)
rim1 <- lme4::lmer(y ~ desk + escs + (1 | g), data = pisa, control = tight)
rim2 <- lme4::lmer(y ~ desk + escs + stratio + (1 | g), data = pisa, control = tight)
a <- anova(rim0, rim1, rim2)
out$anova$pisa <- list(
  models = c("rim0", "rim1", "rim2"),
  npar = unname(a$npar),
  logLik = unname(a$logLik),
  AIC = unname(a$AIC),
  BIC = unname(a$BIC),
  deviance = unname(a$deviance),
  Chisq = unname(a$Chisq),
  Df = unname(a$Df),
  p_value = unname(a[["Pr(>Chisq)"]])
)

# The same comparison on ML fits, without refitting: the numbers must not change.
a_ml <- anova(update(rim0, REML = FALSE), update(rim1, REML = FALSE),
              update(rim2, REML = FALSE), refit = FALSE)
out$anova$pisa_ml <- list(
  models = c("rim0", "rim1", "rim2"),
  logLik = unname(a_ml$logLik),
  Chisq = unname(a_ml$Chisq),
  p_value = unname(a_ml[["Pr(>Chisq)"]])
)

# lmerTest differentiates numerically in the user's units; on offset_scale (x1 has
# mean 1000 and sd 1, so X is ill-conditioned) that costs its df ~1e-4 relative.  The
# slopes' df are invariant to centering the columns, and on centered columns lmerTest
# agrees with an analytic Hessian to ~1e-7: the sharper reference for the slopes.
os <- read_data("offset_scale")
os$x1c <- os$x1 - mean(os$x1)
os$x2c <- os$x2 - mean(os$x2)
out$satterthwaite_centered <- list()
for (reml in c(TRUE, FALSE)) {
  m <- lmerTest::lmer(y ~ x1c + x2c + (1 | g), data = os, REML = reml, control = tight)
  key <- paste0("offset_scale/full/", if (reml) "reml" else "ml")
  out$satterthwaite_centered[[key]] <- list(
    terms = I(c("x1", "x2")),
    df = I(unname(summary(m)$coefficients[-1, "df"]))
  )
}

write_json(out, file.path(here, "lme4_reference.json"), auto_unbox = TRUE, digits = NA,
           pretty = TRUE, na = "null")
message("wrote ", file.path(here, "lme4_reference.json"))
