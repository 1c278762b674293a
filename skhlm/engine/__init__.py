"""The fit on sufficient statistics: the criterion from named pieces (criterion),
the E- and M-steps (steps), the one EM driver (em), and the fitted-result contract
every function on a fitted model takes (result)."""
