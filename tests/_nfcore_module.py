"""Run an nf-core module's ``script:`` or ``stub:`` block without Nextflow (which cannot be installed here).

A module's ``main.nf`` is read as Nextflow would for one task: the ``input:`` names, the Groovy statements before
the command (``def args = task.ext.args ?: ''``, ternaries, ``if (...) error "..."``), the command string with its
``${...}`` interpolation and ``\\$`` escapes (indentation stripped, as Nextflow does) and the ``output:`` paths.
The test values come from the module's own ``tests/main.nf.test`` (``input[i] = ...``) and ``tests/nextflow.config``
(``ext.args``). Only the Groovy the modules use is understood: strings and GStrings, dotted names, ``?:``,
``? :``, ``==``/``!=``, ``+``, parentheses, list and map literals and ``file(...)``; anything else is an error, so a
module that outgrows this renderer fails loudly rather than being rendered wrongly.

The ``eval(...)`` outputs of the ``versions`` topic are run after the command, as Nextflow runs them; the tests'
snapshots are read, written and checked with tests/_nfcore_snapshot.py.
"""

from __future__ import annotations

import glob
import os
import re
import subprocess
import sys
import textwrap
from dataclasses import dataclass
from pathlib import Path
from typing import Any

_TOKEN = re.compile(
    r"""\s*(?:
      (?P<string>'(?:[^'\\]|\\.)*'|"(?:[^"\\]|\\.)*")
    | (?P<number>\d+(?:\.\d+)?)
    | (?P<name>[A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)*)
    | (?P<op>\?:|==|!=|[?:()\[\],+])
    )""",
    re.VERBOSE,
)


#: ``params.modules_testdata_base_path``: the local copy of the data wrappers/nf-core/tests/config/nf-test.config
#: reads (its default is the same folder as published).
TESTDATA = Path(__file__).resolve().parents[1] / "wrappers" / "galaxy" / "test-data"


class GroovyError(ValueError):
    """Groovy this renderer does not understand, or an ``error`` raised by the module."""


class Obj(dict):
    """A Groovy map/object: ``obj.key`` reads the key; a missing key is null, as for a Groovy map."""

    def get_path(self, dotted: str) -> Any:
        value: Any = self
        for part in dotted.split("."):
            if isinstance(value, dict):
                value = value.get(part)
            else:
                value = getattr(value, part, None)
            if value is None:
                return None
        return value


@dataclass
class StagedFile:
    """A staged input: prints as its file name (what Nextflow puts in the command)."""

    name: str

    def __str__(self) -> str:
        return self.name

    @property
    def extension(self) -> str:
        return self.name.rsplit(".", 1)[-1] if "." in self.name else ""

    @property
    def baseName(self) -> str:
        return self.name.rsplit(".", 1)[0]

    @property
    def simpleName(self) -> str:
        return self.name.split(".", 1)[0]


class Files(list):
    def __str__(self) -> str:
        return " ".join(str(item) for item in self)


def _truthy(value: Any) -> bool:
    return bool(value) and value is not False


def _text(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


class _Parser:
    def __init__(self, text: str, scope: Obj):
        self.tokens = self._tokenize(text)
        self.position = 0
        self.scope = scope

    @staticmethod
    def _tokenize(text: str) -> list[tuple[str, str]]:
        tokens, position = [], 0
        while position < len(text):
            if text[position:].strip() == "":
                break
            match = _TOKEN.match(text, position)
            if not match:
                raise GroovyError(f"cannot read Groovy at: {text[position : position + 40]!r}")
            kind = match.lastgroup or ""
            tokens.append((kind, match.group(kind)))
            position = match.end()
        return tokens

    def peek(self) -> tuple[str, str] | None:
        return self.tokens[self.position] if self.position < len(self.tokens) else None

    def take(self, expected: str | None = None) -> tuple[str, str]:
        token = self.peek()
        if token is None or (expected is not None and token[1] != expected):
            raise GroovyError(f"expected {expected!r}, got {token!r}")
        self.position += 1
        return token

    def done(self) -> bool:
        return self.position == len(self.tokens)

    def expression(self) -> Any:
        value = self.comparison()
        token = self.peek()
        if token == ("op", "?:"):
            self.take()
            other = self.expression()
            return value if _truthy(value) else other
        if token == ("op", "?"):
            self.take()
            when_true = self.expression()
            self.take(":")
            when_false = self.expression()
            return when_true if _truthy(value) else when_false
        return value

    def comparison(self) -> Any:
        left = self.sum()
        token = self.peek()
        if token in (("op", "=="), ("op", "!=")):
            self.take()
            right = self.sum()
            equal = _text(left) == _text(right)
            return equal if token[1] == "==" else not equal
        return left

    def sum(self) -> Any:
        value = self.atom()
        while self.peek() == ("op", "+"):  # string concatenation (params.base + 'file.h5ad'), or numbers
            self.take()
            other = self.atom()
            value = (
                value + other
                if isinstance(value, int | float) and isinstance(other, int | float)
                else (_text(value) + _text(other))
            )
        return value

    def atom(self) -> Any:
        kind, text = self.take()
        if kind == "string":
            return self.string(text)
        if kind == "number":
            return float(text) if "." in text else int(text)
        if kind == "name":
            if text in ("true", "false", "null"):
                return {"true": True, "false": False, "null": None}[text]
            if text == "file" and self.peek() == ("op", "("):
                return self.file_call()
            return self.scope.get_path(text)
        if text == "(":
            value = self.expression()
            self.take(")")
            return value
        if text == "[":
            return self.collection()
        raise GroovyError(f"unexpected {text!r}")

    def file_call(self) -> StagedFile:
        self.take("(")
        path = self.expression()
        while self.peek() == ("op", ","):  # named options such as checkIfExists: true
            self.take(",")
            self.take()
            self.take(":")
            self.expression()
        self.take(")")
        return StagedFile(str(path))

    def collection(self) -> Any:
        if self.peek() == ("op", "]"):
            self.take()
            return Files()
        if self.peek() == ("op", ":"):  # [:] is an empty map
            self.take(":")
            self.take("]")
            return Obj()
        items, mapping = [], Obj()
        while True:
            start = self.position
            token = self.peek()
            if (
                token
                and token[0] == "name"
                and self.position + 1 < len(self.tokens)
                and self.tokens[self.position + 1] == ("op", ":")
            ):
                self.take()
                self.take(":")
                mapping[token[1]] = self.expression()
            else:
                self.position = start
                items.append(self.expression())
            if self.peek() == ("op", ","):
                self.take(",")
                continue
            self.take("]")
            break
        if mapping and items:
            raise GroovyError("a list literal mixes map entries and items")
        if mapping:
            return mapping
        return Files(items) if all(isinstance(item, StagedFile) for item in items) else items

    def string(self, literal: str) -> str:
        body = literal[1:-1]
        if literal[0] == "'":
            return body.replace("\\'", "'").replace("\\\\", "\\")
        return interpolate(body, self.scope)


def interpolate(text: str, scope: Obj) -> str:
    """A GString's value: ``${expression}``, ``$name.path``; ``\\$`` is a dollar, ``\\\\`` a backslash."""
    out, position = [], 0
    while position < len(text):
        char = text[position]
        if char == "\\" and position + 1 < len(text):
            following = text[position + 1]
            out.append({"$": "$", "\\": "\\", '"': '"', "n": "\n", "t": "\t"}.get(following, "\\" + following))
            position += 2
        elif text.startswith("${", position):
            end, depth = position + 2, 1
            while depth:
                depth += {"{": 1, "}": -1}.get(text[end], 0)
                end += 1
            out.append(_text(evaluate(text[position + 2 : end - 1], scope)))
            position = end
        elif char == "$" and re.match(r"[A-Za-z_]", text[position + 1 : position + 2]):
            match = re.match(r"[A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)*", text[position + 1 :])
            out.append(_text(scope.get_path(match.group(0))))
            position += 1 + match.end()
        else:
            out.append(char)
            position += 1
    return "".join(out)


def evaluate(expression: str, scope: Obj) -> Any:
    parser = _Parser(expression, scope)
    value = parser.expression()
    if not parser.done():
        raise GroovyError(f"cannot read the end of {expression!r}")
    return value


def _run_statements(lines: list[str], scope: Obj) -> None:
    for raw in lines:
        line = raw.strip()
        if not line or line.startswith("//"):
            continue
        match = re.fullmatch(r"if\s*\((.*)\)\s*error\s+(\".*\"|'.*')", line)
        if match:
            if _truthy(evaluate(match.group(1), scope)):
                raise GroovyError(f"module error: {evaluate(match.group(2), scope)}")
            continue
        match = re.fullmatch(r"(?:def\s+)?([A-Za-z_][A-Za-z0-9_]*)\s*=\s*(.+)", line)
        if not match:
            raise GroovyError(f"cannot read the Groovy statement {line!r}")
        scope[match.group(1)] = evaluate(match.group(2), scope)


def _block(text: str, label: str, following: tuple[str, ...]) -> str:
    """The text of a ``label:`` section of a process, up to the next section label."""
    match = re.search(rf"^\s*{label}:\s*$", text, re.MULTILINE)
    if not match:
        raise GroovyError(f"no {label}: block")
    rest = text[match.end() :]
    ends = [m.start() for name in following for m in [re.search(rf"^\s*{name}:\s*$", rest, re.MULTILINE)] if m]
    return rest[: min(ends)] if ends else rest


@dataclass
class Module:
    folder: Path
    process: str
    inputs: list[list[str]]  # names per input channel
    outputs: list[tuple[str, str, bool]]  # (emit, path pattern as written, optional)
    versions: list[tuple[str, str, str]]  # (emit, tool, eval command) of the `topic: versions` outputs
    script: str
    stub: str


_EVAL = re.compile(r"""val\(\s*'([^']*)'\s*\),\s*eval\(\s*("(?:[^"\\]|\\.)*"|'[^']*')\s*\)""")


def read_module(folder: Path) -> Module:
    text = (folder / "main.nf").read_text(encoding="utf-8")
    process = re.search(r"process\s+([A-Z0-9_]+)\s*\{", text).group(1)
    inputs = []
    for line in _block(text, "input", ("output",)).splitlines():
        names = re.findall(r"(?:val|path|env)\(\s*([A-Za-z_][A-Za-z0-9_]*)", line)
        if names:
            inputs.append(names)
    outputs, versions = [], []
    for line in _block(text, "output", ("when", "script")).splitlines():
        emit = re.search(r"emit:\s*([A-Za-z0-9_]+)", line)
        version = _EVAL.search(line)
        if version and "topic: versions" in line:
            versions.append((emit.group(1) if emit else "", version.group(1), evaluate(version.group(2), Obj())))
            continue
        for pattern in re.findall(r"path\(?\s*(\"[^\"]*\"|'[^']*')", line):
            optional = "optional: true" in line or "optional:true" in line
            outputs.append((emit.group(1) if emit else pattern, pattern, optional))
    script = _block(text, "script", ("stub",))
    stub = _block(text, "stub", ())
    stub = stub[: stub.rstrip().rfind("}")]  # the process's closing brace
    return Module(folder, process, inputs, outputs, versions, script, stub)


def _split_command(block: str) -> tuple[list[str], str]:
    start = block.index('"""')
    end = block.index('"""', start + 3)
    return block[:start].splitlines(), block[start + 3 : end]


@dataclass
class TestCase:
    name: str
    stub: bool
    inputs: list[str]  # Groovy source of input[0], input[1], ...


def read_tests(folder: Path) -> list[TestCase]:
    """The ``test("...")`` cases of ``tests/main.nf.test``: their name, ``-stub`` option and inputs."""
    text = (folder / "tests" / "main.nf.test").read_text(encoding="utf-8")
    cases = []
    starts = [m for m in re.finditer(r'^\s*test\("([^"]*)"\)\s*\{', text, re.MULTILINE)]
    for index, match in enumerate(starts):
        body = text[match.end() : starts[index + 1].start() if index + 1 < len(starts) else len(text)]
        process_block = re.search(r'(?:process|workflow)\s*\{\s*"""(.*?)"""', body, re.DOTALL).group(1)
        assignments = re.split(r"^\s*input\[(\d+)\]\s*=\s*", process_block, flags=re.MULTILINE)
        values = {int(assignments[i]): assignments[i + 1].strip() for i in range(1, len(assignments), 2)}
        cases.append(TestCase(match.group(1), bool(re.search(r'options\s+"-stub"', body)),
                              [values[i] for i in sorted(values)]))  # fmt: skip
    return cases


def ext_args(folder: Path, process: str) -> str:
    config = folder / "tests" / "nextflow.config"
    if not config.exists():
        return ""
    text = config.read_text(encoding="utf-8")
    block = re.search(rf"withName:\s*'{process}'\s*\{{(.*?)\}}", text, re.DOTALL)
    match = re.search(r"ext\.args\s*=\s*('[^']*'|\"[^\"]*\")", block.group(1)) if block else None
    return match.group(1)[1:-1] if match else ""


@dataclass
class Result:
    command: str
    work: Path
    outputs: dict[str, list[Path]]  # emit name: the files its path pattern matched
    versions: dict[str, list[str]]  # emit name: [process, tool, what the eval command printed]
    process: subprocess.CompletedProcess

    def snapshot(self, module: Module) -> list[Any]:
        """What the tests' ``snapshot(file(process.out.<emit>[0][1]).name, ..., <versions outputs>)`` records."""
        names = [self.outputs[emit][0].name for emit, _, optional in module.outputs if not optional]
        return [*names, {emit: [value] for emit, value in sorted(self.versions.items())}]


def run_test(
    module: Module,
    case: TestCase,
    work: Path,
    *,
    data: dict[str, Path] | None = None,
    accelerator: int | None = None,
    timeout: float = 300,
) -> Result:
    """Stage the case's inputs in ``work``, render the ``script:`` (or ``stub:``) block, run it, glob the outputs.

    Files are staged by their path in ``file("...")`` (``${moduleDir}`` is the module's folder); ``data`` may map a
    path prefix to another local folder. ``accelerator`` is ``task.accelerator`` (a GPU request), null by default.
    """
    work.mkdir(parents=True, exist_ok=True)
    scope = Obj(moduleDir=str(module.folder), params=Obj(modules_testdata_base_path=f"{TESTDATA}/"))
    values = [evaluate(source, scope) for source in case.inputs]
    if len(values) != len(module.inputs):
        raise GroovyError(f"{case.name}: {len(values)} inputs for {len(module.inputs)} input channels")
    task_scope = Obj(
        task=Obj(
            ext=Obj(args=ext_args(module.folder, module.process), prefix=None, when=None),
            cpus=1,
            accelerator=accelerator,
            process=module.process,
        ),
    )
    for names, value in zip(module.inputs, values, strict=True):
        parts = value if len(names) > 1 else [value]
        for name, part in zip(names, parts, strict=True):
            task_scope[name] = _stage(part, work, data or {})
    lines, command = _split_command(module.stub if case.stub else module.script)
    _run_statements(lines, task_scope)
    rendered = textwrap.dedent(interpolate(command, task_scope)).strip() + "\n"
    (work / ".command.sh").write_text(rendered, encoding="utf-8")
    environment = dict(os.environ, OMP_NUM_THREADS="1", HOME=str(work))
    environment["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{environment.get('PATH', '')}"
    completed = subprocess.run(["bash", "-euo", "pipefail", ".command.sh"], cwd=work, env=environment,
                               capture_output=True, text=True, timeout=timeout)  # fmt: skip
    outputs, versions = {}, {}
    if completed.returncode == 0:
        for emit, pattern, optional in module.outputs:
            name = evaluate(pattern, task_scope)
            found = [Path(p) for p in sorted(glob.glob(str(work / name)))]
            if not found and not optional:
                raise AssertionError(f"{module.process} ({case.name}): no output matches {name!r}")
            outputs[emit] = found
        for emit, tool, command in module.versions:  # Nextflow runs eval outputs in the task's environment
            printed = subprocess.run(["bash", "-euo", "pipefail", "-c", command], cwd=work, env=environment,
                                     capture_output=True, text=True, check=True, timeout=60)  # fmt: skip
            versions[emit] = [module.process, tool, printed.stdout.strip()]
    return Result(rendered, work, outputs, versions, completed)


def _stage(value: Any, work: Path, data: dict[str, Path]) -> Any:
    if isinstance(value, StagedFile):
        source = None
        for prefix, folder in data.items():
            if value.name.startswith(prefix):
                source = folder / value.name[len(prefix) :].lstrip("/")
        if source is None:
            source = Path(value.name)
        if not source.exists():
            raise FileNotFoundError(f"test input {value.name} (looked for {source})")
        target = work / source.name
        if not target.exists():
            target.symlink_to(source.resolve(), target_is_directory=source.is_dir())
        return StagedFile(source.name)
    if isinstance(value, list):
        return Files(_stage(item, work, data) for item in value) if value else Files()
    if isinstance(value, dict):
        return Obj({key: _stage(item, work, data) for key, item in value.items()})
    return value
