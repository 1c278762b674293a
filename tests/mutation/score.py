"""Mutation score by module, from mutmut's results and our list of equivalent mutants.

Run from the repository root after ``mutmut run`` (CONTRIBUTING.md):

    python tests/mutation/score.py

The score of a module is caught / (mutants - equivalent), where a mutant is caught
when the tests fail on it (mutmut's killed), time out or crash (segfault); one the
tests pass on slowly (suspicious) counts as not caught.  A mutant listed in
``equivalent.md`` (its name in backticks at the start of a table row) is left out of
the denominator; one listed there that mutmut reports killed is flagged, since the
list is then stale.
"""

import re
import subprocess
import sys
from collections import Counter, defaultdict
from pathlib import Path

HERE = Path(__file__).parent
CAUGHT = {"killed", "timeout", "segfault"}


def results():
    out = subprocess.run(
        [sys.executable, "-m", "mutmut", "results", "--all", "true"],
        capture_output=True, text=True, check=True,
    ).stdout
    status = {}
    for line in out.splitlines():
        match = re.match(r"\s*(skhlm\.\S+): (.+)$", line)
        if match:
            status[match.group(1)] = match.group(2).strip()
    return status


def equivalent():
    """{name: kind} of the mutants listed in equivalent.md."""
    text = (HERE / "equivalent.md").read_text()
    return dict(re.findall(r"^\|\s*`(skhlm\.[^`]+)`\s*\|\s*([^|]+?)\s*\|", text, flags=re.MULTILINE))


def main():
    status, same = results(), equivalent()
    by_module = defaultdict(Counter)
    for name, state in status.items():
        module = re.match(r"skhlm\.(.+?)\.x[_ǁ]", name).group(1)  # e.g. "engine.em"
        by_module[module][state] += 1
        by_module[module]["caught"] += state in CAUGHT
        if name in same:
            by_module[module]["equivalent"] += 1
            by_module[module]["strict"] += same[name] == "same numbers"
            if state in CAUGHT:
                print(f"stale: {name} is listed as equivalent but was killed")
    unknown = sorted(same - status.keys())
    if unknown:
        print(f"stale: {len(unknown)} listed equivalent mutant(s) no longer exist: {unknown[:5]} ...")
    print(f"{'module':<22} {'mutants':>7} {'caught':>7} {'survived':>8} {'equiv.':>6} {'other':>5} {'score':>6}"
          f"  {'strict':>6}  (strict: only 'same numbers' mutants left out)")
    total = Counter()
    for module in sorted(by_module):
        c = by_module[module]
        # Mutants not checked yet (a run stopped early) are left out of the score.
        n = sum(v for k, v in c.items() if k not in ("equivalent", "caught", "strict", "not checked"))
        other = n - c["caught"] - c["survived"]
        score = c["caught"] / (n - c["equivalent"]) if n > c["equivalent"] else float("nan")
        strict = c["caught"] / (n - c["strict"]) if n > c["strict"] else float("nan")
        print(f"{module:<22} {n:>7} {c['caught']:>7} {c['survived']:>8} {c['equivalent']:>6} {other:>5} {score:>6.1%}  {strict:>6.1%}"
              + (f"  ({c['not checked']} not checked)" if c["not checked"] else ""))
        total.update(c)
        total["n"] += n
    if total["not checked"]:
        print(f"not checked: {total['not checked']} mutants (left out of the scores)")
    score = total["caught"] / (total["n"] - total["equivalent"])
    strict = total["caught"] / (total["n"] - total["strict"])
    print(f"{'all':<22} {total['n']:>7} {total['caught']:>7} {total['survived']:>8} {total['equivalent']:>6} "
          f"{total['n'] - total['caught'] - total['survived']:>5} {score:>6.1%}  {strict:>6.1%}")


if __name__ == "__main__":
    main()
