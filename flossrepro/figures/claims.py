"""Claims, verdicts and the uncertainty behind them (used by every figure module).

A claim tests numbers against thresholds. Each number is measured over *networks*
(``(run_id, member)`` pairs) and carries a 95% percentile-bootstrap interval over those
networks (2000 resamples, a generator seeded by the claim id; conditions that are compared
are resampled independently). One test's verdict:

- ``reproduced``: the whole interval is on the claim's side of the threshold;
- ``not reproduced``: the whole interval is on the other side;
- ``inconclusive``: the interval straddles the threshold; ``n_needed`` estimates how many
  networks would decide it (the interval's reach from the estimate toward the threshold
  scaled by ``sqrt(n / n_new)`` until it stops short of the threshold, if the estimate holds:
  a rough guide).

A claim's tests come in groups (one per target, k or delay); a group holds when all of its
tests hold, and the claim needs ``all`` of its groups (every k) or ``any`` (some delay).
Parts the table lacks are unknown: the claim reads ``not run`` unless the parts present
already decide it. Tables at smoke scale are never evidence (``evaluate``).

A rule declared as a question (``Rule.question``: an open question, not a claim of the paper)
is ``answered`` once its table measures it: the row gives the answer in one sentence computed
from the data (``Claim.answer``); its parts are the numbers behind the answer, not pass/fail.

Two verdicts say the paper itself is at odds with its claim: ``differs from the paper`` (the
deciding table ran at the paper's parameters, ``scale.name == "paper"``, and its numbers
contradict the claim) and ``not testable as stated`` (the statistic found that the paper's
stated setup cannot produce the figure, ``Claim.untestable`` names the evidence).

A claim is declared as data (:class:`Rule`): the paper's sentence and where it stands, our
test, what it selects, the comparison and threshold, what it runs over and the statistic
(a function of a ``stats_*`` module). :func:`evaluate_rules` is the one engine.
"""
from __future__ import annotations

import math
import operator
import zlib
from dataclasses import dataclass, field
from typing import Callable, Iterable

import numpy as np
import pandas as pd

REPRODUCED, NOT_REPRODUCED, INCONCLUSIVE, NOT_RUN = "reproduced", "not reproduced", "inconclusive", "not run"
DIFFERS, UNTESTABLE = "differs from the paper", "not testable as stated"
ANSWERED = "answered"   # an open question (Rule.question) measured: the row gives the answer
VERDICTS = (REPRODUCED, NOT_REPRODUCED, INCONCLUSIVE, NOT_RUN, DIFFERS, UNTESTABLE, ANSWERED)
PAPER = "paper"
LEVEL = 0.95
N_BOOT = 2000
SMOKE = "smoke"
OPS: dict[str, Callable] = {">": operator.gt, ">=": operator.ge, "<": operator.lt, "<=": operator.le}


def g(x) -> str:
    """A number in 3 significant digits (``n/a``, ``inf``)."""
    if x is None or (isinstance(x, float) and np.isnan(x)):
        return "n/a"
    if np.isinf(x):
        return "inf" if x > 0 else "-inf"
    return f"{x:.3g}"


# ----------------------------------------------------------------------------- bootstrap
def rng_for(key: str) -> np.random.Generator:
    """The fixed-seed generator of one claim (the same numbers whatever else is evaluated)."""
    return np.random.default_rng(zlib.crc32(key.encode()))


def replicates(x, stat: Callable, rng: np.random.Generator, n_boot: int = N_BOOT) -> np.ndarray:
    """``stat`` over networks of ``n_boot`` resamples of ``x`` (``[n]`` or ``[n, m]``, one row
    per network): ``[n_boot]`` or ``[n_boot, m]``. ``stat`` takes ``axis=1``."""
    x = np.asarray(x, float)
    idx = rng.integers(0, len(x), (n_boot, len(x)))
    return stat(x[idx], axis=1)


def interval(reps: np.ndarray, level: float = LEVEL) -> tuple[float, float]:
    """Percentile interval of bootstrap replicates (order statistics: no interpolation, so
    infinite values stay infinite)."""
    s = np.sort(np.asarray(reps, float))
    if len(s) == 0 or np.isnan(s).any():
        return np.nan, np.nan
    a = (1 - level) / 2
    return float(s[int(math.floor(a * len(s)))]), float(s[int(math.ceil((1 - a) * len(s))) - 1])


def frac(x, axis=None):
    """Fraction of true values (a statistic for ``replicates``)."""
    return np.mean(x, axis=axis)


# ----------------------------------------------------------------------------- verdicts
def _combine(verdicts: list[str], decisive: str, needs_all: str) -> str:
    """``decisive`` wins outright, then inconclusive; ``needs_all`` only when every part has it."""
    if not verdicts:
        return NOT_RUN
    if decisive in verdicts:
        return decisive
    if INCONCLUSIVE in verdicts:
        return INCONCLUSIVE
    return needs_all if all(v == needs_all for v in verdicts) else NOT_RUN


def _all(verdicts: list[str]) -> str:
    """Every part must hold: one failure decides."""
    return _combine(verdicts, NOT_REPRODUCED, REPRODUCED)


def _any(verdicts: list[str]) -> str:
    """One part suffices: one success decides."""
    return _combine(verdicts, REPRODUCED, NOT_REPRODUCED)


@dataclass
class Part:
    """One number against one threshold: ``value [lo, hi] op threshold`` over ``nets``."""
    label: str
    value: float
    lo: float
    hi: float
    op: str
    threshold: float
    nets: frozenset

    @property
    def verdict(self) -> str:
        if any(np.isnan(v) for v in (self.value, self.lo, self.hi)):
            return INCONCLUSIVE
        f = OPS[self.op]
        lo_ok, hi_ok = f(self.lo, self.threshold), f(self.hi, self.threshold)
        return REPRODUCED if lo_ok and hi_ok else NOT_REPRODUCED if not (lo_ok or hi_ok) else INCONCLUSIVE

    @property
    def n(self) -> int:
        return len(self.nets)

    def n_needed(self) -> int | None:
        """Networks that would decide an inconclusive test if its estimate held (None: cannot say)."""
        if self.verdict != INCONCLUSIVE:
            return None
        # the interval's reach from the estimate toward the threshold, shrunk as 1/sqrt(n)
        # until it stops at the threshold
        width = abs(self.value - (self.lo if self.threshold < self.value else self.hi))
        dist = abs(self.value - self.threshold)
        if not (np.isfinite(width) and np.isfinite(dist)) or dist == 0:
            return None
        return max(self.n + 1, math.ceil(self.n * (width / dist) ** 2))

    def text(self) -> str:
        return f"{self.label} {g(self.value)} [{g(self.lo)}, {g(self.hi)}] (claim: {self.op} {g(self.threshold)})"


def part(label: str, x, stat: Callable, op: str, threshold: float, nets: Iterable, rng: np.random.Generator) -> Part:
    """A test of ``stat(x)`` (one row of ``x`` per network) with its bootstrap interval."""
    x = np.asarray(x, float)
    if len(x) == 0:
        return Part(label, np.nan, np.nan, np.nan, op, threshold, frozenset())
    value = float(stat(x[None], axis=1)[0])
    lo, hi = interval(replicates(x, stat, rng))
    return Part(label, value, lo, hi, op, threshold, frozenset(nets))


def part_from_reps(label: str, value: float, reps: np.ndarray, op: str, threshold: float, nets: Iterable) -> Part:
    """A test of a number whose bootstrap replicates were combined by the caller (e.g. a
    difference between conditions resampled independently)."""
    lo, hi = interval(reps)
    return Part(label, float(value), lo, hi, op, threshold, frozenset(nets))


def median_part(label: str, x, op: str, threshold: float, nets: Iterable, rng: np.random.Generator,
                stat: Callable = np.median) -> Part:
    """The one median test: ``stat`` (median unless given) of one condition's networks ``x`` with
    its bootstrap interval (``nan`` when there are none)."""
    x = np.asarray(x, float)
    if len(x) == 0:
        return Part(label, np.nan, np.nan, np.nan, op, threshold, frozenset(nets))
    return part(label, x, stat, op, threshold, nets, rng)


def median_reps(x, rng: np.random.Generator) -> tuple[float, np.ndarray]:
    """``(median, bootstrap replicates of the median)`` of one condition's networks."""
    x = np.asarray(x, float)
    return float(np.median(x)), replicates(x, np.median, rng)


@dataclass
class Group:
    """Tests that must all hold, e.g. at one delay or for one k."""
    label: str
    parts: list[Part]

    @property
    def verdict(self) -> str:
        return _all([t.verdict for t in self.parts])

    @property
    def nets(self) -> frozenset:
        return frozenset().union(*(t.nets for t in self.parts))

    def n_needed(self) -> int | None:
        ratios = [t.n_needed() / t.n for t in self.parts if t.n_needed() is not None and t.n]
        if self.verdict != INCONCLUSIVE or not ratios:
            return None
        return math.ceil(len(self.nets) * max(ratios))

    def text(self) -> str:
        return f"{self.label}: " + "; ".join(t.text() for t in self.parts)


@dataclass
class Claim:
    """One claim of the paper: its id, text, the measured groups of tests and a verdict.

    ``over="all"``: every group must hold; ``"any"``: one group suffices. ``missing`` names
    the parts the table lacks; ``not_evidence`` says why the table cannot decide the claim
    (smoke scale); ``detail`` holds markdown lines for the figure's section."""
    id: str
    claim: str
    groups: list[Group] = field(default_factory=list)
    over: str = "all"
    missing: str = ""
    not_evidence: str = ""
    note: str = ""
    detail: list[str] = field(default_factory=list)
    untestable: str = ""      # why the paper's stated setup cannot produce its figure (evidence)
    at_paper: bool = False    # the table ran at the paper's parameters
    rule: "Rule | None" = None
    answer: str = ""          # an open question's answer in one sentence, computed from the data

    @property
    def question(self) -> bool:
        """An open question (its rule says so): answered, never reproduced or not."""
        return self.rule is not None and self.rule.question

    @property
    def base_verdict(self) -> str:
        """The verdict of the numbers alone (reproduced, not reproduced, inconclusive, not run)."""
        if self.not_evidence:
            return NOT_RUN
        v = (_all if self.over == "all" else _any)([gr.verdict for gr in self.groups])
        if self.missing:   # unknown parts: only a verdict the present parts force stands
            decided = NOT_REPRODUCED if self.over == "all" else REPRODUCED
            return v if v == decided else NOT_RUN
        return v

    @property
    def verdict(self) -> str:
        if self.question:
            return ANSWERED if self.answer and self.groups and not self.not_evidence else NOT_RUN
        if self.untestable and not self.not_evidence:
            return UNTESTABLE
        v = self.base_verdict
        return DIFFERS if v == NOT_REPRODUCED and self.at_paper else v

    @property
    def n(self) -> int:
        return len(frozenset().union(*(gr.nets for gr in self.groups))) if self.groups else 0

    def deciding(self) -> Group | None:
        """The group that decides the verdict (for ``any``: the best; for ``all``: the worst)."""
        if not self.groups:
            return None
        order = {REPRODUCED: 0, INCONCLUSIVE: 1, NOT_RUN: 2, NOT_REPRODUCED: 3, DIFFERS: 3, UNTESTABLE: 3, ANSWERED: 0}
        key = (lambda gr: order[gr.verdict]) if self.over == "any" else (lambda gr: -order[gr.verdict])
        best = sorted(self.groups, key=key)
        cands = [gr for gr in best if gr.verdict == best[0].verdict]
        if best[0].verdict == INCONCLUSIVE:   # the one nearest to being decided (any) / the hardest (all)
            n = lambda gr: gr.n_needed() or math.inf  # noqa: E731
            return (min if self.over == "any" else max)(cands, key=n)
        return cands[0]

    def n_needed(self) -> int | None:
        if self.verdict != INCONCLUSIVE:
            return None
        gr = self.deciding()
        return gr.n_needed() if gr else None

    def measured(self) -> str:
        """The deciding number(s) with their intervals, for the summary table."""
        if not self.groups:
            return self.missing or self.note or "nothing measured"
        gr = self.deciding()
        more = f" ({'best' if self.over == 'any' else 'worst'} of {len(self.groups)})" if len(self.groups) > 1 else ""
        out = gr.text() + more
        if self.missing:
            out += f"; {self.missing}"
        return out

    def decide_line(self) -> str:
        """What would decide an inconclusive verdict."""
        if self.verdict != INCONCLUSIVE:
            return ""
        n = self.n_needed()
        gr = self.deciding()
        if n is None:
            return (f"inconclusive: the interval straddles the threshold with the estimate on (or near) it; "
                    f"more networks than the {len(gr.nets) if gr else 0} here may not decide it")
        return f"inconclusive: about {n} networks (now {len(gr.nets)}) would decide it if the estimates hold"

    def parts_table(self) -> list[str]:
        """Markdown table of every test of the claim."""
        if not self.groups:
            return []
        last = "reading" if self.question else "verdict"
        out = [f"| part | measured [95% interval] | {'compared with' if self.question else 'claim'} | networks | {last} |",
               "|---|---|---|---|---|"]
        for gr in self.groups:
            for t in gr.parts:
                out.append(f"| {gr.label}: {t.label} | {g(t.value)} [{g(t.lo)}, {g(t.hi)}] | {t.op} {g(t.threshold)} "
                           f"| {t.n} | {direction(t) if self.question else t.verdict} |")
        return out


def direction(t: Part) -> str:
    """Where a question's number lies against its reference (no pass/fail): above, below, unresolved."""
    if any(np.isnan(v) for v in (t.value, t.lo, t.hi)):
        return "not measured"
    if t.lo > t.threshold:
        return f"above {g(t.threshold)}"
    if t.hi < t.threshold:
        return f"below {g(t.threshold)}"
    return f"interval contains {g(t.threshold)}: no difference resolved"


def scale_of(metrics: pd.DataFrame) -> list[str]:
    if "scale.name" not in metrics.columns:
        return []
    return sorted(str(s) for s in metrics["scale.name"].dropna().unique())


def evaluate(module, metrics: pd.DataFrame | None, missing_hint: str = "") -> list[Claim]:
    """The claims of figure ``module`` on ``metrics``: ``not run`` without a table; at smoke
    scale measured but never evidence; rows at smoke scale are dropped when others exist;
    a table wholly at the paper's parameters marks its claims ``at_paper``."""
    rules = {r.id: r for r in getattr(module, "RULES", ())}
    if metrics is None or metrics.empty:
        return [Claim(cid, text, missing=missing_hint or "no table", rule=rules.get(cid))
                for cid, text in module.CLAIMS.items()]
    scales = scale_of(metrics)
    if scales and all(s == SMOKE for s in scales):
        out = module.claims(metrics)
        for c in out:
            c.not_evidence = "smoke scale: never evidence"
        return out
    if SMOKE in scales:
        metrics = metrics[metrics["scale.name"] != SMOKE]
    out = module.claims(metrics)
    if scale_of(metrics) == [PAPER]:
        for c in out:
            c.at_paper = c.rule is None or c.rule.paper_setup
    return out


# ----------------------------------------------------------------------------- claims as data
@dataclass(frozen=True)
class Rule:
    """One claim of the paper, declared.

    ``quote``: the paper's sentence (verbatim, shortened with ...), ``where``: where it stands
    (section, figure caption); ``paper``: the paper's own number or wording for the summary
    table; ``claim``: what we test, with the threshold; ``select``: the conditions, delays,
    k, tasks it reads; ``op`` and ``threshold``: the comparison of the statistic; ``over``:
    ``"all"`` groups (every k) or ``"any"`` (some delay); ``params``: the statistic's other
    numbers (tolerances, horizons); ``stat``: the function ``(metrics, rule) -> Claim`` that
    measures it (in a ``stats_*`` module); ``evidence``: a link to the paper-scale evidence
    or the reason a setup is untestable, shown on the row; ``paper_setup``: False for a
    condition the paper did not run (a variant, another architecture), which therefore cannot
    differ from the paper. ``authors``: the authors' own values where the paper's figures show
    them (the report's "the paper says" column prints them beside ours); ``question``: an open
    question, answered from the data rather than reproduced."""
    id: str
    quote: str
    where: str
    paper: str
    claim: str
    stat: Callable
    select: dict = field(default_factory=dict)
    op: str = ">"
    threshold: float = 0.0
    over: str = "all"
    params: dict = field(default_factory=dict)
    evidence: str = ""   # where the evidence lies; "{folder}" becomes the results folder that decided the claim
    panel: str = ""
    paper_setup: bool = True   # False: our variant or addition (never "differs from the paper")
    authors: str = ""          # the authors' own values (read off their figures), printed beside ours
    question: bool = False     # an open question: verdict "answered", the statistic writes Claim.answer

    def p(self, key: str):
        """A parameter of the statistic (``params``, else ``select``)."""
        return self.params[key] if key in self.params else self.select[key]

    def new(self, **kw) -> Claim:
        """An empty claim of this rule."""
        return Claim(self.id, self.claim, over=self.over, rule=self, **kw)


def claim_texts(rules) -> dict[str, str]:
    """``{id: what we test}`` of declared rules (a figure module's ``CLAIMS``)."""
    return {r.id: r.claim for r in rules}


def evaluate_rules(rules, metrics: pd.DataFrame) -> list[Claim]:
    """The one engine: every declared rule measured on ``metrics`` by its statistic."""
    out = []
    for r in rules:
        c = r.stat(metrics, r)
        c.rule, c.over = r, r.over
        out.append(c)
    return out
