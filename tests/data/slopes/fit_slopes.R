# Reference fits with random slopes for skhlm's tests: lme4 1.1-31 and lmerTest on R 4.2.
#
# Run from the repository root, after python tests/data/make_slopes_data.py:
#     Rscript tests/data/slopes/fit_slopes.R
# Writes tests/data/slopes/sleepstudy.csv (lme4's data) and
# tests/data/slopes/lme4_slopes.json.  The test suite reads them and never needs R.
#
# Every model is fitted with tight optimizer tolerances (lme4's defaults stop early on
# near-singular fits), REML and ML, and once more with lme4's defaults (its time and
# log-likelihood, for the closing notes).

suppressPackageStartupMessages({
  library(lme4)
  library(lmerTest)
  library(jsonlite)
})

here <- "tests/data/slopes"
models <- read.csv(file.path(here, "models.csv"), stringsAsFactors = FALSE)

sleep <- lme4::sleepstudy
sleep <- data.frame(y = sleep$Reaction, g = sprintf("s%s", as.character(sleep$Subject)), Days = sleep$Days)
write.csv(sleep, file.path(here, "sleepstudy.csv"), row.names = FALSE)

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
    suppressWarnings(confint(m, method = "profile", oldNames = FALSE, level = 0.95)),
    error = function(e) NULL
  )
  if (is.null(ci)) return(NULL)
  out <- list()
  for (r in rownames(ci)) out[[r]] <- unname(ci[r, ])
  out
}

formula_of <- function(terms, slopes, covariance) {
  bar <- if (covariance == "diagonal") "||" else "|"
  as.formula(paste("y ~", terms, "+ (1 +", gsub(" ", " + ", slopes), bar, "g)"))
}

fit_one <- function(d, terms, slopes, covariance, reml) {
  f <- formula_of(terms, slopes, covariance)
  elapsed <- system.time(m <- lmerTest::lmer(f, data = d, REML = reml, control = tight))[["elapsed"]]
  default_time <- system.time(m_default <- lme4::lmer(f, data = d, REML = reml))[["elapsed"]]
  re <- ranef(m, condVar = TRUE)
  # (1 + x || g) gives one term per effect; bind them into one (G, q) table.
  blups <- do.call(cbind, lapply(re, as.matrix))
  # One array per term: (1 + x || g) has two terms of one factor, whose postVar is
  # a list of arrays.
  cond <- unlist(lapply(re, function(r) {
    v <- attr(r, "postVar")
    if (is.list(v)) v else list(v)
  }), recursive = FALSE)
  q <- ncol(blups)
  G <- nrow(blups)
  condvar <- array(0, c(q, q, G))
  k <- 0
  for (v in cond) {
    w <- dim(v)[1]
    condvar[(k + 1):(k + w), (k + 1):(k + w), ] <- v
    k <- k + w
  }
  # The covariance of the random effects, (q, q), in the order intercept, slopes.
  vc <- VarCorr(m)
  sigma_b <- as.matrix(Matrix::bdiag(lapply(vc, function(v) as.matrix(v))))
  coefs <- summary(m)$coefficients  # lmerTest: Satterthwaite df and p-values
  list(
    formula = paste(deparse(f), collapse = ""),
    fixef = I(unname(fixef(m))),
    fixef_names = I(names(fixef(m))),
    vcov = unname(as.matrix(vcov(m))),
    sigma = unname(sigma_b),
    s2e = sigma(m)^2,
    theta = I(unname(getME(m, "theta"))),
    logLik = as.numeric(logLik(m)),
    AIC = AIC(m),
    BIC = BIC(m),
    criterion = if (reml) REMLcrit(m) else deviance(m),
    isSingular = isSingular(m),
    ranef = unname(blups),
    # condVar as (G, q, q)
    condVar = lapply(seq_len(G), function(j) unname(condvar[, , j, drop = TRUE])),
    levels = I(rownames(blups)),
    satterthwaite = list(
      std_error = I(unname(coefs[, "Std. Error"])),
      df = I(unname(coefs[, "df"])),
      p_value = I(unname(coefs[, "Pr(>|t|)"]))
    ),
    # Profiles of every sd and correlation: slow for thousands of groups, and at a
    # singular fit lme4's profile fails or is meaningless; those are left out.
    confint_profile = if (nlevels(d$g) <= 200 && !isSingular(m)) profile_ci(m) else NULL,
    n_obs = nrow(d),
    n_groups = G,
    seconds = elapsed,
    default = list(
      logLik = as.numeric(logLik(m_default)),
      seconds = default_time,
      fixef = I(unname(fixef(m_default))),
      messages = I(as.character(unlist(m_default@optinfo$conv$lme4$messages)))
    )
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

# The badly scaled data: lme4 itself stops short of the optimum there (it warns that
# the predictors are on very different scales).  The unstructured model is the same
# model after centering and scaling the columns, where lme4 reaches the optimum: that
# fit, mapped back to the original units, is the reference ("rescaled").
rescaled_fit <- function(d, reml) {
  m1 <- mean(d$x1); s1 <- sd(d$x1); m2 <- mean(d$x2); s2 <- sd(d$x2)
  ds <- transform(d, x1 = (x1 - m1) / s1, x2 = (x2 - m2) / s2)
  m <- lme4::lmer(y ~ x1 + x2 + (1 + x1 | g), data = ds, REML = reml, control = tight)
  # [1, x1s] = [1, x1] %*% Tm: effects on the scaled columns map back by Tm.
  Tm <- matrix(c(1, 0, -m1 / s1, 1 / s1), 2, 2)
  b <- fixef(m)
  fixef_user <- c(b[1] - b[2] * m1 / s1 - b[3] * m2 / s2, b[2] / s1, b[3] / s2)
  S <- as.matrix(VarCorr(m)$g)
  re <- as.matrix(ranef(m)$g)
  list(
    logLik = as.numeric(logLik(m)),
    fixef = I(unname(fixef_user)),
    sigma = unname(Tm %*% S %*% t(Tm)),
    s2e = sigma(m)^2,
    ranef = unname(re %*% t(Tm))
  )
}

for (i in seq_len(nrow(models))) {
  d <- read_data(models$data[i])
  for (reml in c(TRUE, FALSE)) {
    key <- paste(models$data[i], models$model[i], if (reml) "reml" else "ml", sep = "/")
    message("fitting ", key)
    out$fits[[key]] <- fit_one(d, models$terms[i], models$slopes[i], models$covariance[i], reml)
    if (models$data[i] == "scaled") out$fits[[key]]$rescaled <- rescaled_fit(d, reml)
  }
}

write_json(out, file.path(here, "lme4_slopes.json"), digits = NA, auto_unbox = TRUE, pretty = TRUE)
