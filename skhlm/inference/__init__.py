"""Inference on a fit result: covariance, Satterthwaite df and predictive variances
(vcov), profile-likelihood intervals (profile), likelihood-ratio tests (compare),
and the scaled residuals of the summary (residuals)."""
