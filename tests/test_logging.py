"""A script sees omnicell's progress at INFO, as scanpy's users expect: a handler to stderr, never a duplicate."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import textwrap

import pytest

import omnicell as oc

SRC = os.path.dirname(os.path.dirname(oc.__file__))

# 200 cells in batches of 20 under a clock that never moves: one progress line per batch (each a tenth)
EMBED = """
import sys
import omnicell as oc
from omnicell._core import progress
progress.time.monotonic = lambda: 100.0
oc.settings.batch_size = 20
model = oc.models.load("omnicell-tiny")
adata = oc.datasets.pbmc68k_reduced()[:200].copy()
oc.pp.tokenize(adata, model, n_genes=64)
def embed(tag):
    print(tag, file=sys.stderr, flush=True)
    oc.tl.embed_cells(adata, model)
"""

PROGRESS = re.compile(r"^embed_cells: ([\d,]+)/200 cells \((\d+)%\) in [\d.]+ s(?:, .*)?$", re.MULTILINE)


def _run(code: str, **env: str) -> subprocess.CompletedProcess:
    environment = {key: value for key, value in os.environ.items() if key != "OMNICELL_VERBOSITY"}
    environment.update(PYTHONPATH=SRC, OMP_NUM_THREADS="1", **env)
    result = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(EMBED) + textwrap.dedent(code)],
        capture_output=True, text=True, env=environment, check=False, timeout=600,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    return result


@pytest.mark.slow
def test_piped_script_logs_progress_at_info_and_nothing_at_warning():
    result = _run("""
        embed("== warning")
        oc.settings.verbosity = "info"
        embed("== info")
        oc.settings.verbosity = "warning"
        embed("== warning again")
    """)
    _, at_warning, at_info, at_warning_again = re.split(r"^== .*$", result.stderr, flags=re.MULTILINE)
    assert not PROGRESS.search(at_warning) and not PROGRESS.search(at_warning_again)
    shares = [int(share) for _, share in PROGRESS.findall(at_info)]
    assert shares == list(range(10, 101, 10))  # exactly one line per tenth, no duplicate
    assert [done for done, _ in PROGRESS.findall(at_info)][-1] == "200"
    assert "embed_cells" not in result.stdout


@pytest.mark.slow
def test_environment_variable_sets_the_level():
    result = _run('embed("== info")', OMNICELL_VERBOSITY="INFO")
    assert len(PROGRESS.findall(result.stderr)) == 10


@pytest.mark.slow
def test_application_logging_wins_and_nothing_is_written_twice():
    result = _run("""
        import logging
        logging.basicConfig(stream=sys.stdout, level=logging.INFO, format="app %(name)s %(message)s")
        oc.settings.verbosity = "info"
        embed("== info")
    """)
    assert not PROGRESS.search(result.stderr)  # not through omnicell's own handler as well
    lines = "\n".join(line.removeprefix("app omnicell ") for line in result.stdout.splitlines())
    assert len(PROGRESS.findall(lines)) == 10


def test_rate_is_in_the_progress_line(caplog, monkeypatch):
    from omnicell._core import progress

    clock = iter([0.0, 4.0, 4.0])  # start, then the update and the close 4 s later
    monkeypatch.setattr(progress.time, "monotonic", lambda: next(clock))
    monkeypatch.setattr(progress, "interactive", lambda: False)
    caplog.set_level("INFO", logger="omnicell")
    with progress.progress(total=100, desc="work", unit="cells") as bar:
        bar.update(100)
    assert [record.getMessage() for record in caplog.records] == ["work: 100/100 cells (100%) in 4.0 s, 25.0 cells/s"]
