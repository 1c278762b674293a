"""Every example runs, within its time budget, and says what it should."""

import ast
import os
import re
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).parents[1] / "examples"


def run(name, *args):
    env = {**os.environ, "MPLBACKEND": "Agg", "PYTHONWARNINGS": "error"}
    start = time.perf_counter()
    done = subprocess.run(
        [sys.executable, str(EXAMPLES / name), *map(str, args)],
        capture_output=True, text=True, env=env, timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert time.perf_counter() - start < 60, f"{name} took over a minute"
    return done.stdout


def number(pattern, text):
    return float(re.search(pattern, text).group(1))


@pytest.mark.parametrize("path", sorted(EXAMPLES.glob("*.py")), ids=lambda path: path.name)
def test_examples_are_gallery_scripts(path):
    """sphinx-gallery's layout: a docstring that opens with an RST title, then
    top-level ``# %%`` cells, each opening with RST text; no main()."""
    source = path.read_text()
    tree = ast.parse(source)
    title, underline = ast.get_docstring(tree).splitlines()[:2]
    assert underline == "=" * len(title)
    lines = source.splitlines()
    cells = [i for i, line in enumerate(lines) if line == "# %%"]
    assert len(cells) >= 2
    assert all(lines[i + 1].startswith("# ") for i in cells)
    assert "main" not in {node.name for node in tree.body if isinstance(node, ast.FunctionDef)}


def test_quickstart():
    out = run("quickstart.py")
    for formula in ("math ~ 1 + (1 | school)", "math ~ desk + escs + (1 | school)",
                    "math ~ desk + escs + stratio + (1 | school)"):
        assert f"Formula: {formula}\n" in out
    assert out.count("REML criterion at convergence") == 3
    assert out.count("Number of obs: 4978, groups:  school, 164") == 3
    assert "4978 students in 164 schools" in out
    icc = number(r"RIM0: ICC = \d+ / \(\d+ \+ \d+\) = ([\d.]+)", out)
    assert 0.15 < icc < 0.25  # the seed's 0.19, up to sampling error
    assert 7 < number(r"scores ([\d.]+) points more", out) < 11  # desk, the seed's 8.77
    # The article's stratio (0.55) is set against the simulated estimate and its SE.
    estimate = number(r"one more student per teacher goes with ([\d.]+) points", out)
    se = number(r"one more student per teacher goes with [\d.]+ points \(SE ([\d.]+)", out)
    distance = number(r"0\.55 lies ([\d.]+) SE from it", out)
    assert distance == pytest.approx(abs(estimate - 0.55) / se, abs=0.06)
    assert "The 'seed' values quoted below are the article's, from the real PISA sample" in out
    chisq = number(r"RIM2\s+6(?:\s+\S+){5}\s+([\d.]+)", out)  # anova: RIM1 vs RIM2
    assert chisq > 0
    # The README shows RIM1's printed summary: it must be the one the example prints.
    readme = (EXAMPLES.parent / "README.md").read_text()
    shown = re.search(r"```text\n(Linear mixed model fit by REML.*?)```", readme, re.S).group(1)
    assert shown in out
    # So does the site's Getting started page, indented in a code-block.
    page = (EXAMPLES.parent / "docs" / "getting_started.rst").read_text()
    block = re.search(r"\.\. code-block:: text\n\n(.*?)\n\n(?=\S)", page, re.S).group(1)
    assert textwrap.dedent(block) + "\n" in out


@pytest.mark.parametrize("name, image", [("plot_caterpillar.py", "caterpillar.png"),
                                         ("plot_pooling.py", "pooling.png")])
def test_plot_examples_write_their_picture(tmp_path, name, image):
    out = run(name, tmp_path)
    path = tmp_path / image
    assert path.stat().st_size > 20_000  # a real figure, not an empty canvas
    assert f"Saved {path}" in out


def test_caterpillar_reports_partial_pooling(tmp_path):
    out = run("plot_caterpillar.py", tmp_path)
    keeps_small = number(r"A school of \d+ students keeps (\d+)%", out)
    keeps_large = number(r"one of \d+ keeps (\d+)%", out)
    assert keeps_small < keeps_large < 100


def test_grid_search_scores_known_schools_above_new_ones():
    out = run("grid_search_groupkfold.py")
    row = re.search(r"random intercept model\s+([-\d.]+)\s+([-\d.]+)", out)
    new, known = float(row.group(1)), float(row.group(2))
    ols = re.search(r"linear regression\s+([-\d.]+)\s+([-\d.]+)", out)
    assert known > new + 0.1
    assert known > float(ols.group(2)) + 0.1
    assert abs(new - float(ols.group(1))) < 0.02  # new schools: x'beta, like OLS


def test_icc_and_design_effect():
    out = run("icc_and_design_effect.py")
    icc = number(r"ICC = s2u / \(s2u \+ s2e\) = ([\d.]+)", out)
    m = number(r"Design effect with m = ([\d.]+) \(average size\)", out)
    deff = number(r"\(average size\): ([\d.]+)", out)
    # The printout rounds ICC to 3 decimals and m to 1: +-0.0005 * 29 + 0.05 * 0.2.
    assert deff == pytest.approx(1 + (m - 1) * icc, abs=0.03)
    ess = number(r"effective sample size (\d+) of 4978", out)
    assert ess == pytest.approx(4978 / deff, abs=2)


def test_mixed_effects_example_beats_boosting_on_seen_groups(tmp_path):
    out = run("plot_mixed_effects.py", tmp_path)
    assert (tmp_path / "mixed_effects.png").stat().st_size > 10_000
    assert f"Saved {tmp_path / 'mixed_effects.png'}" in out
    rmse = {name: (float(seen), float(new)) for name, seen, new in re.findall(
        r"^(boosting alone|boosting \+ group feature|MixedEffectsRegressor)\s+([\d.]+)\s+([\d.]+)$", out, re.M)}
    assert len(rmse) == 3
    assert rmse["MixedEffectsRegressor"][0] < min(rmse["boosting alone"][0], rmse["boosting + group feature"][0])
    assert rmse["MixedEffectsRegressor"][1] < rmse["boosting + group feature"][1]
    s2e = number(r"s2e = ([\d.]+) \(\d+ rounds\)", out)
    assert s2e == pytest.approx(4.0, rel=0.1)


def test_random_slopes_example_tests_the_slope_and_draws_the_lines(tmp_path):
    from scipy import stats

    out = run("plot_random_slopes.py", tmp_path)
    assert (tmp_path / "random_slopes.png").stat().st_size > 20_000
    assert f"Saved {tmp_path / 'random_slopes.png'}" in out
    assert "Formula: y ~ time + (1 + time | subject)" in out
    chisq = number(r"LRT of the random slope: chi2 = ([\d.]+) on 2 df", out)
    p_boundary = number(r"on 2 df, p = ([\d.e+-]+) \(50:50 mixture", out)
    assert p_boundary == pytest.approx(0.5 * stats.chi2.sf(chisq, 1) + 0.5 * stats.chi2.sf(chisq, 2), rel=0.05)
    assert 3 < number(r"slopes vary with SD ([\d.]+)", out) < 10  # the truth: sqrt(35.1) = 5.9


def test_bigger_than_memory():
    out = run("bigger_than_memory.py")
    rows = re.findall(r"^(in memory|partial_fit, chunks of 500|fit_parquet, 4 files|skhlm.dask, 2 workers)\s+(.*)$", out, re.M)
    assert len(rows) == 4
    assert len({values for _, values in rows}) == 1  # the same printed numbers, all four
    assert number(r"from the fit in memory: ([\d.e+-]+)", out) < 1e-8
    assert "a lazy Series of 4 partitions" in out
