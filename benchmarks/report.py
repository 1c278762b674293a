"""Output of the benchmark: the table on stdout, results.json, .csv and .md, the plot."""

import csv
import json
import sys
from pathlib import Path

import numpy as np
from peers import MERF_ITERATIONS

SYSTEMS = ("skhlm", "linreg", "statsmodels", "lme4", "merf")
LABELS = {
    "skhlm": "skhlm RandomInterceptRegressor (REML)",
    "linreg": "sklearn LinearRegression (OLS, the floor)",
    "statsmodels": "statsmodels MixedLM (REML)",
    "lme4": "R lme4 lmer (REML)",
    "merf": f"MERF, LinearRegression fixed effects ({MERF_ITERATIONS} EM iterations)",
}


def sci(x):
    """1e4, not 1e+04."""
    return f"{x:.0e}".replace("e+0", "e").replace("e+", "e")


def fmt(value, spec):
    return "" if value is None else format(value, spec)


def print_config(result):
    print(f"\n{result['name']}: {result['n']:,} rows, {result['p']} features, {result['groups_seen']:,} groups "
          f"(X: {result['n'] * result['p'] * 8 / 2**20:,.0f} MB)")
    head = (
        f"{'system':12s} {'time s':>9s} {'x skhlm':>8s} {'wall s':>7s} {'mem MB':>8s} {'mem/X':>6s} "
        f"{'intercept':>10s} {'coef[0]':>9s} {'coef[-1]':>9s} {'s2u':>8s} {'s2e':>8s} {'logLik':>14s} "
        f"{'max|dbeta|':>10s} {'rel ds2u':>9s} {'rel ds2e':>9s} {'dlogLik':>9s}"
    )
    print(head)
    print("-" * len(head))
    for r in result["systems"]:
        if "time" not in r:
            print(f"{r['system']:12s} {r['status']}: {r.get('note', '')}")
            continue
        coef = r.get("coef") or [None]
        print(
            f"{r['system']:12s} {r['time']:9.3f} {fmt(r.get('ratio'), '8.2f'):>8s} {r['wall']:7.1f} {r['mem_mb']:8.1f} "
            f"{r['mem_over_X']:6.2f} {fmt(r.get('intercept'), '10.5f')} {fmt(coef[0], '9.5f')} "
            f"{fmt(coef[-1], '9.5f')} {fmt(r.get('s2u'), '8.5f'):>8s} {fmt(r.get('s2e'), '8.5f'):>8s} "
            f"{fmt(r.get('loglik'), '14.3f'):>14s} {fmt(r.get('max_abs_dbeta'), '10.1e'):>10s} "
            f"{fmt(r.get('rel_ds2u'), '9.1e'):>9s} {fmt(r.get('rel_ds2e'), '9.1e'):>9s} "
            f"{fmt(r.get('dloglik'), '9.1e'):>9s}"
        )
        for m in r.get("messages", []):
            print(f"{'':12s} ! {m[:150]}")
    sys.stdout.flush()


CSV_FIELDS = [
    "kind", "n", "p", "groups", "groups_seen", "system", "status", "reps", "time", "time_min",
    "ratio", "wall", "mem_mb", "mem_over_X", "intercept", "coef0", "s2u", "s2e", "loglik",
    "max_abs_dbeta", "rel_ds2u", "rel_ds2e", "dloglik", "n_iter", "converged", "version", "note",
]


def save(results, info, args):
    args.out.mkdir(parents=True, exist_ok=True)
    settings = {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()}
    with open(args.out / "results.json", "w") as f:
        json.dump({"machine": info, "settings": settings, "results": results}, f, indent=1)
    with open(args.out / "results.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, CSV_FIELDS, extrasaction="ignore")
        writer.writeheader()
        for result in results:
            for r in result["systems"]:
                row = {k: result[k] for k in ("kind", "n", "p", "groups", "groups_seen")}
                row.update({k: v for k, v in r.items() if k in CSV_FIELDS})
                row["coef0"] = (r.get("coef") or [None])[0]
                writer.writerow(row)
    (args.out / "results.md").write_text(markdown(results, info, args))


def markdown(results, info, args):
    """Tables for the README: times and ratios, memory, agreement, the group sweep."""
    systems = [s for s in SYSTEMS if any(r["system"] == s for res in results for r in res["systems"])]
    versions = ", ".join(f"{k} {v}" for k, v in info["versions"].items())
    out = [
        f"Machine: {info.get('cpu')}, {info['cpu_count']} cores, {info.get('memory_gib')} GiB RAM "
        f"({info['platform']}); Python {info['python']}, {versions}; {info.get('r_version', 'R not used')}. "
        f"Load average {info['loadavg_start'][0]:.1f} at the start (other work on the machine). "
        f"Median of {args.reps} fits, each in its own process, interleaved; time cap {args.cap:.0f} s per fit; "
        f"BLAS threads: {getattr(args, 'blas_threads', None) or 'library defaults'}.",
        "",
        "Fit time in seconds, and in parentheses as a multiple of skhlm's time:",
        "",
        "| n | p | groups | " + " | ".join(systems) + " |",
        "|---:|---:|---:|" + "---:|" * len(systems),
    ]
    notes, memory, agreement, sweep = [], [], [], []
    for res in results:
        by = {r["system"]: r for r in res["systems"]}
        key = f"| {sci(res['n'])} | {res['p']} | {sci(res['groups'])} |"
        if res["kind"] == "groups":
            sk, lr = by.get("skhlm", {}), by.get("linreg", {})
            if "time" in sk:
                sweep.append(f"{key} {sk['time']:.3g} | {fmt(lr.get('time'), '.3g')} | {sk['mem_over_X']:.2f} |")
            continue
        cells, mems = [], []
        for s in systems:
            r = by.get(s)
            if r is None:
                cells.append("")
                mems.append("")
            elif "time" in r:
                ratio = "" if s == "skhlm" else f" ({r['ratio']:.3g}x)" if "ratio" in r else ""
                cells.append(f"{r['time']:.3g}{ratio}")
                mems.append(f"{r['mem_mb']:.0f} ({r['mem_over_X']:.2f})")
            else:
                cells.append("-")
                mems.append("-")
                notes.append(f"{res['name']}, {s}: {r.get('note') or r['status']}")
            if r is not None and "max_abs_dbeta" in r and s != "linreg":
                agreement.append(
                    f"{key} {s} | {r['max_abs_dbeta']:.1e} | {fmt(r.get('rel_ds2u'), '.1e')} | "
                    f"{fmt(r.get('rel_ds2e'), '.1e')} | {fmt(r.get('dloglik'), '.1e')} |"
                )
        out.append(f"{key} " + " | ".join(cells) + " |")
        memory.append(f"{key} " + " | ".join(mems) + " |")
    out += [
        "",
        "Peak memory of the fit beyond its input, MB (and as a multiple of the size of X):",
        "",
        "| n | p | groups | " + " | ".join(systems) + " |",
        "|---:|---:|---:|" + "---:|" * len(systems),
    ] + memory
    out += [
        "",
        "Estimates against skhlm's: the largest absolute difference over the fixed effects, the "
        "relative differences of s2u and s2e, and the difference of the REML log-likelihood "
        "(MERF runs ML-type EM for a fixed 20 iterations and reports no likelihood):",
        "",
        "| n | p | groups | system | max abs d beta | rel d s2u | rel d s2e | d logLik |",
        "|---:|---:|---:|---|---:|---:|---:|---:|",
    ] + agreement
    if sweep:
        out += [
            "",
            "Group count at n = 1e6, p = 10: skhlm's fit time (s), OLS's on the same data, and "
            "skhlm's memory / X:",
            "",
            "| n | p | groups | skhlm | LinearRegression | skhlm memory / X |",
            "|---:|---:|---:|---:|---:|---:|",
        ] + sweep
    if notes:
        out += ["", "Not run:", ""] + [f"- {n}" for n in notes]
    return "\n".join(out) + "\n"


def plot(results, path):
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("--plot needs matplotlib: pip install '.[bench]'", file=sys.stderr)
        return
    fig, axes = plt.subplots(1, 2, figsize=(11, 5.5), sharey=True)
    for ax, divisor in zip(axes, (100, 10)):
        series = [r for r in results if r["kind"] == "main" and r["n"] // r["groups"] == divisor]
        for system in SYSTEMS:
            points = [(r["n"], s["time"]) for r in series for s in r["systems"] if s["system"] == system and "time" in s]
            if points:
                xs, ts = zip(*sorted(points))
                ax.plot(xs, ts, "o-", label=LABELS[system], lw=2.5 if system == "skhlm" else 1.2)
        ref = [(r["n"], s["time"]) for r in series for s in r["systems"] if s["system"] == "skhlm" and "time" in s]
        if ref:
            n0, t0 = min(ref)
            ns = np.array(sorted({r["n"] for r in series}), dtype=float)
            ax.plot(ns, t0 * ns / n0, "k:", lw=1, label="linear in n (through skhlm's first point)")
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("rows n (p = 10)")
        ax.set_title(f"groups = n / {divisor}")
        ax.grid(True, which="both", alpha=0.3)
    axes[0].set_ylabel("fit time, seconds (median)")
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=3, fontsize=8, frameon=False)
    fig.tight_layout(rect=(0, 0.1, 1, 1))
    fig.savefig(path, dpi=120)
    print(f"wrote {path}")
