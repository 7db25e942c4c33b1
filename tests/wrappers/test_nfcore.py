"""The nf-core modules and subworkflow in wrappers/nf-core.

Every ``meta.yml`` and ``environment.yml`` is validated against nf-core's JSON schemas (vendored in
wrappers/nf-core/schemas, see SOURCE.md there), and every test of every module's ``tests/main.nf.test`` is run
without Nextflow: its ``script:`` (or, for ``-stub`` tests, ``stub:``) block rendered with the test's inputs and
``ext.args`` (tests/_nfcore_module.py), run with bash against the real ``omnicell`` command, and its declared
outputs and versions.yml checked.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import yaml

import omnicell

jsonschema = pytest.importorskip("jsonschema", reason="jsonschema is in the test extra")

import _nfcore_module as nf  # noqa: E402  (tests/ is on the path: pyproject's pythonpath)

NFCORE = Path(__file__).resolve().parents[2] / "wrappers" / "nf-core"
MODULES = sorted(path.parent for path in (NFCORE / "modules").glob("*/*/main.nf"))
SUBWORKFLOWS = sorted(path.parent for path in (NFCORE / "subworkflows").glob("*/*/main.nf"))
REQUIRED = {"embed", "merge", "spatialdomains", "markergenes", "annotate", "genemodules", "finetune"}


def _schema(relative: str) -> dict:
    return json.loads((NFCORE / "schemas" / relative).read_text(encoding="utf-8"))


def _yaml(path: Path):
    return yaml.safe_load(path.read_text(encoding="utf-8"))


def test_required_modules_exist():
    assert REQUIRED <= {module.name for module in MODULES}
    assert all(re.fullmatch(r"[a-z0-9]+", module.name) for module in MODULES), "nf-core names: lowercase, no dashes"
    assert [sub.name for sub in SUBWORKFLOWS] == ["embed_scatter"]


@pytest.mark.parametrize("module", MODULES, ids=lambda m: m.name)
def test_module_meta_and_environment_follow_nfcore_schemas(module):
    meta = _yaml(module / "meta.yml")
    jsonschema.validate(meta, _schema("modules/meta-schema.json"))
    jsonschema.validate(_yaml(module / "environment.yml"), _schema("modules/environment-schema.json"))
    assert meta["name"] == f"omnicell_{module.name}"
    # meta.yml documents the process's channels: as many inputs, and the same emit names.
    parsed = nf.read_module(module)
    assert len(meta["input"]) == len(parsed.inputs)
    emits = re.findall(r"emit:\s*([a-z0-9_]+)", (module / "main.nf").read_text(encoding="utf-8"))
    assert [next(iter(channel)) for channel in meta["output"]] == emits


@pytest.mark.parametrize("module", MODULES, ids=lambda m: m.name)
def test_module_follows_nfcore_conventions(module):
    text = (module / "main.nf").read_text(encoding="utf-8")
    parsed = nf.read_module(module)
    assert parsed.process == f"OMNICELL_{module.name.upper()}"
    assert re.search(r"label '(process_gpu|process_medium|process_single|process_low)'", text)
    assert "task.ext.args ?: ''" in parsed.script and "task.ext.prefix ?:" in parsed.script
    assert "versions.yml" in parsed.stub and "versions.yml" in parsed.script
    assert 'conda "${moduleDir}/environment.yml"' in text
    if "label 'process_gpu'" in text:
        assert "task.accelerator ? 'cuda' : 'cpu'" in parsed.script


@pytest.mark.parametrize("subworkflow", SUBWORKFLOWS, ids=lambda s: s.name)
def test_subworkflow_meta_follows_nfcore_schema(subworkflow):
    meta = _yaml(subworkflow / "meta.yml")
    jsonschema.validate(meta, _schema("subworkflows/yaml-schema.json"))
    text = (subworkflow / "main.nf").read_text(encoding="utf-8")
    for component in meta["components"]:  # each included module exists and is included
        name = component.split("/")[-1]
        assert (NFCORE / "modules" / component / "main.nf").exists()
        assert f"OMNICELL_{name.upper()}" in text


def test_environments_pin_the_package_version():
    for module in MODULES:
        assert _yaml(module / "environment.yml")["dependencies"] == [f"bioconda::omnicell={omnicell.__version__}"]
        assert f"ghcr.io/omnicell/omnicell:{omnicell.__version__}" in (module / "main.nf").read_text(encoding="utf-8")


def _cases():
    for module in MODULES:
        parsed = nf.read_module(module)
        for case in nf.read_tests(module):
            yield pytest.param(parsed, case, id=f"{module.name}-{case.name}")


@pytest.mark.parametrize(("module", "case"), list(_cases()))
def test_module_test_runs_against_the_cli(module, case, tmp_path):
    result = nf.run_test(module, case, tmp_path)
    assert result.process.returncode == 0, (
        f"{module.process} ({case.name}) exited {result.process.returncode}\n{result.command}\n"
        f"{result.process.stderr[-3000:]}"
    )
    versions = yaml.safe_load((tmp_path / "versions.yml").read_text(encoding="utf-8"))
    assert versions == {module.process: {"omnicell": omnicell.__version__}}
    for name, files in result.outputs.items():
        for file in files:
            assert case.stub or file.stat().st_size > 0, f"{name} is empty"


def test_renderer_reads_the_groovy_the_modules_use():
    scope = nf.Obj(meta=nf.Obj(id="s1", shard="1/3"), task=nf.Obj(ext=nf.Obj(args=None), accelerator=None),
                   h5ad=nf.StagedFile("s1.h5mu"))  # fmt: skip
    assert nf.evaluate("task.ext.args ?: ''", scope) == ""
    assert nf.evaluate("task.accelerator ? 'cuda' : 'cpu'", scope) == "cpu"
    assert nf.evaluate("meta.shard ? \"--shard ${meta.shard}\" : ''", scope) == "--shard 1/3"
    assert nf.evaluate("h5ad.extension", scope) == "h5mu"
    assert nf.interpolate(r"omnicell \$(x) ${meta.id}.${h5ad.extension} $meta.id", scope) == "omnicell $(x) s1.h5mu s1"
    with pytest.raises(nf.GroovyError):
        nf.evaluate("meta.id.collect { it }", scope)


def test_embed_scatter_subworkflow_chain(tmp_path):
    """What OMNICELL_EMBED_SCATTER does for N=3: three embed tasks (meta.shard) gathered by the merge task."""
    import anndata as ad

    embed = nf.read_module(NFCORE / "modules" / "omnicell" / "embed")
    merge = nf.read_module(NFCORE / "modules" / "omnicell" / "merge")
    data = '"${moduleDir}/../../../../galaxy/test-data/pbmc_small.h5ad"'
    shards = []
    for index in range(3):
        meta = f"[ id:'test', shard:'{index}/3', shard_index:{index}, shard_count:3 ]"
        case = nf.TestCase(f"shard {index}", False, [f"[ {meta}, file({data}) ]", "[]"])
        result = nf.run_test(embed, case, tmp_path / f"embed{index}")
        assert result.process.returncode == 0, result.process.stderr[-2000:]
        (output,) = result.outputs["test.shard" + f"{index}of3.h5ad"]
        shards.append(output)
    files = ", ".join(f'file("{path}")' for path in reversed(shards))  # any order
    result = nf.run_test(merge, nf.TestCase("gather", False, [f"[ [ id:'test' ], [ {files} ] ]"]), tmp_path / "merge")
    assert result.process.returncode == 0, result.process.stderr[-2000:]
    merged = ad.read_h5ad(result.outputs["test.h5ad"][0])
    source = ad.read_h5ad(NFCORE.parent / "galaxy" / "test-data" / "pbmc_small.h5ad")
    assert list(merged.obs_names) == list(source.obs_names)
    assert merged.obsm["X_omnicell"].shape[0] == source.n_obs
