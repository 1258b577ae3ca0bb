"""Faults, second round: a later stage that fails is reported and changes the exit status; stale
state is visible; tools do not claim what they did not do."""
from __future__ import annotations

from pathlib import Path

from flossrepro.run import sweep as SW


def test_a_sweep_whose_aggregate_fails_exits_non_zero(tmp_path, monkeypatch):
    from flossrepro.report import aggregate

    def boom(sd, *a, **k):
        raise OverflowError("Python int too large to convert to C long")

    monkeypatch.setattr(aggregate, "write", boom)
    run = tmp_path / "a"
    run.mkdir()
    (run / "summary.json").write_text('{"status": "complete"}')
    lines: list[str] = []
    code = SW.finish([tmp_path], [run], False, print_fn=lines.append)
    assert code == 1, lines
    assert any("could not aggregate" in line for line in lines) and any("exit status 1" in line for line in lines)
