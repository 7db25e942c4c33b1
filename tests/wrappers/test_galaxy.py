"""The Galaxy tools in wrappers/galaxy: every ``<test>`` of every tool, run against the real ``omnicell`` command.

Each test is parsed by galaxy-tool-util, its command rendered with the test's parameters (tests/_galaxy_tool.py),
run in a temporary job folder with the test data staged under Galaxy-like names, and checked with the
test's own output assertions (``has_h5_keys``, ``has_n_lines``, image checks...).
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

pytest.importorskip("galaxy.tool_util", reason="galaxy-tool-util is in the test extra")

import _galaxy_tool as _galaxy  # tests/ is on the path (pyproject: pythonpath)

GALAXY = Path(__file__).resolve().parents[2] / "wrappers" / "galaxy"
TOOLS = _galaxy.tool_files(GALAXY)


def _cases():
    for tool in TOOLS:
        source, tests = _galaxy.tool_tests(tool)
        for test in tests:
            yield pytest.param(tool, source, test, id=f"{tool.stem}-{test.test_index}")


CASES = list(_cases())


def test_every_tool_has_tests():
    tested = {case.values[0] for case in CASES}
    assert tested == set(TOOLS), f"tools without <test>: {sorted(t.name for t in set(TOOLS) - tested)}"


def test_test_data_is_small():
    total = sum(path.stat().st_size for path in (GALAXY / "test-data").iterdir())
    assert total < 1024 * 1024, f"test-data holds {total / 1024:.0f} KiB (limit 1 MiB)"


def test_commands_render_for_galaxy_names(tmp_path):
    """Inputs are staged as dataset_N.dat, so every command must link its input under a name with its format."""
    tool, source, test = CASES[0].values
    job = _galaxy.prepare(tool, source, test, tmp_path)
    assert "dataset_1.dat" in job.command and "input.h5ad" in job.command


@pytest.mark.skipif(shutil.which("bash") is None, reason="the tools' commands are bash")
@pytest.mark.parametrize(("tool", "source", "test"), CASES)
def test_tool(tool, source, test, tmp_path):
    job = _galaxy.prepare(tool, source, test, tmp_path)
    _galaxy.run(job)
