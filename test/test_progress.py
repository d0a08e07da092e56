"""Progress output (fusion_ros/progress.py): a live bar on a terminal, a few whole lines in a log.

    .venv/bin/python -m pytest -q test/test_progress.py
"""
from __future__ import annotations

import io
import re
import subprocess
import sys
from pathlib import Path

from tqdm import tqdm

from fusion_ros.progress import STEPS, LineProgress, progress

ROOT = Path(__file__).resolve().parents[1]


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_a_log_gets_a_start_line_tenths_and_an_end_line_with_the_rate():
    log = io.StringIO()
    items = list(LineProgress(range(1000), total=None, desc="eval data", unit="pair", initial=0, file=log,
                              min_interval_s=0.0))
    assert items == list(range(1000))
    text = log.getvalue()
    assert "\r" not in text
    lines = text.splitlines()
    assert len(lines) == STEPS + 1  # start, 10 %, ..., 90 %, end
    assert lines[0] == "eval data: started at 0/1000"
    assert lines[1].startswith("eval data: 100/1000 pair (10 %), ") and lines[1].endswith(" pair/s")
    assert re.fullmatch(r"eval data: finished 1000/1000 pair in \d+\.\d s, [0-9.e+-]+ pair/s", lines[-1]), lines[-1]


def test_updated_by_hand_with_postfix_resumed_and_unknown_totals():
    log = io.StringIO()
    bar = progress(total=200, initial=50, desc="train", unit="step", file=log)
    assert isinstance(bar, LineProgress) and bar.n == 50
    bar.min_interval_s = 0.0
    bar.set_postfix({"fuse": "0.31"})
    for _ in range(150):
        bar.update(1)
    bar.close()
    bar.close()  # once only
    lines = log.getvalue().splitlines()
    assert lines[0] == "train: started at 50/200"
    assert [line.split(" step")[0] for line in lines[1:-1]] == [f"train: {n}/200" for n in (60, 80, 100, 120, 140,
                                                                                            160, 180)]
    assert all(line.endswith("[fuse=0.31]") for line in lines[1:])
    assert lines[-1].startswith("train: finished 200/200 step in ")
    unknown = io.StringIO()
    bar = progress(desc="cache", unit="msg", file=unknown)
    bar.update(7)
    bar.close()
    assert unknown.getvalue().splitlines() == ["cache: started", unknown.getvalue().splitlines()[1]]
    assert unknown.getvalue().splitlines()[1].startswith("cache: finished 7 msg in ")


def test_a_short_stage_gets_its_start_and_end_lines_only():
    log = io.StringIO()
    for _ in progress(range(1000), desc="sample bag", unit="msg", file=log):
        pass
    lines = log.getvalue().splitlines()
    assert len(lines) == 2 and lines[0] == "sample bag: started at 0/1000", lines
    assert lines[1].startswith("sample bag: finished 1000/1000 msg in ")


def test_a_terminal_gets_the_live_bar_and_disabled_is_silent():
    terminal = Terminal()
    bar = progress(range(5), desc="eval", file=terminal)
    assert isinstance(bar, tqdm)
    assert list(bar) == list(range(5)) and "\r" in terminal.getvalue()
    quiet = io.StringIO()
    assert list(progress(range(5), disable=True, file=quiet)) == list(range(5)) and quiet.getvalue() == ""


def test_commands_piped_into_a_log_write_lines_not_redraws(tmp_path):
    """Issue 21 item 7: `make demo` piped into a file wrote hundreds of carriage-return tqdm updates per
    stage. A command's stderr in a pipe (not a terminal) gets a few whole lines."""
    cmd = [sys.executable, "-m", "fusion_ros.bag.sample", str(tmp_path / "bag"), "--seconds", "4", "--height", "64",
           "--width", "80"]
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "\r" not in proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.startswith("sample bag: ")]
    assert 2 <= len(lines) <= STEPS + 1 and re.match(r"sample bag: finished (\d+)/\1 msg in ", lines[-1]), proc.stderr


def test_writers_asked_for_no_progress_write_none(tmp_path, capfd):
    from fusion_ros.bag.sample import make_sample_bag
    from fusion_ros.synthetic import write_dataset

    make_sample_bag(tmp_path / "bag", seconds=0.5, height=32, width=40, progress=False)
    write_dataset(tmp_path / "scenes", count=2, seed=0, height=32, width=40, progress=False)
    assert capfd.readouterr().err == ""


def test_every_command_reports_progress_through_the_helper():
    """A direct tqdm bar would bring the carriage-return flood back into logs."""
    direct = [f"{path.relative_to(ROOT)}:{n}" for folder in ("fusion_ros", "training", "benchmarks")
              for path in sorted((ROOT / folder).rglob("*.py")) if path.name != "progress.py"
              for n, line in enumerate(path.read_text().splitlines(), 1) if re.search(r"\btqdm\b", line)]
    assert not direct, f"use fusion_ros.progress.progress instead of tqdm: {direct}"
