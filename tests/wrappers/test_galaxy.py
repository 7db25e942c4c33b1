"""The Galaxy tools in wrappers/galaxy: every ``<test>`` of every tool, run against the real ``omnicell`` command.

Each test is parsed by galaxy-tool-util, its command rendered with the test's parameters (tests/_galaxy_tool.py),
run in a temporary job folder with the test data staged under Galaxy-like names, and checked with the
test's own output assertions (``has_h5_keys``, ``has_n_lines``, image checks...).
"""

from __future__ import annotations

import copy
import json
import re
import shutil
import stat
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
import yaml

pytest.importorskip("galaxy.tool_util", reason="galaxy-tool-util is in the test extra")

from galaxy.tool_util.parser import get_tool_source

import _galaxy_tool as _galaxy  # tests/ is on the path (pyproject: pythonpath)
from _helpers import shown_options

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


def test_suite_follows_tools_iuc_conventions():
    """EDAM topics and operations in every tool, a profile no older than tools-iuc's, one .shed.yml suite."""
    for tool in TOOLS:
        source = get_tool_source(str(tool))
        assert source.parse_edam_topics() and source.parse_edam_operations(), f"{tool.name} has no EDAM terms"
        assert all(re.fullmatch(r"topic_\d{4}", term) for term in source.parse_edam_topics())
        assert all(re.fullmatch(r"operation_\d{4}", term) for term in source.parse_edam_operations())
        assert float(source.parse_profile()) >= 24.2, tool.name
    shed = yaml.safe_load((GALAXY / ".shed.yml").read_text())
    assert shed["suite"]["name"] == f"suite_{shed['name']}" and shed["auto_tool_repositories"]["name_template"]


def test_test_data_is_small():
    total = sum(path.stat().st_size for path in (GALAXY / "test-data").iterdir())
    assert total < 1024 * 1024, f"test-data holds {total / 1024:.0f} KiB (limit 1 MiB)"


def test_commands_render_for_galaxy_names(tmp_path):
    """Inputs are staged as dataset_N.dat, so every command must link its input under a name with its format."""
    tool, source, test = next(case.values for case in CASES if case.id == "omnicell_embed-0")
    job = _galaxy.prepare(tool, source, test, tmp_path)
    assert "dataset_1.dat" in job.command and "input.h5ad" in job.command


def test_commands_use_only_the_options_their_help_shows(tmp_path):
    """Each test's rendered command passes each omnicell command only options shown in its --help: no hidden alias
    (--seed, --n-genes...) and no option the command accepts only to ignore it (--device where no model runs)."""
    from omnicell.cli import build_parser

    parser = build_parser()
    used = []
    for index, (tool, source, test) in enumerate(case.values for case in CASES):
        (tmp_path / str(index)).mkdir()
        job = _galaxy.prepare(tool, source, test, tmp_path / str(index))
        calls = _galaxy.omnicell_calls(job.command)
        assert calls, f"{tool.name}: no omnicell call in {job.command}"
        for words in calls:
            command, shown = shown_options(parser, words)
            options = {word.split("=")[0] for word in words if re.match(r"--?[A-Za-z]", word)}
            assert options <= shown, f"{tool.name} test {test.test_index}: omnicell {command} {sorted(options - shown)}"
            used.append(command)
    assert {"embed", "embed-genes", "plot markers", "merge", "models convert"} <= set(used)


def test_command_templates_use_only_the_options_their_help_shows():
    """The same in every branch of each command template (e.g. --mod, rendered only for an h5mu input); plot's
    figure is a parameter there, so its options are checked on the rendered tests above."""
    from omnicell.cli import build_parser

    parser = build_parser()
    for tool in TOOLS:
        template = get_tool_source(str(tool)).parse_command()  # macros expanded; Cheetah directives are # comments
        for words in _galaxy.omnicell_calls(template):
            command, shown = shown_options(parser, words)
            if command == "plot":
                continue
            options = {word.split("=")[0] for word in words if re.match(r"--?[A-Za-z]", word)}
            assert options <= shown, f"{tool.name}: omnicell {command} {sorted(options - shown)}"


@pytest.mark.skipif(shutil.which("bash") is None, reason="the tools' commands are bash")
@pytest.mark.parametrize(("tool", "source", "test"), CASES)
def test_tool(tool, source, test, tmp_path):
    job = _galaxy.prepare(tool, source, test, tmp_path)
    _galaxy.run(job)


def _fetcher_case(index: int):
    return next(case.values for case in CASES if case.id == f"omnicell_model_fetcher-{index}")


def _installed(job) -> tuple[dict, Path]:
    """The data table row the data manager's JSON declares, and the folder its path names in the extra files."""
    entry = json.loads(job.outputs["out_file"].read_text())
    (row,) = entry["data_tables"]["omnicell_models"]
    return row, Path(_galaxy.Dataset(str(job.outputs["out_file"]), "data_manager_json").extra_files_path) / row["path"]


def _assert_same_model(installed, bundled) -> None:
    import torch

    assert installed.vocab == bundled.vocab and installed.config == bundled.config
    weights, expected = installed.network.state_dict(), bundled.network.state_dict()
    assert weights.keys() == expected.keys()
    assert all(torch.equal(weights[name], expected[name]) for name in expected)


def test_suite_declares_the_data_manager_and_its_table():
    """data_manager_conf.xml points at the fetcher, whose JSON columns are the table's columns (.sample)."""
    manager = ET.parse(GALAXY / "data_manager_conf.xml").getroot().find("data_manager")
    assert (GALAXY / manager.get("tool_file")).is_file()
    assert ET.parse(GALAXY / manager.get("tool_file")).getroot().get("id") == manager.get("id")
    table = manager.find("data_table")
    columns = [column.get("name") for column in table.iter("column")]
    sample = ET.parse(GALAXY / "tool_data_table_conf.xml.sample").getroot()
    declared = next(t for t in sample.iter("table") if t.get("name") == table.get("name"))
    assert columns == [name.strip() for name in declared.findtext("columns").split(",")]


@pytest.mark.skipif(shutil.which("bash") is None, reason="the tools' commands are bash")
def test_data_manager_installs_a_model_that_loads(tmp_path):
    """By name (the bundled model; omnicell-v1 takes the same download step) the fetcher writes a copy that loads with
    the same weights, and a JSON row whose path is that copy; a given folder takes the convert step alone."""
    from omnicell.models import bundled_folder, load

    tool, source, test = _fetcher_case(0)
    (tmp_path / "by_name").mkdir()
    job = _galaxy.prepare(tool, source, test, tmp_path / "by_name")
    _galaxy.run(job)
    row, folder = _installed(job)
    assert row == {"value": "omnicell-tiny-test", "name": "omnicell-tiny (test)", "path": "omnicell-tiny-test"}
    bundled = load("omnicell-tiny", device="cpu")
    _assert_same_model(load(folder, device="cpu"), bundled)
    unreadable = [f.name for f in folder.iterdir() if not f.stat().st_mode & stat.S_IROTH]
    assert not unreadable, f"jobs running as another user cannot read {unreadable}"

    by_folder = copy.copy(test)
    by_folder.request = {"source": {"from": "folder", "folder": str(bundled_folder("omnicell-tiny"))}, "value": "mine"}
    by_folder.outputs = []  # the by-name test's assertions; the row is checked below
    (tmp_path / "by_folder").mkdir()
    job = _galaxy.prepare(tool, source, by_folder, tmp_path / "by_folder")
    _galaxy.run(job)
    row, folder = _installed(job)
    assert row == {"value": "mine", "name": "mine", "path": "mine"}  # the label defaults to the id
    _assert_same_model(load(folder, device="cpu"), bundled)
