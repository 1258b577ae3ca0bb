"""``python -m flossrepro.report [--results results] [--study S] [--no-draw] [--map]``: the claims reports.

Writes one report per study (``<results>/REPORT.md`` for gradient flossing,
``<results>/REPORT-<study>.md`` for any other), assembled from the figure modules that
``flossrepro.figures.discover()`` finds: a figure map (paper panel -> experiment -> module ->
results -> claims), then every claim with the number it tests, its 95% bootstrap interval
over networks, the number of networks, the scale and the verdict (``reproduced``, ``not
reproduced``, ``inconclusive``, ``not run``), then a section per figure with its PNG (drawn
first when missing or older than a table, unless ``--no-draw``), provenance and the
numbers behind each verdict. Claims and thresholds live in the figure modules; verdict rules
in ``flossrepro.figures.claims``. Nothing is trained.
"""
from __future__ import annotations

import argparse
import re
import sys
from datetime import datetime, timezone
from pathlib import Path

import pandas as pd

from flossrepro.constants import DONE_STATUSES
from flossrepro.errors import FlossreproError
from flossrepro.figures import discover
from flossrepro.figures.__main__ import output_paths, run_hint
from flossrepro.figures.data import describe, fmt_setting
from flossrepro.report.claims import (PAPER_DIRS, SUMMARY_HEAD, VERDICT_TEXT, anchors, decide, section, sources,
                                      summary_row)

STUDY_TITLE = {"flossing": "Gradient flossing", "lowrank": "Low-rank learning"}


def report_name(study: str) -> str:
    return "REPORT.md" if study == "flossing" else f"REPORT-{study}.md"


def studies() -> list[str]:
    return sorted({m.STUDY for m in discover().values()}, key=lambda s: (s != "flossing", s))


def _panel(cid: str) -> str:
    m = re.match(r"^[A-Za-z]*\d+([A-Z])", cid)  # 4B, 6C-var, T1A
    return m.group(1) if m else ""


def _fig_number(name: str) -> str:
    m = re.search(r"\d+", name)
    return m.group(0) if m else name


def figure_map(study: str | None = None, results: str | Path = "results") -> list[str]:
    """Markdown table: paper panel -> what it shows -> experiment -> module -> results -> claim ids."""
    out = ["| panel | shows | experiment | module | results | claims |", "|---|---|---|---|---|---|"]
    results = Path(results)
    for name, mod in discover().items():
        if study is not None and mod.STUDY != study:
            continue
        png = output_paths(results, name, mod)[0]
        claim_panels = getattr(mod, "CLAIM_PANELS", {})  # ids without a panel letter (LR1) name theirs here
        for letter, what in mod.PANELS.items():
            ids = [c for c in mod.CLAIMS if claim_panels.get(c, _panel(c)) == letter]
            label = getattr(mod, "LABEL", f"Fig {_fig_number(name)}" if mod.STUDY == "flossing" else f"{name} ")
            out.append(f"| {label}{letter} | {_cell(what)} | {', '.join(mod.EXPERIMENTS)} | "
                       f"`{mod.__name__.replace('.', '/')}.py` | `{png.parent}/`, [{page_name(name)}]({page_name(name)}) | "
                       f"{', '.join(ids) or '-'} |")
    return out


def _scale_line(df: pd.DataFrame) -> str:
    d = describe(df)
    s = (f"scale={fmt_setting(d['scale'])}, N={fmt_setting(d['N'])}, members={fmt_setting(d['members'])} per run, "
         f"epochs={fmt_setting(d['epochs'])}")
    if d.get("k") is not None:
        s += f", flossed k={fmt_setting(d['k'])}"
    if d.get("floss_epochs"):
        s += f", {fmt_setting(d['floss_epochs'])} flossing epochs per episode"
    return s


def _runs(results: Path, experiment: str) -> pd.DataFrame | None:
    p = results / experiment / "runs.csv"
    if not p.exists():
        return None
    runs = pd.read_csv(p)
    return runs if "status" in runs else None


def schedule_checks(df: pd.DataFrame) -> list[str]:
    """Warnings when the recorded flossing episodes (``lyap_after_floss``) contradict a run's
    schedule: a ``pre`` run must have exactly one episode, a ``none`` run none, a ``during``
    run several. Silent when the table has no ``lyap_after_floss`` rows."""
    if "flossing.schedule" not in df.columns or not (df["metric"] == "lyap_after_floss").any():
        return []
    eps = df[df["metric"] == "lyap_after_floss"].groupby("run_id")["epoch"].nunique()
    sched = df.groupby("run_id")["flossing.schedule"].first()
    n = eps.reindex(sched.index).fillna(0).astype(int)
    out = []
    for s, bad in (("none", n[(sched == "none") & (n > 0)]), ("pre", n[(sched == "pre") & (n != 1)]),
                   ("during", n[(sched == "during") & (n < 2)])):
        if len(bad):
            counts = ", ".join(f"{c} episode(s): {k} run(s)" for c, k in bad.value_counts().sort_index().items())
            out.append(f"WARNING: {len(bad)} '{s}' run(s) have a flossing-episode count that contradicts the schedule "
                       f"({counts}); the comparison between schedules is not what the figure claims.")
    return out


def _maybe_draw(results: Path, name: str, mod) -> str | None:
    """Draw the figure when its PNG is missing or older than a table; returns an error line or None."""
    png = output_paths(results, name, mod)[0]
    tables = [results / e / "metrics.parquet" for e in mod.EXPERIMENTS]
    if png.exists() and all(png.stat().st_mtime >= t.stat().st_mtime for t in tables if t.exists()):
        return None
    try:
        from flossrepro.figures.__main__ import draw
        draw(results, name)
    except Exception as e:  # the report must still be written
        return f"drawing {name} failed: {type(e).__name__}: {e}"
    return None


def _wall(w) -> str:
    try:
        s = float(w)
    except (TypeError, ValueError):
        return "n/a"
    return f"{s:.0f} s ({s / 3600:.2f} h)" if s >= 3600 else f"{s:.0f} s"


def _cell(text: str) -> str:
    return text.replace("|", "/")


def page_name(name: str) -> str:
    """A figure's detail page, beside the report: ``<results>/<name>.md``."""
    return f"{name}.md"


def _provenance(results: Path, mod, srcs) -> tuple[list[str], list[str]]:
    """Provenance lines of every source with tables, and warnings."""
    out, warns = [], []
    for s in srcs:
        if s.metrics is None or s.missing:
            continue
        rel = s.path.relative_to(results).as_posix() + "/" if s.path != results else "results/"
        out += [f"- `{rel}` measured at: {_scale_line(s.metrics)}"]
        warns += schedule_checks(s.metrics)
        for e in mod.EXPERIMENTS:
            prov = s.provs.get(e)
            if prov:
                out += [f"  - {e} command: `{prov.get('command', 'n/a')}`; scale: {prov.get('scale', 'n/a')}; git commit: "
                        f"`{prov.get('git_commit', 'n/a')}`; started: {prov.get('started', 'n/a')}; wall time: "
                        f"{_wall(prov.get('wall_s'))}"]
            else:
                out += [f"  - {e}: no provenance.json (command, commit and wall time unknown)"]
            runs = _runs(s.path, e)
            if runs is not None:
                counts = runs["status"].value_counts().to_dict()
                out += [f"  - {e}: {len(runs)} runs: " + ", ".join(f"{v} {k}" for k, v in sorted(counts.items()))]
                failed = int((~runs["status"].isin(DONE_STATUSES)).sum())
                if failed:
                    warns.append(f"WARNING: {failed} run(s) did not complete (see {rel}{e}/runs.csv); their "
                                 "conditions are missing from the figure and the verdicts.")
    return out, warns


def _figure(results: Path, name: str, mod, draw: bool) -> tuple[list[str], list[str], list[str]]:
    """``(summary rows, detail page lines, warnings)`` of one figure."""
    hint = "; ".join(f"no {e}/metrics.parquet: run `{run_hint(e, results)}`"
                     for e in mod.EXPERIMENTS if not (results / e / "metrics.parquet").exists())
    srcs = sources(results, mod, hint)
    decided = decide(srcs)
    page = page_name(name)
    rows = [summary_row(d, page, results, a) for d, a in zip(decided, anchors([d.claim.id for d in decided]))]
    sec = [f"# {mod.TITLE}", "", f"[Back to the report]({report_name(mod.STUDY)}). Module "
           f"`{mod.__name__.replace('.', '/')}.py`; experiment(s): "
           + ", ".join(f"`conf/experiment/{e}.yaml`" for e in mod.EXPERIMENTS) + ".", ""]
    base = srcs[-1]
    if base.missing and len(srcs) == 1:
        sec += [f"Not run: {hint}, then `python -m flossrepro.report`.", ""]
        return rows, sec, []
    if not base.missing:
        err = _maybe_draw(results, name, mod) if draw else None
        png = output_paths(results, name, mod)[0]
        sec += [f"![{name}]({png.relative_to(results).as_posix()})" if png.exists() else
                f"(figure not drawn: run `python -m flossrepro.figures --only {name}`{'; ' + err if err else ''})", ""]
    for s in srcs[:-1]:
        png = output_paths(s.path, name, mod)[0]
        if png.exists():
            sec += [f"At the paper's parameters: ![{name}]({png.relative_to(results).as_posix()})", ""]
    prov, warns = _provenance(results, mod, srcs)
    sec += ["## Tables", ""] + prov + [f"- {w}" for w in warns] + ["", "## Claims", ""]
    seen: set = set()
    for d in decided:
        sec += section(d, results, seen)
    return rows, sec, [f"- {name}: {w}" for w in warns]


def build(results: str | Path = "results", draw: bool = True, study: str = "flossing") -> dict[str, str]:
    """``{file name under results: text}``: the study's one-page report and a detail page per figure."""
    results = Path(results)
    table, pages, warnings = [], {}, []
    for name, mod in discover().items():
        if mod.STUDY != study:
            continue
        rows, sec, warns = _figure(results, name, mod, draw)
        table += rows
        pages[page_name(name)] = "\n".join(sec).rstrip() + "\n"
        warnings += warns
    now = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    counts = pd.Series([r.rsplit("**", 2)[-2] for r in table], dtype=object).value_counts()
    head = [f"# {STUDY_TITLE.get(study, study)}: claims report", "",
            f"Written by `python -m flossrepro.report --results {results}` on {now} from the tables; nothing is "
            "trained. Each claim is declared in its figure module (`RULES`: the paper's sentence, our test, its "
            "threshold) and evaluated by one engine (`flossrepro/figures/claims.py`). Paper-scale tables "
            f"(`{'/`, `'.join(PAPER_DIRS)}/` under the results folder) decide a claim when they can; otherwise the small-scale "
            "tables do (qualitative claims only); smoke-scale runs are never evidence. Each figure's page (the "
            "*details* link of each row) holds the figure, the paper's quote, every part of each test and the tables behind it.", "",
            "Verdicts: " + ", ".join(f"{v} {k}" for k, v in counts.items()) + ".", "",
            "## Figure map", ""] + figure_map(study, results) + [
            "", "## Claims", "", VERDICT_TEXT, ""] + SUMMARY_HEAD + table + [
            "", "A network is one realization, a `(run_id, member)` pair; *final* is a run's last test evaluation; a "
            "diverged network counts as failed. With 3-5 networks per condition a percentile interval undercovers: "
            "read such verdicts as weak evidence.", ""] + (["Warnings:", ""] + warnings + [""] if warnings else [])
    pages[report_name(study)] = "\n".join(head) + "\n"
    return pages


def render(results: str | Path = "results", draw: bool = True, study: str = "flossing") -> str:
    """The text of the ``study``'s one-page report for the tables under ``results``."""
    return build(results, draw, study)[report_name(study)]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m flossrepro.report", description=__doc__.split("\n\n")[1].replace("\n", " "))
    ap.add_argument("--results", default="results", help="folder holding <experiment>/metrics.parquet (default: results)")
    ap.add_argument("--study", nargs="+", default=None, help=f"write only these studies' reports (have: {', '.join(studies())})")
    ap.add_argument("--out", default=None, help="output file (only with one study; default: <results>/REPORT*.md)")
    ap.add_argument("--no-draw", action="store_true", help="do not draw missing or stale figure PNGs")
    ap.add_argument("--map", action="store_true", help="also print the figure map (paper panel -> code -> results)")
    a = ap.parse_args(argv)
    results = Path(a.results)
    if not results.is_dir():
        print(f"report: error: {results} is not a directory; give the results folder (--results results)", file=sys.stderr)
        return 2
    want = a.study or studies()
    bad = [s for s in want if s not in studies()]
    if bad or (a.out and len(want) != 1):
        print(f"report: error: unknown study {', '.join(bad)}; have: {', '.join(studies())}" if bad else
              "report: error: --out needs exactly one --study", file=sys.stderr)
        return 2
    if a.map:
        print("\n".join(figure_map(None, results)))
    for study in want:
        try:
            pages = build(results, draw=not a.no_draw, study=study)
        except FlossreproError as e:  # an unreadable table: one line with the fix
            print(f"report: error: {e}", file=sys.stderr)
            return 2
        text = pages.pop(report_name(study))
        out = Path(a.out) if a.out else results / report_name(study)
        out.write_text(text)
        for fname, page in pages.items():   # the figures' detail pages, beside the report
            (out.parent / fname).write_text(page)
        verdicts = [line.rsplit("**", 2)[-2] for line in text.splitlines()
                    if line.startswith("| ") and line.endswith("** |")]
        counts = pd.Series(verdicts, dtype=object).value_counts().to_dict()
        print(f"report: wrote {out}: " + ", ".join(f"{v} {k}" for k, v in counts.items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
