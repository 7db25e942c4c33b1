"""The nf-test snapshots of the nf-core modules and subworkflow, written and read without Nextflow.

The tests' snapshots (``tests/main.nf.test.snap``, nf-test's format) record output names and versions only, so a run
of a module's block by tests/_nfcore_module.py gives the content nf-test records: ``PYTHONPATH=src python
tests/_nfcore_snapshot.py`` rewrites them from such runs (nf-test ``--update-snapshot`` would write the same content),
and tests/wrappers/test_nfcore.py checks them. ``run_embed_scatter`` runs what the subworkflow h5ad_embed_omnicell
does, task by task.
"""

from __future__ import annotations

import datetime
import json
import re
from pathlib import Path
from typing import Any

import _nfcore_module as nf

#: What the snapshot files record as the versions that wrote them (nf-test's format).
NF_TEST_VERSION, NEXTFLOW_VERSION = "0.9.2", "25.04.0"


def read_snapshots(folder: Path) -> dict[str, Any]:
    """``tests/main.nf.test.snap``: test name -> the recorded ``content`` (nf-test's snapshot file)."""
    path = folder / "tests" / "main.nf.test.snap"
    if not path.exists():
        return {}
    return {name: entry["content"] for name, entry in json.loads(path.read_text(encoding="utf-8")).items()}


def write_snapshots(folder: Path, contents: dict[str, Any]) -> None:
    """Write ``tests/main.nf.test.snap`` as nf-test does; an entry whose content is unchanged keeps its timestamp."""
    path = folder / "tests" / "main.nf.test.snap"
    old = json.loads(path.read_text(encoding="utf-8")) if path.exists() else {}
    now = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")
    snap = {}
    for name, content in contents.items():
        kept = old.get(name, {})
        snap[name] = {
            "content": content,
            "meta": {"nf-test": NF_TEST_VERSION, "nextflow": NEXTFLOW_VERSION},
            "timestamp": kept["timestamp"] if kept.get("content") == content else now,
        }
    path.write_text(json.dumps(snap, indent=4) + "\n", encoding="utf-8")


def run_embed_scatter(nfcore: Path, meta: str, h5ad: str, shards: int, work: Path) -> tuple[nf.Result, int]:
    """What the subworkflow h5ad_embed_omnicell does for one file: ``shards`` embed tasks gathered by one merge task.

    ``meta`` and ``h5ad`` are Groovy source (``[ id:'test' ]``, ``file(...)``). Returns the merge task's result and
    the number of tasks.
    """
    embed = nf.read_module(nfcore / "modules" / "omnicell" / "embed")
    merge = nf.read_module(nfcore / "modules" / "omnicell" / "merge")
    shard_files = []
    for index in range(shards):
        case = nf.TestCase(f"shard {index}", False, [f"[ {meta}, {h5ad}, {index}, {shards} ]", "[]"])
        result = nf.run_test(embed, case, work / f"embed{index}")
        if result.process.returncode != 0:
            raise AssertionError(f"embed shard {index}/{shards}: {result.process.stderr[-2000:]}")
        shard_files.append(result.outputs["h5ad"][0])
    files = ", ".join(f'file("{path}")' for path in reversed(shard_files))  # merge restores the order
    result = nf.run_test(merge, nf.TestCase("gather", False, [f"[ {meta}, [ {files} ] ]"]), work / "merge")
    return result, shards + 1


def subworkflow_inputs(folder: Path) -> list[nf.TestCase]:
    """The subworkflow's test cases, with ``Channel.of(x)`` read as its one item ``x``."""
    cases = nf.read_tests(folder)
    for case in cases:
        case.inputs = [re.sub(r"^Channel\.of\((.*)\)$", r"\1", source, flags=re.DOTALL) for source in case.inputs]
    return cases


def update_snapshots(nfcore: Path, work: Path) -> None:
    """Run every module and subworkflow test case and rewrite the snapshot files from the results."""
    for main in sorted((nfcore / "modules").glob("*/*/main.nf")):
        module = nf.read_module(main.parent)
        contents = {}
        for case in nf.read_tests(main.parent):
            result = nf.run_test(module, case, work / main.parent.name / re.sub(r"\W+", "_", case.name))
            if result.process.returncode != 0:
                raise AssertionError(f"{module.process} ({case.name}): {result.process.stderr[-2000:]}")
            contents[case.name] = result.snapshot(module)
        write_snapshots(main.parent, contents)
    folder = nfcore / "subworkflows" / "h5ad_embed_omnicell"
    contents = {}
    for case in subworkflow_inputs(folder):
        item, _, shards = case.inputs
        meta, h5ad = split_pair(item)
        result, tasks = run_embed_scatter(nfcore, meta, h5ad, int(shards), work / "subworkflow")
        contents[case.name] = [[[nf.evaluate(meta, nf.Obj()), result.outputs["h5ad"][0].name]], tasks]
    write_snapshots(folder, contents)


def split_pair(source: str) -> tuple[str, str]:
    """``[ a, b ]`` (Groovy source) as the sources of ``a`` and ``b``, split at the top-level comma."""
    body, depth = source.strip()[1:-1], 0
    for position, char in enumerate(body):
        depth += {"[": 1, "(": 1, "]": -1, ")": -1}.get(char, 0)
        if char == "," and depth == 0:
            return body[:position].strip(), body[position + 1 :].strip()
    raise nf.GroovyError(f"not a pair: {source!r}")


if __name__ == "__main__":  # PYTHONPATH=src python tests/_nfcore_snapshot.py: rewrite the snapshot files
    import tempfile

    with tempfile.TemporaryDirectory() as scratch:
        update_snapshots(Path(__file__).resolve().parents[1] / "wrappers" / "nf-core", Path(scratch))
