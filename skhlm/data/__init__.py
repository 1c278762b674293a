"""Data in, statistics out: label coding (groups), the accumulator of sufficient
statistics (accumulator), the statistics the fit reads (stats), and the one map
between the user's units and the standardized problem (units)."""
