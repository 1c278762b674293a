"""
Random intercepts, then random slopes, on repeated measures (sleepstudy's design)
=================================================================================

Each subject's reaction time is measured on days 0 to 9.  The random intercept model
gives every subject its own level but one common trend; lme4's ``(1 + Days |
Subject)`` gives every subject its own trend too.  The example fits both, tests the
random slope (a likelihood-ratio test whose null puts the slope's variance on the
boundary: the 50:50 mixture of chi2(1) and chi2(2)), and draws each subject's two
fitted lines over its data.

Run: ``python examples/plot_random_slopes.py [output directory]`` (needs skhlm[plot])
"""

import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from skhlm import LinearMixedRegressor, RandomInterceptRegressor, compare  # noqa: E402
from skhlm.datasets import make_longitudinal  # noqa: E402


def main(out_dir):
    X, y, subject = make_longitudinal(n_subjects=18, random_state=1)
    intercepts = RandomInterceptRegressor().fit(X, y, groups=subject)
    slopes = LinearMixedRegressor(random_slopes=["time"]).fit(X, y, groups=subject)
    print(slopes.summary())
    table = compare(intercepts, slopes, refit=True, names=["(1 | subject)", "(1 + time | subject)"])
    print()
    print(table[["npar", "logLik", "Chisq", "Df", "p_value", "p_boundary"]].to_string(float_format="%.4g"))
    row = table.iloc[1]
    print(f"\nLRT of the random slope: chi2 = {row['Chisq']:.2f} on {row['Df']:.0f} df, "
          f"p = {row['p_boundary']:.2g} (50:50 mixture of chi2(1) and chi2(2); naive chi2(2): "
          f"{row['p_value']:.2g})")
    sd = np.sqrt(np.diag(slopes.variance_components_["group"]))
    print(f"Subjects' slopes vary with SD {sd[1]:.1f} around the mean slope {slopes.coef_[0]:.1f}")

    fig, axes = plt.subplots(3, 6, figsize=(14, 7), sharex=True, sharey=True)
    days = np.arange(10.0)
    for ax, label in zip(axes.ravel(), slopes.groups_):
        rows = subject.to_numpy() == label
        ax.scatter(X["time"][rows], y[rows], s=10, color="0.5")
        frame = X.iloc[:10].assign(time=days)
        ax.plot(days, intercepts.predict(frame, groups=[label] * 10), color="C1", lw=1.2,
                label="random intercept")
        ax.plot(days, slopes.predict(frame, groups=[label] * 10), color="C0", lw=1.5,
                label="random intercept and slope")
        ax.set_title(f"subject {label}", fontsize="small")
    axes[0, 0].legend(fontsize="x-small", frameon=False, loc="upper left")
    fig.supxlabel("days")
    fig.supylabel("reaction time (ms)")
    fig.tight_layout()
    path = Path(out_dir) / "random_slopes.png"
    fig.savefig(path, dpi=90)
    print(f"Saved {path}")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else Path(__file__).parent / "images")
