# Reference fits with precision weights for skhlm's tests: lme4 1.1-31 and lmerTest on R 4.2.
#
# Run from the repository root, after python tests/data/make_weights_data.py:
#     Rscript tests/data/weights/fit_weights.R
# Writes tests/data/weights/lme4_weights.json.  The test suite reads it and never needs R.
#
# lme4's weights= are precision weights: Var(e_i) = s2e / w_i.  Every model is fitted
# with tight optimizer tolerances (the same lmerControl as tests/data/slopes/fit_slopes.R),
# REML and ML, weights = w, and once more with lme4's defaults.  Keys are
# "data/model/reml" and "data/model/ml"; a random-intercept fit also has s2u.  Warnings
# and errors (e.g. for zero weights) are recorded in "messages"; a fit that fails has
# only "error" and "messages".  jsonlite writes infinite values as the strings "Inf"
# and "-Inf" (lme4 1.1-31 accepts zero weights, and its log-likelihood is then -Inf,
# as it adds sum(log(w)) / 2; see the zero_weight fits).

suppressPackageStartupMessages({
  library(lme4)
  library(lmerTest)
  library(jsonlite)
})

here <- "tests/data/weights"
models <- read.csv(file.path(here, "models.csv"), stringsAsFactors = FALSE)
models$slopes[is.na(models$slopes)] <- ""

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
  if (covariance == "intercept") return(as.formula(paste("y ~", terms, "+ (1 | g)")))
  bar <- if (covariance == "diagonal") "||" else "|"
  as.formula(paste("y ~", terms, "+ (1 +", gsub(" ", " + ", slopes), bar, "g)"))
}

# Evaluate expr, collecting warnings and messages; an error is returned as a string.
capture <- function(expr) {
  msgs <- character(0)
  value <- withCallingHandlers(
    tryCatch(expr, error = function(e) structure(conditionMessage(e), class = "fit_error")),
    warning = function(w) {
      msgs <<- c(msgs, paste("warning:", conditionMessage(w)))
      invokeRestart("muffleWarning")
    },
    message = function(m) {
      msgs <<- c(msgs, paste("message:", trimws(conditionMessage(m))))
      invokeRestart("muffleMessage")
    }
  )
  list(value = value, messages = msgs)
}

fit_one <- function(d, terms, slopes, covariance, reml) {
  f <- formula_of(terms, slopes, covariance)
  t0 <- proc.time()[["elapsed"]]
  fit <- capture(lmerTest::lmer(f, data = d, REML = reml, weights = w, control = tight))
  elapsed <- proc.time()[["elapsed"]] - t0
  m <- fit$value
  if (inherits(m, "fit_error")) {
    return(list(formula = paste(deparse(f), collapse = ""), error = unclass(m),
                messages = I(c(fit$messages, paste("error:", unclass(m))))))
  }
  messages <- c(fit$messages, as.character(unlist(m@optinfo$conv$lme4$messages)))
  default <- capture({
    dt <- system.time(md <- lme4::lmer(f, data = d, REML = reml, weights = w))[["elapsed"]]
    list(logLik = as.numeric(logLik(md)), seconds = dt, fixef = I(unname(fixef(md))),
         messages = I(as.character(unlist(md@optinfo$conv$lme4$messages))))
  })$value
  re <- ranef(m, condVar = TRUE)
  blups <- do.call(cbind, lapply(re, as.matrix))
  cond <- unlist(lapply(re, function(r) {
    v <- attr(r, "postVar")
    if (is.list(v)) v else list(v)
  }), recursive = FALSE)
  q <- ncol(blups)
  G <- nrow(blups)
  condvar <- array(0, c(q, q, G))
  k <- 0
  for (v in cond) {
    wd <- dim(v)[1]
    condvar[(k + 1):(k + wd), (k + 1):(k + wd), ] <- v
    k <- k + wd
  }
  vc <- VarCorr(m)
  sigma_b <- as.matrix(Matrix::bdiag(lapply(vc, function(v) as.matrix(v))))
  sat <- capture(summary(m)$coefficients)  # lmerTest: Satterthwaite df and p-values
  coefs <- sat$value
  messages <- c(messages, sat$messages)
  out <- list(
    formula = paste(deparse(f), collapse = ""),
    fixef = I(unname(fixef(m))),
    fixef_names = I(names(fixef(m))),
    vcov = unname(as.matrix(vcov(m))),
    sigma = unname(sigma_b),
    s2u = if (covariance == "intercept") sigma_b[1, 1] else NULL,
    s2e = sigma(m)^2,
    theta = I(unname(getME(m, "theta"))),
    logLik = as.numeric(logLik(m)),
    AIC = AIC(m),
    BIC = BIC(m),
    criterion = if (reml) REMLcrit(m) else deviance(m),
    isSingular = isSingular(m),
    ranef = unname(blups),
    # condVar as (G, q, q)
    condVar = lapply(seq_len(G), function(j) unname(matrix(condvar[, , j], q, q))),
    levels = I(rownames(blups)),
    satterthwaite = if (inherits(coefs, "fit_error")) NULL else list(
      std_error = I(unname(coefs[, "Std. Error"])),
      df = I(unname(coefs[, "df"])),
      t_value = I(unname(coefs[, "t value"])),
      p_value = I(unname(coefs[, "Pr(>|t|)"]))
    ),
    confint_profile = if (!isSingular(m)) profile_ci(m) else NULL,
    # sum(log(w)) over the rows with w > 0 (for checking how logLik treats the weights)
    sum_log_w = sum(log(d$w[d$w > 0])),
    n_obs = nrow(d),
    n_groups = G,
    seconds = elapsed,
    messages = I(messages),
    default = if (inherits(default, "fit_error")) list(error = unclass(default)) else default
  )
  out
}

out <- list(
  meta = list(
    R = R.version.string,
    lme4 = as.character(packageVersion("lme4")),
    lmerTest = as.character(packageVersion("lmerTest"))
  ),
  fits = list()
)

for (i in seq_len(nrow(models))) {
  d <- read_data(models$data[i])
  for (reml in c(TRUE, FALSE)) {
    key <- paste(models$data[i], models$model[i], if (reml) "reml" else "ml", sep = "/")
    message("fitting ", key)
    out$fits[[key]] <- fit_one(d, models$terms[i], models$slopes[i], models$covariance[i], reml)
  }
}

write_json(out, file.path(here, "lme4_weights.json"), digits = NA, auto_unbox = TRUE, pretty = TRUE)
