"""Run a Galaxy tool's ``<test>`` without Galaxy: galaxy-tool-util parses the tool and its tests, we render the command.

galaxy-tool-util gives the parsed tool (macros expanded), each test's parameter state (conditionals resolved,
``parse_tool_test_descriptions``), the static defaults (``fill_static_defaults``) and the output assertions
(``verify_assertions``). The job-side objects Galaxy hands to Cheetah (dataset and parameter wrappers) live in
Galaxy itself, so this module has small stand-ins with the parts the tools use: ``$data`` (path), ``$data.ext``,
``$select.fields.<column>`` (data tables), boolean true/false values, ``#for`` over multiple datasets. The command is
then flattened as Galaxy does (newlines become spaces) and run with bash in a job folder.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from galaxy.tool_util.parameters import input_models_for_tool_source
from galaxy.tool_util.parameters.convert import fill_static_defaults
from galaxy.tool_util.parser import get_tool_source
from galaxy.tool_util.verify.asserts import verify_assertions
from galaxy.tool_util.verify.parse import parse_tool_test_descriptions
from galaxy.util.template import fill_template

import omnicell


class Value:
    """A text/number/select parameter as Cheetah sees it: prints its value ("" when unset), compares as text."""

    def __init__(self, value: Any, fields: dict[str, str] | None = None):
        self.value = value
        self.fields = type("Fields", (), dict(fields or {}))()

    def __str__(self) -> str:
        return "" if self.value is None else str(self.value)

    def __eq__(self, other: object) -> bool:
        return str(self) == str(other)

    def __hash__(self) -> int:
        return hash(str(self))

    def __bool__(self) -> bool:
        return bool(self.value)

    def __int__(self) -> int:
        return int(self.value)

    def __float__(self) -> float:
        return float(self.value)


class Boolean(Value):
    def __init__(self, value: bool, truevalue: str | None, falsevalue: str | None):
        super().__init__(bool(value))
        if value:
            self.text = truevalue if truevalue is not None else "True"
        else:
            self.text = falsevalue if falsevalue is not None else "False"

    def __str__(self) -> str:
        return self.text


@dataclass
class Dataset:
    """A history dataset: its file (named as Galaxy names them, without the format's suffix) and its format."""

    path: str
    ext: str
    element_identifier: str = ""

    def __str__(self) -> str:
        return self.path

    @property
    def extension(self) -> str:
        return self.ext

    @property
    def extra_files_path(self) -> str:
        """The dataset's folder of extra files (Galaxy: dataset_N_files beside dataset_N.dat)."""
        return f"{os.path.splitext(self.path)[0]}_files"

    def is_of_type(self, *formats: str) -> bool:
        return self.ext in formats


class Datasets(list):
    """A multiple data parameter: iterates over datasets, prints as Galaxy does (comma-separated paths)."""

    def __str__(self) -> str:
        return ",".join(str(item) for item in self)


@dataclass
class Job:
    tool_id: str
    test_index: int
    command: str
    folder: Path
    outputs: dict[str, Path]
    output_assertions: list[dict] = field(default_factory=list)
    expect_failure: bool = False
    stderr_assertions: list[dict] = field(default_factory=list)


def _data_tables(tool_folder: Path) -> dict[str, list[dict[str, str]]]:
    """Rows of each table in the tool folder's ``tool_data_table_conf.xml.test`` (loc files, ``${__HERE__}``)."""
    tables: dict[str, list[dict[str, str]]] = {}
    conf = tool_folder / "tool_data_table_conf.xml.test"
    if not conf.exists():  # a data manager's folder: it fills a table, reads none
        return tables
    for table in ET.parse(conf).getroot().iter("table"):
        columns = [name.strip() for name in table.findtext("columns", "").split(",")]
        rows = []
        for file in table.iter("file"):
            loc = Path(file.get("path", "").replace("${__HERE__}", str(tool_folder)))
            for line in loc.read_text(encoding="utf-8").splitlines():
                if line.strip() and not line.startswith(table.get("comment_char", "#")):
                    values = line.split("\t")
                    rows.append(dict(zip(columns, values, strict=False)))
        tables[table.get("name", "")] = rows
    return tables


def _table_selects(tool_source) -> dict[str, str]:
    """Select parameters whose options come from a data table: name -> table."""
    found = {}
    for param in tool_source.root.iter("param"):
        options = param.find("options")
        if options is not None and options.get("from_data_table"):
            found[param.get("name") or param.get("argument", "").lstrip("-").replace("-", "_")] = options.get(
                "from_data_table"
            )
    return found


class _Wrapper:
    def __init__(self, tool_folder: Path, job_folder: Path, tables, table_selects):
        self.tool_folder = tool_folder
        self.job_folder = job_folder
        self.tables = tables
        self.table_selects = table_selects
        self.n_datasets = 0

    def dataset(self, value: dict) -> Dataset:
        self.n_datasets += 1
        source = self.tool_folder / "test-data" / value["path"]
        target = self.job_folder / "inputs" / f"dataset_{self.n_datasets}.dat"
        target.parent.mkdir(exist_ok=True)
        shutil.copyfile(source, target)
        return Dataset(str(target), value.get("filetype") or source.suffix.lstrip("."), value["path"])

    def wrap(self, parameters, state: dict) -> dict:
        out: dict[str, Any] = {}
        for parameter in parameters:
            name = parameter.name
            kind = parameter.parameter_type
            value = state.get(name)
            if kind == "gx_data":
                if isinstance(value, list):
                    out[name] = Datasets(self.dataset(item) for item in value)
                else:
                    out[name] = self.dataset(value) if value else Value(None)
            elif kind == "gx_boolean":
                out[name] = Boolean(value, parameter.truevalue, parameter.falsevalue)
            elif kind == "gx_conditional":
                branch = dict(value or {})
                test_name = parameter.test_parameter.name
                discriminator = branch.get(test_name)
                when = next(w for w in parameter.whens if str(w.discriminator) == str(discriminator))
                wrapped = self.wrap(when.parameters, branch)
                wrapped[test_name] = Value(discriminator)
                out[name] = wrapped
            elif kind == "gx_section":
                out[name] = self.wrap(parameter.parameters, value or {})
            elif kind == "gx_repeat":
                out[name] = [self.wrap(parameter.parameters, item) for item in value or []]
            elif kind == "gx_select" and name in self.table_selects:
                rows = self.tables[self.table_selects[name]]
                if value is None:  # Galaxy's default for a select: the first option (ours sort by name)
                    value = sorted(rows, key=lambda row: row.get("name", ""))[0]["value"]
                row = next(row for row in rows if row["value"] == value)
                out[name] = Value(value, fields=row)
            else:
                out[name] = Value(value)
        return out


def tool_files(folder: Path) -> list[Path]:
    """The tools of a suite folder and of its ``data_manager/`` (files whose root is ``<tool>``)."""
    candidates = [*folder.glob("*.xml"), *folder.glob("data_manager/*.xml")]
    return sorted(path for path in candidates if ET.parse(path).getroot().tag == "tool")


def tool_tests(tool_path: Path):
    """(tool source, test description) for each ``<test>`` of a tool."""
    source = get_tool_source(str(tool_path))
    return source, list(parse_tool_test_descriptions(source))


def prepare(tool_path: Path, source, test, job_folder: Path) -> Job:
    """Stage the test's inputs in ``job_folder`` and render the tool's command for them."""
    tool_folder = tool_path.parent
    if test.error:
        raise AssertionError(f"{tool_path.name} test {test.test_index}: {test.exception}")
    bundle = input_models_for_tool_source(source)
    state = fill_static_defaults(dict(test.request), bundle, float(source.parse_profile()))
    wrapper = _Wrapper(tool_folder, job_folder, _data_tables(tool_folder), _table_selects(source))
    context = wrapper.wrap(bundle.parameters, state)

    outputs_declared, _ = source.parse_outputs(None)
    outputs = {}
    for name in outputs_declared:
        outputs[name] = job_folder / "outputs" / f"dataset_{name}.dat"
        context[name] = Dataset(str(outputs[name]), outputs_declared[name].format or "data")
    (job_folder / "outputs").mkdir(exist_ok=True)
    context["__tool_directory__"] = str(tool_folder)
    context["GALAXY_SLOTS"] = "1"

    command = fill_template(source.parse_command(), context=context, python_template_version="3")
    command = command.replace("\n", " ").replace("\r", " ").strip()  # as Galaxy does
    return Job(
        source.parse_id(), test.test_index, command, job_folder, outputs, test.outputs,
        expect_failure=bool(test.expect_failure), stderr_assertions=list(test.stderr or []),
    )  # fmt: skip


def run(job: Job, *, timeout: float = 300) -> subprocess.CompletedProcess:
    """Run the command in the job folder (``omnicell`` from this Python first on PATH) and check its outputs.

    A test with ``expect_failure`` must exit non-zero; ``assert_stderr`` is checked either way.
    """
    environment = dict(os.environ, GALAXY_SLOTS="1", OMP_NUM_THREADS="1", HOME=str(job.folder))
    environment["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{environment.get('PATH', '')}"
    # The command imports the omnicell these tests import (e.g. a worktree's src/ on PYTHONPATH), not whatever the
    # console script's install points at: a relative PYTHONPATH would not survive the job folder as working directory.
    paths = [str(Path(omnicell.__file__).resolve().parents[1])]
    paths += [str(Path(entry).resolve()) for entry in environment.get("PYTHONPATH", "").split(os.pathsep) if entry]
    environment["PYTHONPATH"] = os.pathsep.join(paths)
    working = job.folder / "working"
    working.mkdir(exist_ok=True)
    result = subprocess.run(["bash", "-euo", "pipefail", "-c", job.command], cwd=working, env=environment,
                            capture_output=True, text=True, timeout=timeout)  # fmt: skip
    if job.stderr_assertions:
        verify_assertions(result.stderr.encode(), job.stderr_assertions)
    if job.expect_failure:  # Galaxy's expect_failure: a non-zero exit, outputs not checked
        assert result.returncode != 0, f"{job.tool_id} test {job.test_index} should fail but exited 0"
        return result
    if result.returncode != 0:
        raise AssertionError(
            f"{job.tool_id} test {job.test_index} exited {result.returncode}\ncommand: {job.command}\n"
            f"stderr:\n{result.stderr[-3000:]}"
        )
    for output in job.output_assertions:
        path = job.outputs[output["name"]]
        assert path.exists(), f"{job.tool_id} test {job.test_index}: output {output['name']} was not written"
        attributes = output["attributes"]
        if attributes.get("assert_list"):
            verify_assertions(path.read_bytes(), attributes["assert_list"], attributes.get("decompress", False))
    return result


_ENDS_COMMAND = {"&&", "||", "|", ";", "&"}


def omnicell_calls(command: str) -> list[list[str]]:
    """The words after ``omnicell`` of each ``omnicell`` call in a rendered (one-line) command.

    Calls are cut at shell operators (``&&``, ``|``...); the words of a ``$(...)`` inside a call are not the call's,
    and an ``omnicell`` call inside one (``folder=$(omnicell models download ...)``) is a call of its own.
    """
    lexer = shlex.shlex(command, posix=True, punctuation_chars=True)
    lexer.whitespace_split = True
    calls: list[list[str]] = []
    # per nesting level: None at the start of a simple command, the call's word list, or False (another program)
    stack: list[list[str] | bool | None] = [None]
    for word in lexer:
        if word == "(":
            stack.append(None)
        elif word == ")":
            stack.pop()
        elif word in _ENDS_COMMAND:
            stack[-1] = None
        elif stack[-1] is None:
            if word == "omnicell":
                stack[-1] = []
                calls.append(stack[-1])
            elif "=" not in word:  # an assignment (x=$(...)) is not the command's name
                stack[-1] = False
        elif isinstance(stack[-1], list) and not re.fullmatch(r"[<>&|0-9]+", word):  # redirections are not words
            stack[-1].append(word)
    return calls
