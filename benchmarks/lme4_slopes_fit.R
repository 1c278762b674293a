# lme4's fit of y ~ x0 + ... + x9 + (1 + x0 | g) on the binary data that
# benchmarks/slopes.py writes (DIR/X.bin, y.bin, g.bin, dims.txt); prints one JSON line.
suppressPackageStartupMessages({ library(lme4); library(jsonlite) })
dir <- commandArgs(trailingOnly = TRUE)[1]
dims <- scan(file.path(dir, "dims.txt"), quiet = TRUE)
n <- dims[1]; p <- dims[2]
X <- matrix(readBin(file.path(dir, "X.bin"), "double", n * p), nrow = n, byrow = TRUE)
d <- data.frame(X)
names(d) <- paste0("x", seq_len(p) - 1)
d$y <- readBin(file.path(dir, "y.bin"), "double", n)
d$g <- factor(readBin(file.path(dir, "g.bin"), "integer", n))
f <- as.formula(paste("y ~", paste(names(d)[1:p], collapse = " + "), "+ (1 + x0 | g)"))
warm <- droplevels(d[d$g %in% levels(d$g)[1:50], ])
invisible(lmer(y ~ x0 + (1 + x0 | g), data = warm))  # warm-up, on 50 groups
seconds <- system.time(m <- lmer(f, data = d))[["elapsed"]]
vc <- VarCorr(m)$g
cat(toJSON(list(seconds = seconds, sigma = unname(as.matrix(vc)), s2e = sigma(m)^2,
                coef_x0 = unname(fixef(m)["x0"]), logLik = as.numeric(logLik(m))),
           auto_unbox = TRUE, digits = NA), "\n")
