"""Claims in the report: which table decides each claim, and the claim rendered once (its summary
row and its section on the figure's detail page).

A figure's tables can exist at several scales: ``<results>/paper/<experiment>/`` (the paper's
parameters), ``<results>/paper-d70/<experiment>/`` (the deciding condition at the paper's
parameters), ``<results>/paper-lowrank/<experiment>/`` (the low-rank study's runs at its
authors' parameters) and ``<results>/<experiment>/`` (small scale). Every claim is evaluated on each
source whose tables exist; the first source, in that order, that decides it (any verdict but
``not run``) is the one the report shows, and the row names its scale and folder.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from flossrepro.figures.claims import (ANSWERED, DIFFERS, INCONCLUSIVE, LEVEL, N_BOOT, NOT_REPRODUCED, NOT_RUN,
                                       REPRODUCED, UNTESTABLE, Claim, evaluate, g)
from flossrepro.figures.data import describe, fmt_setting, load_tables

#: folders under the results folder that hold paper-scale tables, in order of preference
PAPER_DIRS = ("paper", "paper-d70", "paper-lowrank")


@dataclass
class Source:
    """One folder's tables for one figure module."""
    path: Path
    metrics: pd.DataFrame | None
    provs: dict
    missing: list[str]
    claims: list[Claim] = field(default_factory=list)

    @property
    def scale(self) -> str:
        if self.metrics is None:
            return "-"
        d = describe(self.metrics)
        return f"{fmt_setting(d['scale'])}, N={fmt_setting(d['N'])}"


def sources(results: Path, mod, hint: str = "") -> list[Source]:
    """The module's sources, paper scale first; the last is ``results`` itself (always present)."""
    out = []
    for sub in PAPER_DIRS:
        p = results / sub
        if all((p / e / "metrics.parquet").exists() for e in mod.EXPERIMENTS):
            m, provs, missing = load_tables(p, mod.EXPERIMENTS, mod.METRICS)
            if not missing:
                out.append(Source(p, m, provs, missing))
    m, provs, missing = load_tables(results, mod.EXPERIMENTS, mod.METRICS)
    out.append(Source(results, m, provs, missing))
    for s in out:
        h = hint if s.path == results else ""
        s.claims = evaluate(mod, None if s.missing else s.metrics, h)
    return out


@dataclass
class Decided:
    """A claim with the source that decides it and the other sources' verdicts."""
    claim: Claim
    source: Source
    others: list[tuple[Source, Claim]]


def decide(srcs: list[Source]) -> list[Decided]:
    """Per claim id: the first source that decides it; when none does, the first that measured part
    of it (paper scale first), else the last (small scale)."""
    out = []
    for j, c in enumerate(srcs[-1].claims):
        cands = [(s, s.claims[j]) for s in srcs]
        pick = next(((s, x) for s, x in cands if x.verdict != NOT_RUN),
                    next(((s, x) for s, x in cands if x.groups and not x.not_evidence), cands[-1]))
        out.append(Decided(pick[1], pick[0], [(s, x) for s, x in cands if s is not pick[0]]))
    return out


def cell(text: str) -> str:
    return text.replace("|", "/").replace("\n", " ")


def _worst_part(c: Claim):
    gr = c.deciding()
    if gr is None or not gr.parts:
        return None, gr
    order = {NOT_REPRODUCED: 0, INCONCLUSIVE: 1, NOT_RUN: 2, REPRODUCED: 3}
    key = (lambda p: -order.get(p.verdict, 2)) if c.over == "any" and gr.verdict == REPRODUCED else \
        (lambda p: order.get(p.verdict, 2))
    return sorted(gr.parts, key=key)[0], gr


def headline(c: Claim) -> str:
    """The deciding number with its interval, in one line."""
    if c.untestable and not c.not_evidence:
        return c.untestable
    if c.question and c.answer:
        return c.answer + (f" ({c.not_evidence})" if c.not_evidence else f"; {c.missing}" if c.missing else "")
    p, gr = _worst_part(c)
    if p is None:
        return c.missing or c.note or "nothing measured"
    more = len(gr.parts) - 1
    out = f"{gr.label}: {p.label} {g(p.value)} [{g(p.lo)}, {g(p.hi)}] (test: {p.op} {g(p.threshold)})"
    if more:
        out += f" (+{more} part{'s' if more > 1 else ''})"
    if len(c.groups) > 1:
        out += f" ({'best' if c.over == 'any' else 'worst'} of {len(c.groups)})"
    if c.not_evidence:
        out += f" ({c.not_evidence})"
    elif c.verdict == INCONCLUSIVE:
        n = c.n_needed()
        out += f"; about {n} networks would decide it" if n else "; the estimate sits at the threshold"
    elif c.missing:
        out += f"; {c.missing}"
    if c.note:
        out += f"; {c.note}"
    return out


def paper_says(c: Claim) -> str:
    """The authors' own values where the rule records them, else the paper's words (and where)."""
    r = c.rule
    if r is None:
        return "-"
    if r.authors:
        return r.authors
    return f"{r.paper} ({r.where})" if r.where and r.where != "-" else r.paper


def anchors(ids: list[str]) -> list[str]:
    """GitHub's anchors of the headings ``### <id>`` of one page, in order (repeats get -1, -2)."""
    out, seen = [], {}
    for cid in ids:
        a = "".join(ch for ch in cid.lower() if ch.isalnum() or ch in "-_ ").replace(" ", "-")
        n = seen.get(a, 0)
        seen[a] = n + 1
        out.append(a if n == 0 else f"{a}-{n}")
    return out


def evidence(d: Decided, results: Path) -> str:
    """The rule's evidence, its ``{folder}`` the results folder that decided the claim."""
    rel = d.source.path.relative_to(results).as_posix() if d.source.path != results else ""
    return d.claim.rule.evidence.replace("{folder}", "/".join(p for p in (results.name, rel) if p))


def summary_row(d: Decided, page: str, results: Path, anchor: str) -> str:
    c = d.claim
    rel = d.source.path.relative_to(results).as_posix() if d.source.path != results else ""
    scale = d.source.scale if not d.claim.missing or d.claim.groups else "-"
    if rel:
        scale += f" (`{rel}/`)"
    measured = headline(c)
    if c.verdict in (DIFFERS, UNTESTABLE) and c.rule is not None and c.rule.evidence:
        measured += f"; evidence: {evidence(d, results)}"
    if c.verdict == INCONCLUSIVE:   # what the other scales say, when they decide
        measured += "".join(f"; at {s.scale}: {x.verdict}" for s, x in d.others
                            if x.verdict not in (NOT_RUN, INCONCLUSIVE) and not s.missing)
    return (f"| {c.id} | [details]({page}#{anchor}): {cell(c.claim)} | {cell(paper_says(c))} | {cell(measured)} | {c.n} | "
            f"{scale} | **{c.verdict}** |")


SUMMARY_HEAD = ["| id | claim (our test) | the paper says | we measured [95% interval] | networks | scale | verdict |",
                "|---|---|---|---|---|---|---|"]

VERDICT_TEXT = (f"Measured: the number each claim tests, with its {LEVEL:.0%} percentile-bootstrap interval over "
                f"networks ({N_BOOT} resamples, fixed seed; compared conditions resampled independently); for claims "
                "with several parts, the part that decides. Verdicts: *reproduced* (the whole interval on the "
                "claim's side), *not reproduced* (wholly on the other side), *inconclusive* (it straddles the "
                "threshold), *not run* (the table lacks what the claim needs, or holds only smoke-scale runs), "
                f"*{DIFFERS}* (the deciding table ran at the paper's parameters and contradicts the claim), "
                f"*{UNTESTABLE}* (the paper's stated setup cannot produce its own figure; the row says why), "
                f"*{ANSWERED}* (an open question, not a claim of the paper: the row gives the answer computed from "
                "the tables).")


def _blocks(lines: list[str]) -> list[list[str]]:
    out, cur = [], []
    for line in lines:
        if line == "":
            if cur:
                out.append(cur)
            cur = []
        else:
            cur.append(line)
    if cur:
        out.append(cur)
    return out


def section(d: Decided, results: Path, seen: set) -> list[str]:
    """The claim's section on its figure's page (tables already on the page are not repeated)."""
    c, r = d.claim, d.claim.rule
    where = d.source.path.relative_to(results).as_posix() + "/" if d.source.path != results else "results/"
    out = [f"### {c.id}", "", f"**Verdict: {c.verdict}** (decided at {d.source.scale}, tables in `{where}`).", ""]
    if r is not None:
        out += [f"- The paper ({r.where}): \"{r.quote}\"", f"- The paper's number: {r.paper}"]
        if r.authors:
            out += [f"- The authors' own values (read off their figures): {r.authors}"]
        out += [f"- Our {'question' if c.question else 'test'}: {c.claim}"]
        if c.question and c.answer:
            out += [f"- **Answer**: {c.answer}"]
        if r.evidence:
            out += [f"- Evidence: {evidence(d, results)}"]
    else:
        out += [f"- Our test: {c.claim}"]
    if c.untestable:
        out += [f"- Not testable as stated: {c.untestable}."]
    if c.not_evidence:
        out += [f"- Not evidence: {c.not_evidence}; the numbers below only show the pipeline ran."]
    if c.missing:
        out += [f"- Not in the table: {c.missing}."]
    if c.verdict == INCONCLUSIVE:
        out += [f"- {c.decide_line()[0].upper() + c.decide_line()[1:]}."]
    for s, x in d.others:
        if s.metrics is not None and not s.missing:
            out += [f"- At {s.scale} (`{s.path.relative_to(results).as_posix() + '/' if s.path != results else 'results/'}`): "
                    f"{x.verdict}; {cell(headline(x))}"]
    out += [""]
    if c.groups:
        out += c.parts_table() + [""]
    for b in _blocks(c.detail):
        key = "\n".join(b)
        if key in seen and b[0].startswith("|"):
            continue
        seen.add(key)
        out += b + [""]
    return out
