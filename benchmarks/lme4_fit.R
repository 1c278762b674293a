# Fit lmer(y ~ x1 + ... + xp + (1 | g), REML = TRUE) to one benchmark data set and print
# one JSON line: the time of the lmer() call alone, peak memory, and the estimates.
#
# Usage: Rscript lme4_fit.R DATA_DIR
# DATA_DIR holds meta.txt ("n p"), X.bin (n x p float64, column-major), y.bin (n float64)
# and g.bin (n int32 group labels), written once per size by run_benchmark.py.
# Needs only base R and lme4 (no jsonlite).

suppressPackageStartupMessages(library(lme4))

status_mb <- function(field) {
  status <- readLines("/proc/self/status")
  as.numeric(gsub("[^0-9]", "", status[startsWith(status, paste0(field, ":"))])) / 1024
}

# As peers.py: reset the peak resident set size (VmHWM) to the current one just before
# the fit, so that the peak after it is the fit's own.
reset_peak_rss <- function() {
  ok <- tryCatch({
    writeLines("5", "/proc/self/clear_refs")
    TRUE
  }, error = function(e) FALSE, warning = function(w) FALSE)
  list(rss = if (ok) status_mb("VmRSS") else status_mb("VmHWM"), reset = ok)
}

json_num <- function(x) paste0("[", paste(sprintf("%.17g", x), collapse = ","), "]")
json_str <- function(x) paste0('"', gsub('"', "'", gsub("\\\\", "/", x)), '"')

args <- commandArgs(trailingOnly = TRUE)
data_dir <- args[1]

# Warm-up on a tiny data set, so that lazy loading inside lme4 is not timed.
set.seed(1)
warm <- data.frame(y = rnorm(200), x = rnorm(200), g = factor(rep(1:20, 10)))
invisible(suppressMessages(lmer(y ~ x + (1 | g), data = warm, REML = TRUE)))

meta <- scan(file.path(data_dir, "meta.txt"), quiet = TRUE)
n <- meta[1]
p <- meta[2]
X <- matrix(readBin(file.path(data_dir, "X.bin"), "double", n * p, size = 8), n, p)
colnames(X) <- paste0("x", seq_len(p))
y <- readBin(file.path(data_dir, "y.bin"), "double", n, size = 8)
g <- readBin(file.path(data_dir, "g.bin"), "integer", n, size = 4)
d <- data.frame(y = y, X, g = factor(g))
rm(X, y, g)
invisible(gc())
formula <- as.formula(paste("y ~", paste(paste0("x", seq_len(p)), collapse = " + "), "+ (1 | g)"))
loaded <- reset_peak_rss()

messages <- character(0)
elapsed <- system.time(
  model <- withCallingHandlers(
    lmer(formula, data = d, REML = TRUE),
    warning = function(w) {
      messages <<- c(messages, conditionMessage(w))
      invokeRestart("muffleWarning")
    }
  )
)[["elapsed"]]
rss_peak <- status_mb("VmHWM")

vc <- as.data.frame(VarCorr(model))
beta <- unname(fixef(model))
conv <- model@optinfo$conv$lme4$messages
cat(paste0(
  '{"time": ', sprintf("%.6f", elapsed),
  ', "rss_loaded_mb": ', sprintf("%.1f", loaded$rss),
  ', "rss_peak_mb": ', sprintf("%.1f", rss_peak),
  ', "intercept": ', sprintf("%.17g", beta[1]),
  ', "coef": ', json_num(beta[-1]),
  ', "s2u": ', sprintf("%.17g", vc$vcov[vc$grp == "g"]),
  ', "s2e": ', sprintf("%.17g", vc$vcov[vc$grp == "Residual"]),
  ', "loglik": ', sprintf("%.17g", as.numeric(logLik(model))),
  ', "memory_method": ', json_str(if (loaded$reset) "VmHWM reset before the fit" else "VmHWM"),
  ', "version": ', json_str(paste("lme4", packageVersion("lme4"), "/", R.version.string)),
  ', "messages": [', paste(vapply(c(messages, conv), json_str, ""), collapse = ","), "]",
  "}\n"
))
