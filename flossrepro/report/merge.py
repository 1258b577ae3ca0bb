"""Merge published tables (several sweeps of one experiment) into one, optionally thinned.

``python -m flossrepro.merge OUT SRC[::QUERY[::NOTE]] [SRC...] [--train-loss-every E] [--sv-last]
[--sv-top K] [--drop a,b]`` unions the published table folders ``SRC`` (each written by
``python -m flossrepro.aggregate ... --provenance ...``: ``metrics.parquet``, ``runs.csv``,
``provenance.json``) into the folder ``OUT``:

- ``QUERY`` (pandas, ``engine="python"``; backquote dotted columns:
  ``` `init.g`.isin([0.0, 0.9]) ```) keeps some rows of a source, and ``runs.csv`` keeps the
  runs that still have rows; ``NOTE`` says in the provenance what the source is
  (e.g. ``seed=3 members=2``);
- the columns are the union of the sources' columns; a row present twice on
  ``(run_id, member, epoch, metric, index)`` (the same run added twice) is refused;
- the thinning options keep fewer rows of the long per-epoch metrics, and
  ``provenance.json``'s ``summary_note`` says exactly what was thinned;
- ``provenance.json`` joins the sources' sweeps and commands, and counts the runs, their
  statuses and run time again.

``OUT`` may be one of the sources (new runs added to a committed table in place): every
source is read before anything is written, each file is replaced whole, and nothing is
written when a source or an option is refused (one line on stderr, exit code 2).
"""
from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import sys
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from flossrepro.constants import DONE_STATUSES

PROG = "python -m flossrepro.merge"
USAGE = (f"{PROG} OUT SRC[::QUERY[::NOTE]] [SRC...] [--train-loss-every E] [--sv-last] [--sv-top K] "
         f"[--drop a,b]")
#: the columns that identify one observation of a published table
KEY = ["run_id", "member", "epoch", "metric", "index"]
FILES = ("metrics.parquet", "runs.csv", "provenance.json")
#: provenance values joined over the sources with "; " (each source's, in source order)
JOINED = ("wall_s", "full_tables")


class Refused(Exception):
    """A source or an option that cannot be merged; the message says which and the fix."""


@dataclass
class Source:
    """One source of a merge: its folder, optional row query and note, and its tables."""
    spec: str
    dir: Path
    query: str | None
    note: str | None
    metrics: pd.DataFrame
    runs: pd.DataFrame
    provenance: dict


def parse_spec(spec: str) -> tuple[Path, str | None, str | None]:
    """``DIR[::QUERY[::NOTE]]`` -> (DIR, QUERY or None, NOTE or None)."""
    parts = spec.split("::", 2) + [None, None]
    d, q, n = parts[0], parts[1], parts[2]
    return Path(d), (q.strip() or None) if q is not None else None, (n.strip() or None) if n is not None else None


def read_source(spec: str) -> Source:
    """Read one source folder whole and keep the rows its query selects (and their runs)."""
    d, q, note = parse_spec(spec)
    if not d.is_dir():
        raise Refused(f"{d}: no such folder; give a published table folder ({', '.join(FILES)}), "
                      f"e.g. the --out of python -m flossrepro.aggregate")
    missing = [f for f in FILES if not (d / f).is_file()]
    if missing:
        raise Refused(f"{d}: no {', '.join(missing)}; a source is a published table folder: rerun "
                      f"python -m flossrepro.aggregate SWEEP --out {d} --provenance command=... scale=...")
    try:
        metrics = pd.read_parquet(d / "metrics.parquet")
    except Exception as e:
        raise Refused(f"{d / 'metrics.parquet'}: unreadable ({type(e).__name__}: {e}); "
                      f"rewrite it with python -m flossrepro.aggregate") from None
    lacking = [c for c in KEY if c not in metrics.columns]
    if lacking:
        raise Refused(f"{d / 'metrics.parquet'}: no column {', '.join(lacking)}; "
                      f"it is not a published summary table (python -m flossrepro.aggregate writes one)")
    try:  # as text: kept rows are written back as they were (commit hashes stay strings)
        runs = pd.read_csv(d / "runs.csv", dtype=str, keep_default_na=False)
    except Exception as e:
        raise Refused(f"{d / 'runs.csv'}: unreadable ({type(e).__name__}: {e}); "
                      f"rewrite it with python -m flossrepro.aggregate") from None
    if "run_id" not in runs.columns:
        raise Refused(f"{d / 'runs.csv'}: no run_id column; it is not the runs table python -m "
                      f"flossrepro.aggregate writes")
    try:
        prov = json.loads((d / "provenance.json").read_text())
    except (ValueError, UnicodeDecodeError) as e:
        raise Refused(f"{d / 'provenance.json'}: not JSON ({e}); fix it or rewrite it with "
                      f"python -m flossrepro.aggregate --provenance") from None
    if not isinstance(prov, dict):
        raise Refused(f"{d / 'provenance.json'}: not a JSON object; rewrite it with "
                      f"python -m flossrepro.aggregate --provenance")
    if q is not None:
        try:
            kept = metrics.query(q, engine="python")
        except Exception as e:
            msg = " ".join(str(e).split())
            raise Refused(f"{spec}: bad query ({type(e).__name__}: {msg}); write a pandas query over the columns "
                          f"{', '.join(metrics.columns)} (backquote dotted names: `init.g` == 0.9)") from None
        if kept.empty:
            raise Refused(f"{spec}: the query keeps no row of {d / 'metrics.parquet'}; check its values "
                          f"(or leave the source out)")
        metrics = kept.reset_index(drop=True)
        runs = runs[runs["run_id"].isin(set(metrics["run_id"]))].reset_index(drop=True)
    return Source(spec, d, q, note, metrics, runs, prov)


def duplicates(sources: list[Source], metrics: pd.DataFrame) -> str | None:
    """A one-line description of the rows present twice on :data:`KEY`, or None when there are none."""
    dup = metrics.duplicated(KEY)
    if not dup.any():
        return None
    ids = list(dict.fromkeys(metrics.loc[dup, "run_id"]))
    where = {r: [str(s.dir) for s in sources if r in set(s.metrics["run_id"])] for r in ids[:3]}
    eg = "; ".join(f"{r} (in {' and '.join(dict.fromkeys(w))})" for r, w in where.items())
    more = f" and {len(ids) - 3} more runs" if len(ids) > 3 else ""
    return (f"{int(dup.sum())} rows repeat others on ({', '.join(KEY)}), in {len(ids)} runs: {eg}{more}: "
            f"the same run added twice; leave one copy out (or keep part of a source with SRC::QUERY)")


def thin(metrics: pd.DataFrame, train_loss_every: int | None = None, sv_last: bool = False,
         sv_top: int | None = None, drop: tuple[str, ...] = ()) -> tuple[pd.DataFrame, str | None]:
    """Keep fewer rows of the long metrics; returns the thinned table and the sentence that says
    what was thinned (None when nothing was asked).

    ``train_loss_every=E``: ``train_loss`` at epochs divisible by E and at each (run, member)'s
    first and last; ``sv_last``: ``dW_sv`` at each (run, member)'s last epoch only (with
    ``sv_top=K`` also its top K values, ``index <= K``, at every epoch); ``sv_top`` alone: only
    the top K values of ``dW_sv`` at every epoch; ``drop``: those metrics left out.
    """
    keep = pd.Series(True, index=metrics.index)
    said = []
    group = [metrics["run_id"], metrics["member"]]
    if train_loss_every is not None:
        tl = metrics["metric"] == "train_loss"
        ep = metrics["epoch"].where(tl)
        first = ep.groupby(group).transform("min")
        last = ep.groupby(group).transform("max")
        keep &= ~tl | (metrics["epoch"] % train_loss_every == 0) | (ep == first) | (ep == last)
        said.append(f"train_loss kept every {train_loss_every} epochs (and at each run's first and last)")
    if sv_last or sv_top is not None:
        sv = metrics["metric"] == "dW_sv"
        top = (metrics["index"] <= sv_top).fillna(False).astype(bool) if sv_top is not None else None
        if sv_last:
            ep = metrics["epoch"].where(sv)
            at_last = (ep == ep.groupby(group).transform("max")).fillna(False).astype(bool)
            keep &= ~sv | at_last | (top if top is not None else False)
            said.append("dW_sv kept at each run's last epoch only" if top is None else
                        f"dW_sv kept whole at each run's last epoch, its top {sv_top} values at every other epoch")
        else:
            keep &= ~sv | top
            said.append(f"dW_sv: its top {sv_top} values at every recorded epoch")
    if drop:
        keep &= ~metrics["metric"].isin(drop)
        said.append(f"left out: {', '.join(drop)}")
    return metrics[keep.to_numpy()].reset_index(drop=True), ("; ".join(said) or None)


#: joins the parts of a summary note: this merge's thinning, then the sources' own notes
_EARLIER = ". Before this merge, a source's note said: "


def summary_note(sentence: str | None, sources: list[Source]) -> str | None:
    """This merge's thinning sentence, then each distinct note the sources carried (their rows were
    thinned that way before), or the sources' notes alone when nothing was thinned. Notes already
    merged are split into their parts first, so thinning a table again the same way keeps its note."""
    notes = [p for s in sources if s.provenance.get("summary_note")
             for p in str(s.provenance["summary_note"]).split(_EARLIER)]
    parts = list(dict.fromkeys(([sentence] if sentence else []) + notes))
    return _EARLIER.join(parts) if parts else None


def provenance(sources: list[Source], metrics: pd.DataFrame, runs: pd.DataFrame, note: str | None) -> dict:
    """The merged table's provenance: the last source's, with the sweeps and commands of every
    source joined, and the runs, statuses, run time and metrics counted again."""
    prov = dict(sources[-1].provenance)

    def tagged(s: Source, value, with_query: bool) -> str:
        return (str(value) + (f" [rows where {s.query}]" if with_query and s.query else "")
                + (f" ({s.note})" if s.note else ""))

    prov["sweep_dir"] = "; ".join(tagged(s, s.provenance.get("sweep_dir", s.dir.name), True) for s in sources)
    prov["command"] = "; ".join(tagged(s, s.provenance["command"], False)
                                for s in sources if s.provenance.get("command"))
    for k in JOINED:
        values = [str(s.provenance[k]) for s in sources if s.provenance.get(k) not in (None, "")]
        if values:
            prov[k] = "; ".join(values)
    started = [str(s.provenance["started"]) for s in sources if s.provenance.get("started")]
    if started:
        prov["started"] = min(started)
    if "git_commit" in runs.columns:
        commits = {c for c in runs["git_commit"].dropna().astype(str) if c}
    else:
        commits = {str(c) for s in sources for c in s.provenance.get("run_git_commits", [])}
    prov["run_git_commits"] = sorted(commits)
    prov["runs"] = int(len(runs))
    prov["status"] = ({str(k): int(v) for k, v in runs["status"].value_counts().items()}
                      if "status" in runs.columns else {})
    times = runs.filter(like="time.total_s").apply(pd.to_numeric, errors="coerce")
    prov["run_time_s_total"] = float(times.sum().sum())
    prov["summary_metrics"] = sorted(metrics["metric"].astype(str).unique().tolist())
    if note:
        prov["summary_note"] = note
    else:
        prov.pop("summary_note", None)
    return prov


def _one_run_each(runs: pd.DataFrame) -> tuple[pd.DataFrame, list[str]]:
    """One row per run_id: a finished attempt before the others, else the first listed."""
    if runs.empty or not runs["run_id"].duplicated().any():
        return runs, []
    twice = sorted(runs.loc[runs["run_id"].duplicated(), "run_id"].unique())
    done = runs["status"].isin(DONE_STATUSES) if "status" in runs.columns else pd.Series(False, index=runs.index)
    order = (~done).astype(int).rename("_rank")
    kept = runs.assign(_rank=order).sort_values("_rank", kind="stable").drop_duplicates("run_id")
    kept = kept.sort_index().drop(columns="_rank").reset_index(drop=True)
    return kept, [f"runs.csv: {len(twice)} runs listed by several sources (their rows do not overlap) kept once, "
                  f"a finished attempt first: {', '.join(twice[:3])}{' ...' if len(twice) > 3 else ''}"]


def check_options(train_loss_every: int | None, sv_top: int | None, drop: tuple[str, ...],
                  metrics: pd.DataFrame | None, sv_last: bool) -> None:
    """Refuse thinning options that cannot mean what they say for these tables (``metrics``;
    None: the values alone, before any source is read)."""
    if train_loss_every is not None and train_loss_every < 1:
        raise Refused(f"--train-loss-every {train_loss_every}: give a whole number of epochs >= 1")
    if sv_top is not None and sv_top < 1:
        raise Refused(f"--sv-top {sv_top}: give the number of top singular values to keep, >= 1")
    if metrics is None:
        return
    known = set(metrics["metric"].astype(str))
    for opt, m, asked in (("--train-loss-every", "train_loss", train_loss_every is not None),
                          ("--sv-last/--sv-top", "dW_sv", sv_last or sv_top is not None)):
        if asked and m not in known:
            raise Refused(f"{opt}: no source holds {m} rows; leave the option out")
    unknown = [m for m in drop if m not in known]
    if unknown:
        raise Refused(f"--drop {','.join(unknown)}: no source holds {'it' if len(unknown) == 1 else 'them'}; "
                      f"known: {', '.join(sorted(known))}")


def merge(out: str | Path, sources: list[str], train_loss_every: int | None = None, sv_last: bool = False,
          sv_top: int | None = None, drop: tuple[str, ...] | list[str] = ()) -> list[str]:
    """Union the published tables ``sources`` (``DIR[::QUERY[::NOTE]]``), thin them as asked and
    write ``metrics.parquet``, ``runs.csv`` and ``provenance.json`` into ``out``; returns the report
    lines. Raises :class:`Refused` (nothing written) for a bad source, option or duplicated run."""
    out = Path(out)
    drop = tuple(dict.fromkeys(m.strip() for m in drop if m.strip()))
    if not sources:
        raise Refused("no source; give at least one published table folder SRC[::QUERY[::NOTE]]")
    if out.exists() and not out.is_dir():
        raise Refused(f"{out} is a file; give a folder for the merged table (it is made if missing)")
    check_options(train_loss_every, sv_top, drop, None, sv_last)
    srcs = [read_source(s) for s in sources]
    metrics = pd.concat([s.metrics for s in srcs], ignore_index=True, sort=False)
    problem = duplicates(srcs, metrics)
    if problem:
        raise Refused(problem)
    check_options(train_loss_every, sv_top, drop, metrics, sv_last)
    runs, report = _one_run_each(pd.concat([s.runs for s in srcs], ignore_index=True, sort=False))
    report = [f"{s.spec}: {len(s.metrics)} rows, {len(s.runs)} runs" for s in srcs] + report
    n = len(metrics)
    metrics, sentence = thin(metrics, train_loss_every, sv_last, sv_top, drop)
    if metrics.empty:
        raise Refused(f"--drop {','.join(drop)}: leaves no rows; leave out fewer metrics")
    if sentence:
        report.append(f"thinned: {n - len(metrics)} of {n} rows left out ({sentence})")
    note = summary_note(sentence, srcs)
    prov = provenance(srcs, metrics, runs, note)

    out.mkdir(parents=True, exist_ok=True)
    tmps = {name: out / f".{name}.tmp{os.getpid()}" for name in FILES}
    try:
        metrics.to_parquet(tmps["metrics.parquet"], index=False, compression="zstd", compression_level=19)
        runs.to_csv(tmps["runs.csv"], index=False)
        tmps["provenance.json"].write_text(json.dumps(prov, indent=2))
        with _no_interrupt():  # the three files are replaced together: never new rows beside old runs
            for name, tmp in tmps.items():
                os.replace(tmp, out / name)
    finally:
        for tmp in tmps.values():
            tmp.unlink(missing_ok=True)
    stale = out / "runs.parquet"
    if stale.exists():  # published folders keep runs.csv only; a runs.parquet beside it would be an older table
        stale.unlink()
        report.append(f"{stale} removed (published folders keep runs.csv only)")
    report.append(f"tables written to {out} (metrics.parquet: {len(metrics)} rows, runs.csv: {len(runs)} runs)")
    return report


@contextlib.contextmanager
def _no_interrupt():
    """Ctrl-C (SIGINT) is held back while the block runs, and delivered after it."""
    mask = getattr(signal, "pthread_sigmask", None)
    if mask is None:
        yield
        return
    mask(signal.SIG_BLOCK, {signal.SIGINT})
    try:
        yield
    finally:
        mask(signal.SIG_UNBLOCK, {signal.SIGINT})


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):  # one line, exit code 2
        self.exit(2, f"{self.prog}: error: {message}; see {self.prog} --help\n")


def main(argv=None) -> int:
    """The command line: parse, merge, print the report; 2 when refused, 1 on a file system error."""
    ap = _Parser(prog=PROG, description=__doc__.split("\n")[0].rstrip("."), usage=USAGE)
    ap.add_argument("out", metavar="OUT", help="the merged table's folder (may be one of the sources)")
    ap.add_argument("sources", nargs="+", metavar="SRC[::QUERY[::NOTE]]",
                    help="published table folders; QUERY (pandas) keeps some rows, NOTE says what the source is")
    ap.add_argument("--train-loss-every", type=int, metavar="E",
                    help="keep train_loss every E epochs (and at each run's first and last)")
    ap.add_argument("--sv-last", action="store_true", help="keep dW_sv at each run's last epoch only")
    ap.add_argument("--sv-top", type=int, metavar="K",
                    help="keep the top K dW_sv values at every epoch (with --sv-last: besides the last epoch)")
    ap.add_argument("--drop", default="", metavar="a,b", help="metrics to leave out (comma list)")
    a = ap.parse_args(argv)
    try:
        for line in merge(a.out, a.sources, a.train_loss_every, a.sv_last, a.sv_top, tuple(a.drop.split(","))):
            print(line)
        return 0
    except Refused as e:
        print(f"{PROG}: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"{PROG}: stopped (Ctrl-C); {a.out} is as it was (or holds the whole merge, if it stopped "
              f"after the files were replaced: see its provenance.json)", file=sys.stderr)
        return 130
    except OSError as e:
        print(f"{PROG}: error: {getattr(e, 'filename', None) or a.out}: {e.strerror or e}; "
              f"check the folder (space, permissions) or give another OUT", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
