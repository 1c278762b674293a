"""lme4's formula, split into what formulaic reads and what skhlm's estimators take.

Pure Python, no formulaic: :func:`parse` splits ``lhs ~ rhs``, takes the one
random-effects term ``( ... | g)`` or ``( ... || g)`` out of the right-hand side and
returns the fixed part (for formulaic) beside the term (for the estimator).
:func:`lme4_name` turns formulaic's column names into lme4's (``sex[T.M]`` ->
``sexM``).
"""

import re
from dataclasses import dataclass

# What lmer can fit, for the error messages.
SUPPORTED = (
    "lmer supports one random-effects term with a random intercept: (1 | g), "
    "(x | g) or (1 + x + z | g) (correlated), (x || g) (uncorrelated), where g is a "
    "column of the data and the slopes x, z are numeric columns that are also fixed "
    "effects"
)
NO_TERM = (
    "lmer needs one random-effects term such as (1 | g); for a model without random "
    "effects use sklearn's LinearRegression"
)
_NAME = re.compile(r"[A-Za-z_.][A-Za-z0-9_.]*|`[^`]+`")
_OPEN, _CLOSE = "([{", ")]}"


@dataclass(frozen=True)
class RandomTerm:
    """One random-effects term: the grouping column, the slopes' columns (the
    random intercept is always there), and whether they are uncorrelated (``||``)."""

    group: str
    slopes: tuple
    diagonal: bool
    text: str  # as written, for messages

    @property
    def covariance(self):
        return "diagonal" if self.diagonal else "unstructured"


@dataclass(frozen=True)
class ParsedFormula:
    """``response ~ fixed + term``: the response and fixed part as formulaic reads
    them, and the random-effects term."""

    response: str
    fixed: str
    term: RandomTerm


def _depths(text):
    """The nesting depth in (), [] and {} before each character; backquoted names
    and quoted strings count as one level deeper (nothing in them is an operator)."""
    depths, depth, quote = [], 0, None
    for ch in text:
        if quote:
            depths.append(depth + 1)
            quote = None if ch == quote else quote
            continue
        depths.append(depth)
        if ch in "`'\"":
            quote = ch
        elif ch in _OPEN:
            depth += 1
        elif ch in _CLOSE:
            depth -= 1
            if depth < 0:
                raise ValueError(f"Unbalanced parentheses in the formula {text!r}.")
    if depth or quote:
        raise ValueError(f"Unbalanced parentheses or quotes in the formula {text!r}.")
    return depths


def split_top(text, separators):
    """The parts of ``text`` between the top-level occurrences of the one-character
    ``separators``, each with the separator before it ("" for the first)."""
    parts, start, sign = [], 0, ""
    for k, (ch, depth) in enumerate(zip(text, _depths(text))):
        if depth == 0 and ch in separators:
            parts.append((sign, text[start:k].strip()))
            start, sign = k + 1, ch
    parts.append((sign, text[start:].strip()))
    return parts


def _unwrap(text):
    """``text`` without parentheses around all of it (any number of pairs)."""
    text = text.strip()
    while text.startswith("(") and text.endswith(")"):
        depths = _depths(text)
        # The opening parenthesis closes at the end only if nothing in between is
        # back at depth 0.
        if any(d == 0 for d in depths[1:-1]):
            break
        text = text[1:-1].strip()
    return text


def _plain_name(text):
    """The column a plain name or a backquoted one names, else None."""
    text = text.strip()
    if not _NAME.fullmatch(text):
        return None
    return text[1:-1] if text.startswith("`") else text


def _bar(text):
    """(left, right, diagonal) of ``left | right`` or ``left || right`` when ``text``
    has a bar at its top level, else None."""
    for k, (ch, depth) in enumerate(zip(text, _depths(text))):
        if depth == 0 and ch == "|":
            diagonal = text[k + 1 : k + 2] == "|"
            return text[:k].strip(), text[k + 2 if diagonal else k + 1 :].strip(), diagonal
    return None


def _random_term(text):
    """The RandomTerm of a bar term's inside, ``left | group`` or ``left || group``."""
    left, right, diagonal = _bar(_unwrap(text))
    written = f"({_unwrap(text)})"
    if "|" in right:
        raise ValueError(f"The random-effects term {written} has more than one bar. {SUPPORTED}.")
    group = _plain_name(right)
    if group is None:
        if "/" in right or ":" in right:
            kind = "an interaction of grouping factors"
            if "/" in right:
                kind = "nested grouping factors (a/b is (1 | a) + (1 | a:b))"
            raise ValueError(
                f"The random-effects term {written} has {kind}, which needs more than one "
                f"grouping factor. {SUPPORTED}. For a:b, make one column of the combined "
                "labels (data['a'].astype(str) + ':' + data['b'].astype(str)) and group by it."
            )
        raise ValueError(
            f"The random-effects term {written} groups by {right!r}, which is not a column "
            f"name. {SUPPORTED}."
        )
    slopes, intercept = [], True
    for sign, part in split_top(left, "+-"):
        if sign == "" and part == "":
            continue  # a leading "-": the sign of the next part
        if part in ("0", "1"):
            if (part == "0") != (sign == "-"):
                intercept = False
            continue
        name = _plain_name(part)
        if sign == "-" or name is None:
            raise ValueError(
                f"The random-effects term {written}: {part!r} is not supported as a random "
                f"slope; a slope must be a plain numeric column of the data that also "
                f"appears in the fixed part. {SUPPORTED}."
            )
        if name in slopes:
            raise ValueError(f"The random-effects term {written} names the slope {name!r} twice.")
        slopes.append(name)
    if not intercept:
        raise ValueError(
            f"The random-effects term {written} has no random intercept, which skhlm's "
            f"estimators always fit. Write (x | g) or (1 + x | g). {SUPPORTED}."
        )
    return RandomTerm(group=group, slopes=tuple(slopes), diagonal=diagonal, text=written)


def _check_python_power(text):
    """formulaic evaluates a call, I(...) or log(...), as Python, where ^ is bitwise
    xor: lme4's I(x^2) would silently be x xor 2."""
    depths = _depths(text)
    for match in re.finditer(r"[A-Za-z_.][A-Za-z0-9_.]*\(", text):
        opening = match.end() - 1
        closing = next(k for k in range(opening + 1, len(text)) if text[k] == ")" and depths[k] == depths[opening] + 1)
        call = text[match.start() : closing + 1]
        if "^" in call:
            raise ValueError(
                f"In the formula, {call} is evaluated as Python (by formulaic), where ^ is "
                f"bitwise xor, not a power. Write {call.replace('^', '**')}."
            )


def parse(formula):
    """Split an lme4 formula into response, fixed part and its one random-effects term.

    Parameters
    ----------
    formula : str
        ``response ~ fixed + (1 + x | g)``, as lme4 writes it.

    Returns
    -------
    ParsedFormula

    Examples
    --------
    >>> p = parse("Reaction ~ Days + (Days | Subject)")
    >>> p.response, p.fixed, p.term.group, p.term.slopes, p.term.covariance
    ('Reaction', 'Days', 'Subject', ('Days',), 'unstructured')
    >>> parse("y ~ (1 | g)").fixed
    '1'
    """
    if not isinstance(formula, str):
        raise TypeError(f"lmer's formula must be a string such as 'y ~ x + (1 | g)', got {type(formula).__name__}.")
    sides = split_top(formula, "~")
    if len(sides) != 2 or not sides[0][1] or not sides[1][1]:
        raise ValueError(f"The formula {formula!r} must be 'response ~ terms', with one '~'.")
    response, rhs = sides[0][1], sides[1][1]
    _check_python_power(formula)
    fixed, terms = [], []
    for sign, part in split_top(rhs, "+-"):
        if sign == "" and part == "":
            continue  # a leading "-": the sign of the next part
        if part.startswith("(") and _bar(_unwrap(part)) is not None and _unwrap(part) != part:
            if sign == "-":
                raise ValueError(f"The random-effects term {part} is subtracted; add it. {SUPPORTED}.")
            terms.append(_random_term(part))
        elif "|" in part:
            raise ValueError(
                f"The term {part!r} of {formula!r} has a bar that is not a random-effects "
                f"term of its own: write it in parentheses and add it, y ~ x + (1 | g). "
                f"{SUPPORTED}."
            )
        else:
            fixed.append((sign, part))
    if not terms:
        raise ValueError(f"{NO_TERM}; the formula {formula!r} has none.")
    if len(terms) > 1:
        written = " + ".join(t.text for t in terms)
        raise ValueError(
            f"The formula {formula!r} has {len(terms)} random-effects terms ({written}); "
            f"more than one (crossed or nested factors, or one factor's effects in "
            f"separate terms) is not supported yet. {SUPPORTED}."
        )
    return ParsedFormula(response=response, fixed=_join(fixed), term=terms[0])


def _join(parts):
    """The fixed part's terms, written back with their signs; "1" when none is left."""
    text = ""
    for sign, part in parts:
        if not text:
            text = f"-{part}" if sign == "-" else part
        else:
            text += f" {sign} {part}"
    return text or "1"


def lme4_name(name):
    """lme4's name of one of formulaic's columns.

    A factor's level is written after the factor's name (``sex[T.M]`` -> ``sexM``;
    ``sex[F]``, a full-rank dummy, -> ``sexF``; a polynomial contrast's
    ``temperature[.L]`` -> ``temperature.L``), in each factor of an interaction
    (``a[T.x]:b[T.y]`` -> ``ax:by``).  Other names (``x``, ``log(x)``, ``I(x ** 2)``)
    stay as formulaic prints them, and so do the levels of sum, Helmert and
    difference contrasts (``[S.a]``, ``[H.a]``, ``[D.a]``), which lme4 numbers
    instead (``x1``).

    Examples
    --------
    >>> lme4_name("sex[T.M]"), lme4_name("a[T.x]:b[T.y]"), lme4_name("C(f)[T.b]")
    ('sexM', 'ax:by', 'C(f)b')
    >>> lme4_name("I(x ** 2)")
    'I(x ** 2)'
    """
    return ":".join(_factor_name(part) for _, part in split_top(name, ":"))


def _factor_name(part):
    if not part.endswith("]"):
        return part
    depths = _depths(part)
    # The bracket that opens the last one, at the part's top level.
    start = max((k for k, ch in enumerate(part) if ch == "[" and depths[k] == 0), default=0)
    factor, level = part[:start], part[start + 1 : -1]
    if not factor or re.match(r"[SHD]\.", level):
        return part
    if level.startswith("T."):
        level = level[2:]
    return factor + level


# R's spellings that formulaic does not know, and what to write instead.
_R_HINTS = {
    "factor(": "R's factor(x) is C(x) here",
    "offset(": "offsets are not supported: subtract the offset from the response",
    "as.numeric(": "R's as.numeric(x) is x here, or I(x * 1.0)",
}


def formula_error(error, formula, columns):
    """Raise a ValueError for formulaic's ``error`` on ``formula``; return if it is
    not formulaic's.  The message names the formula and the data's columns, and says
    what to write instead of an R function formulaic does not know.

    Examples
    --------
    >>> class FactorEvaluationError(Exception):
    ...     __module__ = "formulaic.errors"
    >>> formula_error(FactorEvaluationError("no factor"), "y ~ factor(a)", ["y", "a"])
    Traceback (most recent call last):
    ValueError: formulaic cannot evaluate 'y ~ factor(a)' on the data (columns: ['y', 'a']): no factor. R's factor(x) is C(x) here.
    >>> formula_error(KeyError("a"), "y ~ a", ["y"]) is None
    True
    """
    if not type(error).__module__.startswith("formulaic"):
        return
    hints = [hint for call, hint in _R_HINTS.items() if call in formula.replace(" ", "")]
    said = re.sub(r"\x1b\[[0-9;]*m", "", str(error))  # formulaic colours its messages
    message = f"formulaic cannot evaluate {formula!r} on the data (columns: {list(columns)}): {said}"
    raise ValueError(". ".join([message.rstrip("."), *hints]) + ".") from error
