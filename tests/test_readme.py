"""The README and the docs say what the code does.

- Every command in the ``bash`` blocks of README.md and docs/*.md (but docs/slurm.md, whose
  commands tests/test_slurm_cluster.py runs on a real cluster, and docs/library.md, the
  library's reference) runs as written. Commands of the ``flossrepro`` command line are checked
  at the scale they name with ``--dry-run`` (every job's settings and run directory, nothing
  made), and single jobs also run for real at smoke scale. The "your own sweep" block runs for
  real at smoke scale in a temporary folder, as does ``scripts/reproduce.sh`` (into temporary
  RESULTS and MULTIRUN folders). ``make`` lines are checked with ``make -n``.
- The README's library example runs and gives the shapes its comments name.
- The README's verdict tables and counts are those of results/REPORT.md and
  results/REPORT-lowrank.md.
- Every repository path, relative link and ``flossrepro.*`` name in README.md and docs/*.md
  exists.
"""
from __future__ import annotations

import importlib
import os
import re
import shlex
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()
DOCS = sorted((ROOT / "docs").glob("*.md"))
# docs whose bash blocks this file runs (slurm.md: tests/test_slurm_cluster.py)
COMMAND_DOCS = [ROOT / "README.md"] + [d for d in DOCS if d.name not in ("slurm.md", "library.md")]
VERDICTS = ("reproduced", "inconclusive", "not reproduced", "not run", "differs from the paper", "not testable as stated",
            "answered")


def blocks(text: str, lang: str = "bash") -> list[list[str]]:
    out = []
    for b in re.findall(rf"```{lang}\n(.*?)```", text, flags=re.S):
        lines = []
        for line in b.splitlines():
            line = re.sub(r"\s+#\s.*$", "", line).strip()
            if line and not line.startswith("#"):
                lines.append(line)
        out.append(lines)
    return out


ALL_BLOCKS = [b for d in COMMAND_DOCS for b in blocks(d.read_text())]
COMMANDS = list(dict.fromkeys(c for b in ALL_BLOCKS for c in b))  # each distinct command once
OWN_SWEEP = next(b for b in blocks(README) if any("flossrepro.figures --results" in c for c in b))


def _env():
    return dict(os.environ, FLOSSREPRO_NATIVE=os.environ.get("FLOSSREPRO_NATIVE", "0"), WANDB_MODE="disabled")


def _flossrepro_args(c: str) -> list[str] | None:
    words = shlex.split(c.replace("<p>", "debug"))
    if words[0].endswith("python") and words[1:3] == ["-m", "flossrepro"]:
        return words[3:]
    if words[0].endswith("flossrepro"):
        return words[1:]
    return None


def sh(args, cwd, timeout=300, env=None):
    return subprocess.run(args, cwd=cwd, capture_output=True, text=True, timeout=timeout, env=env or _env())


def test_readme_lists_the_commands_we_check():
    readme = [c for b in blocks(README) for c in b]
    assert "make run" in " ".join(readme) and "make test" in " ".join(readme)
    assert any("task.delay=70 flossing=during" in c for c in readme)
    assert any("submitit_slurm" in c for c in readme)
    assert len(OWN_SWEEP) == 4
    kinds = {("make" if c.startswith("make ") else "flossrepro" if _flossrepro_args(c) is not None else
              "script" if c.startswith(("scripts/", "RESULTS=", "eval ")) else "module") for c in COMMANDS}
    assert kinds == {"make", "flossrepro", "script", "module"}, kinds


@pytest.mark.parametrize("c", [c for c in COMMANDS if _flossrepro_args(c) is not None and c not in OWN_SWEEP])
def test_flossrepro_command_as_written(c, tmp_path, monkeypatch, capsys):
    """Checked in this process through the command's entry point (--dry-run at the scale written);
    single jobs also run as a real command at smoke scale."""
    from flossrepro.run import cli

    monkeypatch.chdir(tmp_path)
    args = _flossrepro_args(c)
    py = [sys.executable, "-m", "flossrepro"]
    if {"--cfg", "--help", "-h"} & set(args):
        p = sh(py + args, tmp_path)
        assert p.returncode == 0 and p.stdout.strip(), p.stdout[-1000:] + p.stderr[-1000:]
        return
    rc = cli.main([a for a in args if a != "--dry-run"] + ["--dry-run"])
    out = capsys.readouterr()
    assert rc == 0, f"{c}\n{out.out[-2000:]}\n{out.err[-2000:]}"
    assert not (tmp_path / "outputs").exists() and not (tmp_path / "multirun").exists()
    sweep = "-m" in args or any(a.startswith("+experiment=") for a in args)
    small = [a for a in args if not a.startswith("scale=") and a != "--plan"] + ["scale=smoke", "logger=none",
                                                                                "progress=none"]
    if not sweep and cli.main(small + ["--dry-run"]) == 0:
        # the job itself, at smoke scale (where its settings fit smoke sizes: task.delay=70 does not)
        p = sh(py + small, tmp_path)
        assert p.returncode == 0 and "[flossrepro] complete" in p.stdout, f"{c}\n{p.stdout[-2000:]}\n{p.stderr[-2000:]}"


def test_figures_and_report_from_your_own_sweep(tmp_path):
    for c in OWN_SWEEP:
        words = shlex.split(c)
        assert words[0] == ".venv/bin/python"
        p = sh([sys.executable, *words[1:], *(["logger=none"] if words[2] == "flossrepro" else [])], tmp_path,
               timeout=600)
        assert p.returncode == 0, f"{c}\n{p.stdout[-2000:]}\n{p.stderr[-2000:]}"
    assert (tmp_path / "mine/fig1/metrics.parquet").exists() and (tmp_path / "mine/fig1/fig1.png").exists()
    assert (tmp_path / "mine/REPORT.md").exists()


def test_reproduce_script_into_folders_of_your_choice(tmp_path):
    c = next(c for c in COMMANDS if c.startswith("RESULTS=") and "reproduce.sh" in c)
    words = shlex.split(c)
    env = _env()
    env.update(RESULTS=str(tmp_path / "mine"), MULTIRUN=str(tmp_path / "multirun"), PYTHON=sys.executable)
    p = sh([str(ROOT / words[1]), *words[2:]], ROOT, timeout=600, env=env)
    assert p.returncode == 0, p.stdout[-2000:] + p.stderr[-2000:]
    assert (tmp_path / "mine/fig1/metrics.parquet").exists() and (tmp_path / "mine/fig1/provenance.json").exists()
    # the plain forms name experiments that exist
    for plain in (c for c in COMMANDS if c.startswith("scripts/reproduce.sh")):
        assert (ROOT / "flossrepro/conf/experiment" / f"{shlex.split(plain)[1]}.yaml").exists(), plain


@pytest.mark.parametrize("c", [c for c in COMMANDS if c.startswith("make ")])
def test_make_targets_exist(c):
    p = sh(["make", "-n", *shlex.split(c)[1:]], ROOT)
    assert p.returncode == 0, p.stderr


def test_library_example_runs():
    (code,) = re.findall(r"```python\n(.*?)```", README, flags=re.S)
    ns: dict = {}
    exec(compile(code, "README.md", "exec"), ns)
    assert tuple(ns["lam"].shape) == (10, 8) and tuple(ns["loss"].shape) == (10,)
    assert ns["loss"].isfinite().all()


# ---------------------------------------------------------------- verdicts


def report_verdicts(path: Path) -> dict[str, str]:
    """``{claim id: verdict}`` from a report's claims table."""
    text = path.read_text().split("## Claims", 1)[1].split("\n## ", 1)[0]
    out = {}
    for line in text.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if line.startswith("| ") and re.fullmatch(r"\*\*[a-z ]+\*\*", cells[-1]):
            out[cells[0]] = cells[-1].strip("*")
    return out


def readme_verdicts() -> dict[str, str]:
    """``{claim id: verdict}`` from the README's tables whose last column is the verdicts
    (cells like ``reproduced: 1B+, 1C; inconclusive: 1B``)."""
    out: dict[str, str] = {}
    header = None
    for line in README.splitlines():
        if not line.startswith("|"):
            header = None
            continue
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if header is None:
            header = cells
            continue
        if not header[-1].startswith("verdicts") or set(line) <= set("|-: "):
            continue
        for part in cells[-1].split(";"):
            verdict, ids = part.split(":")
            assert verdict.strip() in VERDICTS, line
            for i in ids.split(","):
                assert i.strip() not in out, f"{i} twice in the README"
                out[i.strip()] = verdict.strip()
    return out


def test_readme_verdicts_are_the_reports():
    reports = [ROOT / "results/REPORT.md", ROOT / "results/REPORT-lowrank.md"]
    want = {k: v for r in reports for k, v in report_verdicts(r).items()}
    assert len(want) >= 40
    assert readme_verdicts() == want
    text = " ".join(README.split())
    for r in reports:
        n = Counter(report_verdicts(r).values())
        line = f"{sum(n.values())} claims: " + ", ".join(f"{n[v]} {v}" for v in VERDICTS if n[v])
        assert line in text, f"README lacks '{line}' ({r.name})"


# ---------------------------------------------------------------- paths, links, names

DOC_FILES = [ROOT / "README.md", *DOCS]
PATH_RE = re.compile(r"(?<![\w./$~-])((?:\.ci|flossrepro|scripts|tests|docs|conf|experiments|results)/[\w./+*<>{}-]*)")
MADE_LATER = {"flossrepro/engine/csrc/build/"}  # made by the first build


@pytest.mark.parametrize("doc", DOC_FILES, ids=lambda p: p.name)
def test_paths_and_links_exist(doc):
    text = doc.read_text()
    missing = []
    for p in PATH_RE.findall(text):
        p = p.rstrip(".,")
        if re.search(r"[<>*{}]", p) or p in MADE_LATER:
            continue
        if not (ROOT / p).exists():
            missing.append(p)
    for target in re.findall(r"\]\(([^)\s]+)\)", text):
        if not re.match(r"[a-z]+:|#", target) and not (doc.parent / target.split("#")[0]).exists():
            missing.append(target)
    assert not missing, f"{doc.name} names paths that do not exist: {sorted(set(missing))}"


def _resolve(name: str) -> bool:
    parts = name.split(".")
    for i in range(len(parts), 0, -1):
        try:
            obj = importlib.import_module(".".join(parts[:i]))
        except ModuleNotFoundError:
            continue
        try:
            for a in parts[i:]:
                obj = getattr(obj, a)
        except AttributeError:
            return False
        return True
    return False


@pytest.mark.parametrize("doc", DOC_FILES, ids=lambda p: p.name)
def test_dotted_names_exist(doc):
    names = set(re.findall(r"(?<![\w./-])(flossrepro(?:\.\w+)+)", doc.read_text()))
    missing = sorted(n for n in names if not _resolve(n))
    assert not missing, f"{doc.name} names what the package does not have: {missing}"
