# Reference fits of lme4 formulas with factors for skhlm.lmer's tests: lme4 1.1-31 and
# lmerTest on R 4.2.
#
# Run from the repository root, after python tests/data/formula/make_formula_data.py:
#     Rscript tests/data/formula/fit_formula.R
# Writes tests/data/formula/lme4_formula.json.  The tests read it (the formulas too:
# Python fits the very strings R fitted) and never need R.
#
# The optimizer's tolerances are those of tests/data/slopes/fit_slopes.R.

suppressPackageStartupMessages({
  library(lme4)
  library(lmerTest)
  library(jsonlite)
})

here <- "tests/data/formula"

tight <- lmerControl(
  optimizer = "nloptwrap",
  optCtrl = list(xtol_abs = 1e-14, ftol_abs = 1e-15, xtol_rel = 0, ftol_rel = 0, maxeval = 1e5),
  check.conv.singular = "ignore"
)

cake <- read.csv(file.path(here, "cake.csv"), stringsAsFactors = TRUE)
# The CSV is lme4's cake, with temperature unordered: treatment contrasts, whose
# columns lme4 names temperature185, ... (lme4's own cake has an ordered factor,
# which R codes by polynomial contrasts).
stopifnot(all(cake$angle == lme4::cake$angle), all(cake$temp == lme4::cake$temp))
cake$temperature <- factor(cake$temperature)
cake$replicate <- factor(cake$replicate)
sleep <- read.csv(file.path(here, "sleepstudy_phase.csv"), stringsAsFactors = TRUE)
stopifnot(all(sleep$Reaction == lme4::sleepstudy$Reaction))

# (key, data, formula)
models <- list(
  list("cake/interaction", "cake", "angle ~ recipe * temperature + (1 | replicate)"),
  list("cake/log_temp", "cake", "angle ~ recipe + log(temp) + (1 | replicate)"),
  list("sleepstudy_phase/phase_slope", "sleep", "Reaction ~ Days + phase + (Days | Subject)")
)

fit_one <- function(d, formula, reml) {
  f <- as.formula(formula)
  m <- lmerTest::lmer(f, data = d, REML = reml, control = tight)
  coefs <- summary(m)$coefficients  # lmerTest: Satterthwaite df and p-values
  vc <- VarCorr(m)
  blups <- as.matrix(ranef(m)[[1]])
  list(
    formula = formula,
    fixef = I(unname(fixef(m))),
    fixef_names = I(names(fixef(m))),
    vcov = unname(as.matrix(vcov(m))),
    std_error = I(unname(coefs[, "Std. Error"])),
    df = I(unname(coefs[, "df"])),
    sigma = unname(as.matrix(vc[[1]])),
    random_names = I(colnames(as.matrix(vc[[1]]))),
    s2e = sigma(m)^2,
    theta = I(unname(getME(m, "theta"))),
    logLik = as.numeric(logLik(m)),
    AIC = AIC(m),
    BIC = BIC(m),
    criterion = if (reml) REMLcrit(m) else deviance(m),
    isSingular = isSingular(m),
    ranef = unname(blups),
    levels = I(rownames(blups)),
    n_obs = nrow(d)
  )
}

out <- list(
  meta = list(
    R = R.version.string,
    lme4 = as.character(packageVersion("lme4")),
    lmerTest = as.character(packageVersion("lmerTest"))
  ),
  fits = list()
)
for (spec in models) {
  d <- if (spec[[2]] == "cake") cake else sleep
  for (reml in c(TRUE, FALSE)) {
    key <- paste(spec[[1]], if (reml) "reml" else "ml", sep = "/")
    message("fitting ", key)
    out$fits[[key]] <- fit_one(d, spec[[3]], reml)
  }
}

write_json(out, file.path(here, "lme4_formula.json"), digits = NA, auto_unbox = TRUE, pretty = TRUE)
