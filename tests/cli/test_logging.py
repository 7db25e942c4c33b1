"""Logs fit for workflow engines: a few progress lines when nobody watches, the omnicell logger follows scanpy."""

from __future__ import annotations

import logging
import os
import subprocess
import sys

import pytest

import omnicell as oc
from omnicell._core import progress as _progress
from omnicell._core.log import get_logger

SRC = os.path.dirname(os.path.dirname(oc.__file__))


def test_import_installs_no_handler_and_warns_nothing():
    code = (
        "import warnings, logging; warnings.simplefilter('error');"
        "import omnicell; logger = logging.getLogger('omnicell');"
        "assert logger.handlers == [], logger.handlers; print(logger.getEffectiveLevel())"
    )
    result = subprocess.run([sys.executable, "-W", "error", "-c", code], capture_output=True, text=True,
                            env={**os.environ, "PYTHONPATH": SRC}, check=False)  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert result.stderr == "" and result.stdout.strip() == str(logging.WARNING)


def test_logger_follows_scanpy_verbosity_unless_set():
    import scanpy as sc

    saved = sc.settings.verbosity
    logger = get_logger()
    try:
        oc.settings.verbosity = None
        sc.settings.verbosity = "info"
        assert logger.isEnabledFor(logging.INFO)
        sc.settings.verbosity = "warning"
        assert not logger.isEnabledFor(logging.INFO) and logger.isEnabledFor(logging.WARNING)
        oc.settings.verbosity = "DEBUG"  # an explicit level wins over scanpy's
        assert logger.isEnabledFor(logging.DEBUG)
    finally:
        oc.settings.verbosity = None
        sc.settings.verbosity = saved


@pytest.fixture
def log_lines(caplog):
    oc.settings.verbosity = "INFO"
    caplog.set_level(logging.INFO, logger="omnicell")
    yield caplog
    oc.settings.verbosity = None


def test_non_interactive_progress_logs_every_tenth(log_lines, monkeypatch):
    monkeypatch.setattr(_progress, "interactive", lambda: False)
    oc.settings.progress_bar = True
    with _progress.progress(total=1000, desc="work", unit="cells") as bar:
        for _ in range(1000):
            bar.update(1)
    lines = [record.getMessage() for record in log_lines.records if record.getMessage().startswith("work")]
    assert len(lines) == 10
    assert lines[0].startswith("work: 100/1,000 cells (10%)") and lines[-1].startswith("work: 1,000/1,000 cells (100%)")


def test_slow_work_logs_every_30_seconds(log_lines, monkeypatch):
    clock = iter(range(0, 10_000, 7))  # each call of the clock is 7 s later
    monkeypatch.setattr(_progress.time, "monotonic", lambda: next(clock))
    monkeypatch.setattr(_progress, "interactive", lambda: False)
    bar = _progress.progress(total=10_000, desc="slow", unit="steps")
    for _ in range(20):
        bar.update(1)  # 0.2% of the work in 140 s: lines only by time
    bar.close()
    lines = [record.getMessage() for record in log_lines.records if record.getMessage().startswith("slow")]
    # the clock reads 0 at the start and 7 s more at each update: a line once 30 s have passed since
    # the last one (updates 5, 10, 15, 20); close() adds none, the last update was logged
    expected = [f"slow: {n}/10,000 steps (0%) in {7 * n:.1f} s, {n / (7 * n):,.1f} steps/s" for n in (5, 10, 15, 20)]
    assert lines == expected


def test_interactive_terminal_gets_a_bar_and_no_log(log_lines, monkeypatch):
    monkeypatch.setattr(_progress, "interactive", lambda: True)
    oc.settings.progress_bar = True
    bar = _progress.progress(range(50), desc="bar", unit="it")
    assert bar._bar is not None
    assert sum(1 for _ in bar) == 50
    assert not [r for r in log_lines.records if r.getMessage().startswith("bar")]
    oc.settings.progress_bar = False
    assert _progress.progress(total=5)._bar is None  # settings.progress_bar=False: no bar


def test_non_interactive_embed_writes_a_short_log(tmp_path):
    """`omnicell embed` on a few hundred cells, standard error a pipe (as under Galaxy or Nextflow)."""
    import anndata as ad

    from conftest import STARMAP as source

    path = tmp_path / "cells.h5ad"
    ad.read_h5ad(source)[:300].copy().write_h5ad(path)
    result = subprocess.run(
        [sys.executable, "-m", "omnicell", "embed", str(path), "-o", str(tmp_path / "out.h5ad"),
         "--n-genes", "64", "--batch-size", "8"],
        capture_output=True, text=True, env={**os.environ, "PYTHONPATH": SRC, "OMP_NUM_THREADS": "1"}, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    lines = result.stderr.strip().splitlines()
    progress = [line for line in lines if line.startswith("omnicell: embed_cells: ") and "%)" in line]
    # 38 batches of 8 cells: one line per tenth at most, not one per batch
    assert 5 <= len(progress) <= 11, result.stderr
    assert progress[-1].startswith("omnicell: embed_cells: 300/300 cells (100%)")
    assert len(lines) <= 16, result.stderr
    assert all(line.startswith("omnicell: ") for line in lines), result.stderr
    assert result.stdout.startswith("wrote ")
