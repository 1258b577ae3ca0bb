"""Observation tables of a run: appended in chunks as the run goes, never rewritten.

A run directory's observations live in ``metrics/part-NNNNN.parquet``, one file per flush
(the job flushes at every checkpoint and at the end). Columns:

- ``run_id`` (dictionary-encoded string), ``member`` (int16: the member within the run),
- ``epoch`` (int32; rows whose metric starts with ``floss_`` count flossing epochs,
  all other rows training epochs),
- ``metric`` (dictionary-encoded string), ``index`` (int32, null for scalars; numbers
  exponents and singular values from 1), ``value`` (float64).

The run's settings are stored once, in ``summary.json`` (``columns``), never on the rows.
Each part is written to a temporary name and renamed, so a file is complete or absent.
The checkpoint records how many parts existed when it was written; a resumed run removes
the parts written after it (by the process that was killed) and recomputes their rows,
so a killed run loses at most the rows since its last checkpoint and never corrupts the
earlier ones.
"""
from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Callable

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import torch

from flossrepro.constants import METRICS_DIR
from flossrepro.errors import TableError
from flossrepro.store.summary import removed_on_failure

__all__ = ["Recorder", "SCHEMA", "read_run", "part_files", "metric_specs", "metrics_sql", "select_metrics"]

SCHEMA = pa.schema([
    ("run_id", pa.dictionary(pa.int32(), pa.string())),
    ("member", pa.int16()),
    ("epoch", pa.int32()),
    ("metric", pa.dictionary(pa.int32(), pa.string())),
    ("index", pa.int32()),
    ("value", pa.float64()),
])
_PART = re.compile(r"^part-(\d{5,})\.parquet$")


_SPEC = re.compile(r"^([A-Za-z0-9_.]+)(?:\[(\d+)(?::(\d+))?\])?(?:@(\d+))?$")


def _union(ranges) -> tuple[tuple[int, int], ...]:
    """Sorted, merged index ranges (overlapping or adjacent ranges become one)."""
    out: list[list[int]] = []
    for lo, hi in sorted(ranges):
        if out and lo <= out[-1][1] + 1:
            out[-1][1] = max(out[-1][1], hi)
        else:
            out.append([lo, hi])
    return tuple((lo, hi) for lo, hi in out)


def metric_specs(specs) -> dict[str, tuple[tuple[tuple[int, int], ...] | None, int | None]]:
    """Parse metric selections into ``{name: (index ranges or None, epoch block or None)}``.

    ``"name"`` keeps every row; ``"name[i]"`` / ``"name[i:j]"`` only ``index`` i..j (1-based,
    inclusive: ``lyap_after_floss[1]`` keeps lambda_1 of each spectrum); ``"name@s"`` only the
    first and the last epoch of every block of ``s`` epochs (0, s-1, s, 2s-1, ...: the first and
    the last epoch of a trace whose length is a multiple of ``s``, at 2/s of the rows). Several
    selections of one metric are merged: the union of their indices (``s[1]``, ``s[20]`` keep
    indices 1 and 20 only; a selection without indices keeps all), and the epoch block only
    when they agree."""
    out: dict[str, tuple[tuple[tuple[int, int], ...] | None, int | None]] = {}
    for spec in specs:
        m = _SPEC.match(str(spec))
        if m is None:
            raise ValueError(f"metric selection {spec!r} is not 'name', 'name[i]', 'name[i:j]' or 'name@s'")
        name, lo, hi, every = m.group(1), m.group(2), m.group(3), m.group(4)
        rng = None if lo is None else ((int(lo), int(hi or lo)),)
        block = None if every is None or int(every) <= 1 else int(every)
        if name in out:
            r0, b0 = out[name]
            rng = None if r0 is None or rng is None else r0 + rng
            block = block if b0 == block else None
        out[name] = (None if rng is None else _union(rng), block)
    return out


def metrics_sql(specs) -> str:
    """A SQL condition on ``metric``, ``index`` and ``epoch`` for :func:`metric_specs` selections."""
    parts, plain = [], []
    for name, (rng, block) in metric_specs(specs).items():
        q = "'" + name.replace("'", "''") + "'"
        if rng is None and block is None:
            plain.append(q)
            continue
        cond = [f"metric = {q}"]
        if rng is not None:
            cond.append("(" + " OR ".join(f'"index" BETWEEN {lo} AND {hi}' for lo, hi in rng) + ")")
        if block is not None:
            cond.append(f"(epoch % {block} = 0 OR epoch % {block} = {block - 1})")
        parts.append("(" + " AND ".join(cond) + ")")
    if plain:
        parts.append(f"metric IN ({', '.join(plain)})")
    return "(" + " OR ".join(parts) + ")" if parts else "FALSE"


def select_metrics(df, specs):
    """The rows of a tidy frame that :func:`metric_specs` selections keep."""
    import pandas as pd

    keep = pd.Series(False, index=df.index)
    for name, (rng, block) in metric_specs(specs).items():
        m = df["metric"] == name
        if rng is not None:
            idx = df["index"]
            inside = pd.Series(False, index=df.index)
            for lo, hi in rng:
                inside |= (idx >= lo) & (idx <= hi)
            m &= idx.notna() & inside
        if block is not None:
            e = df["epoch"] % block
            m &= (e == 0) | (e == block - 1)
        keep |= m
    return df[keep]


def part_files(run_dir: str | Path) -> list[Path]:
    """The run's table parts in write order."""
    d = Path(run_dir) / METRICS_DIR
    if not d.is_dir():
        return []
    parts = [(int(m.group(1)), p) for p in d.iterdir() if (m := _PART.match(p.name))]
    return [p for _, p in sorted(parts)]


def read_run(run_dir: str | Path, metrics: list[str] | None = None):
    """All observation rows of one run as a pandas DataFrame (``metrics``: only these)."""
    import pandas as pd

    frames = []
    for p in part_files(run_dir):
        try:
            t = pq.read_table(p, filters=[("metric", "in", list(metrics))] if metrics else None)
        except Exception as e:
            raise TableError(f"{p} is unreadable ({type(e).__name__}: {e}); move it away (the run's other "
                             f"parts stay valid) or rerun the run into a fresh directory") from e
        frames.append(t.to_pandas())
    if not frames:
        return pd.DataFrame({c: pd.Series(dtype="object" if c in ("run_id", "metric") else "float64")
                             for c in SCHEMA.names})
    df = pd.concat(frames, ignore_index=True)
    for c in ("run_id", "metric"):
        df[c] = df[c].astype(str)
    df["index"] = df["index"].astype("Int64")
    return df


def part_problems(run_dir: str | Path, parts: int | None, part_rows: list[int] | None) -> list[str]:
    """What is wrong with the table parts a run recorded (``parts`` written, ``part_rows`` rows
    each, from its summary.json): a part missing, unreadable, or with other row counts."""
    if parts is None:
        return []
    out = []
    d = Path(run_dir) / METRICS_DIR
    for i in range(int(parts)):
        p = d / f"part-{i:05d}.parquet"
        if not p.exists():
            out.append(f"{p.name} is missing")
            continue
        try:
            n = pq.read_metadata(p).num_rows
        except Exception as e:  # noqa: BLE001 - truncated, not parquet
            out.append(f"{p.name} is unreadable ({type(e).__name__})")
            continue
        if part_rows is not None and i < len(part_rows) and n != part_rows[i]:
            out.append(f"{p.name} has {n} rows, {part_rows[i]} were written")
    return out


class Recorder:
    """Buffers a run's observation rows column-wise and appends them as table parts.

    ``add(epoch, metric, values[R])`` records one value per member, ``add_vectors(epoch,
    metric, values[R, n])`` a vector per member with ``index`` 1..n. ``latest(metric,
    index)`` gives each member's most recent value (for summaries and progress lines)
    without reading the tables back. Listeners (``listeners.append(fn)``) see every
    record as ``fn(epoch, metric, index, values)`` with ``values: np.ndarray [R]`` or
    ``[R, n]`` (e.g. the W&B sink).
    """

    def __init__(self, run_dir: str | Path, run_id: str, n_members: int):
        self.dir = Path(run_dir) / METRICS_DIR
        self.run_id = run_id
        self.R = int(n_members)
        self.parts = 0                       # parts written so far
        self.part_rows: list[int] | None = []  # the rows of each part written (None: a checkpoint without them)
        self._latest: dict[tuple[str, str | None], np.ndarray] = {}  # (metric, None | 'vector')
        self._buf: list[tuple[int, str, bool | np.ndarray, np.ndarray]] = []   # (epoch, metric, vector? or its index, values)
        self.listeners: list[Callable] = []

    # -- recording ------------------------------------------------------------------
    @staticmethod
    def _np(values) -> np.ndarray:
        if isinstance(values, torch.Tensor):
            return values.detach().to("cpu", torch.float64).numpy()
        return np.asarray(values, dtype=np.float64)

    def add(self, epoch: int, metric: str, values) -> None:
        """``values: [R]``, one per member."""
        v = self._np(values).reshape(self.R)
        self._buf.append((int(epoch), metric, False, v))
        self._latest[(metric, None)] = v
        for fn in self.listeners:
            fn(int(epoch), metric, None, v)

    def add_vectors(self, epoch: int, metric: str, values, index=None) -> None:
        """``values: [R, n]``, recorded with ``index`` 1..n (or the ``n`` integers ``index``
        gives, e.g. the sizes m of the tangent systems a condition number was measured on)."""
        v = self._np(values).reshape(self.R, -1)
        if index is not None:
            index = np.asarray(index, dtype=np.int32).reshape(-1)
            if index.size != v.shape[1]:
                raise ValueError(f"index has {index.size} entries for {v.shape[1]} values per member")
        self._buf.append((int(epoch), metric, True, v) if index is None else (int(epoch), metric, index, v))
        self._latest[(metric, "vector")] = v
        for fn in self.listeners:
            fn(int(epoch), metric, 1, v)

    def latest(self, metric: str | tuple[str, ...], index: int | None = None) -> list[float]:
        """Each member's most recent value of ``metric`` (the first of several names that has one)."""
        for m in ((metric,) if isinstance(metric, str) else metric):
            if index is None:
                if (m, None) in self._latest:
                    return self._latest[(m, None)].tolist()
                continue
            v = self._latest.get((m, "vector"))
            if v is not None and v.shape[1] >= index:
                return v[:, index - 1].tolist()
        return [float("nan")] * self.R

    # -- writing --------------------------------------------------------------------
    def table(self) -> pa.Table:
        """The buffered rows as an Arrow table (SCHEMA)."""
        R = self.R
        names: dict[str, int] = {}
        counts, epochs, codes, members, index, values = [], [], [], [], [], []
        for epoch, metric, vec, v in self._buf:
            code = names.setdefault(metric, len(names))
            n = v.size
            counts.append(n)
            epochs.append(epoch)
            codes.append(code)
            values.append(v.reshape(-1))
            if vec is not False:
                k = v.shape[1]
                members.append(np.repeat(np.arange(R, dtype=np.int16), k))
                index.append(np.tile(np.arange(1, k + 1, dtype=np.int32) if vec is True else vec, R))
            else:
                members.append(np.arange(R, dtype=np.int16))
                index.append(np.zeros(R, dtype=np.int32))  # masked below
        if not self._buf:
            return SCHEMA.empty_table()
        counts_a = np.asarray(counts)
        is_vec = np.repeat(np.asarray([b[2] is not False for b in self._buf]), counts_a)
        total = int(counts_a.sum())
        cols = [
            pa.DictionaryArray.from_arrays(pa.array(np.zeros(total, dtype=np.int32)), pa.array([self.run_id])),
            pa.array(np.concatenate(members), type=pa.int16()),
            pa.array(np.repeat(np.asarray(epochs, dtype=np.int32), counts_a), type=pa.int32()),
            pa.DictionaryArray.from_arrays(pa.array(np.repeat(np.asarray(codes, dtype=np.int32), counts_a)),
                                           pa.array(list(names), type=pa.string())),
            pa.array(np.concatenate(index), type=pa.int32(), mask=~is_vec),
            pa.array(np.concatenate(values), type=pa.float64()),
        ]
        return pa.Table.from_arrays(cols, schema=SCHEMA)

    def flush(self) -> Path | None:
        """Append the buffered rows as the next part (atomically); None when nothing is buffered."""
        if not self._buf:
            return None
        self.dir.mkdir(parents=True, exist_ok=True)
        path = self.dir / f"part-{self.parts:05d}.parquet"
        tmp = path.with_name(path.name + ".tmp")
        table = self.table()
        with removed_on_failure(tmp):
            pq.write_table(table, tmp, compression="zstd")
            os.replace(tmp, path)
        self.parts += 1
        if self.part_rows is not None:
            self.part_rows.append(table.num_rows)
        self._buf.clear()
        return path

    # -- checkpoint state -------------------------------------------------------------
    def state_dict(self) -> dict:
        """Small: the number of parts written and the latest values (no rows)."""
        if self._buf:
            raise RuntimeError("flush() the recorder before checkpointing it")
        return {"parts": self.parts, "part_rows": self.part_rows, "latest": dict(self._latest)}

    def load_state_dict(self, state: dict) -> list[Path]:
        """Resume: drop the parts written after the checkpoint (they are recomputed); returns them."""
        self.parts = int(state["parts"])
        rows = state.get("part_rows")
        self.part_rows = (list(rows[:self.parts]) if rows is not None and len(rows) >= self.parts
                          else [] if self.parts == 0 else None)
        self._latest = dict(state["latest"])
        self._buf.clear()
        dropped = [p for p in part_files(self.dir.parent) if int(_PART.match(p.name).group(1)) >= self.parts]
        for p in dropped:
            p.unlink()
        for p in self.dir.glob("*.tmp") if self.dir.is_dir() else []:
            p.unlink()
        return dropped
