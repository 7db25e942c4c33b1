"""The nf-core modules and subworkflow in wrappers/nf-core.

nf-core's own linter (nf-core/tools, through wrappers/nf-core/lint.sh with the schemas vendored in
wrappers/nf-core/schemas) must report nothing but the checks that need the network. Every ``meta.yml`` and
``environment.yml`` is validated against those schemas here too, and every test of every module's
``tests/main.nf.test`` is run without Nextflow: its ``script:`` (or, for ``-stub`` tests, ``stub:``) block rendered
with the test's inputs and ``ext.args`` (tests/_nfcore_module.py), run with bash against the real ``omnicell``
command, its ``versions`` topic evaluated, and the result compared with the test's snapshot file.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
from pathlib import Path

import pytest
import yaml

import omnicell

jsonschema = pytest.importorskip("jsonschema", reason="jsonschema is in the test extra")

import _nfcore_module as nf  # noqa: E402  (tests/ is on the path: pyproject's pythonpath)
import _nfcore_snapshot as snap  # noqa: E402
from _helpers import shown_options  # noqa: E402

NFCORE = Path(__file__).resolve().parents[2] / "wrappers" / "nf-core"
MODULES = sorted(path.parent for path in (NFCORE / "modules").glob("*/*/main.nf"))
SUBWORKFLOWS = sorted(path.parent for path in (NFCORE / "subworkflows").glob("*/main.nf"))
REQUIRED = {"embed", "merge", "spatialdomains", "markergenes", "annotate", "genemodules", "finetune"}
GPU_MODULES = {"embed", "markergenes", "finetune", "perturbgenes", "perturbniche"}
VERSION = omnicell.__version__
# what bioconda publishes for a noarch: python recipe (build string pyhdfd78af_0), and the project's CUDA image
DOCKER = f"quay.io/biocontainers/omnicell:{VERSION}--pyhdfd78af_0"
SINGULARITY = f"https://depot.galaxyproject.org/singularity/omnicell:{VERSION}--pyhdfd78af_0"
CUDA = f"quay.io/omnicell/omnicell:{VERSION}-cuda"
# Checks that cannot pass offline, whatever a module says: they resolve its container with `nextflow inspect` or
# look the package up on anaconda.org (omnicell is not on bioconda yet).
NETWORK_CHECKS = {"docker_tag", "singularity_tag", "bioconda_version"}
# nf-core/tools 4.2.1 warns on every label outside its seven standard ones (`process_gpu` included), so the GPU
# modules carry a standard label only and take a GPU from the task's `accelerator` directive; nothing else is accepted.


def _schema(relative: str) -> dict:
    return json.loads((NFCORE / "schemas" / relative).read_text(encoding="utf-8"))


def _yaml(path: Path):
    return yaml.safe_load(path.read_text(encoding="utf-8"))


def test_required_modules_exist():
    assert REQUIRED <= {module.name for module in MODULES}
    assert all(re.fullmatch(r"[a-z0-9]+", module.name) for module in MODULES), "nf-core names: lowercase, no dashes"
    # flat, named <filetype>_<operation>_<tool>
    assert [sub.name for sub in SUBWORKFLOWS] == ["h5ad_embed_omnicell"]


@pytest.mark.parametrize("module", MODULES, ids=lambda m: m.name)
def test_module_meta_and_environment_follow_nfcore_schemas(module):
    meta = _yaml(module / "meta.yml")
    jsonschema.validate(meta, _schema("modules/meta-schema.json"))
    jsonschema.validate(_yaml(module / "environment.yml"), _schema("modules/environment-schema.json"))
    assert meta["name"] == f"omnicell_{module.name}"
    # meta.yml documents the process's channels: as many inputs, the same emit names, the versions topic
    parsed = nf.read_module(module)
    assert len(meta["input"]) == len(parsed.inputs)
    assert [len(channel) if isinstance(channel, list) else 1 for channel in meta["input"]] == [
        len(names) for names in parsed.inputs
    ]
    emits = re.findall(r"emit:\s*([a-z0-9_]+)", (module / "main.nf").read_text(encoding="utf-8"))
    assert list(meta["output"]) == emits
    (version_command,) = [command for _, _, command in parsed.versions]
    assert [next(iter(element)) for element in meta["topics"]["versions"][0]] == [
        "${task.process}",
        "omnicell",
        version_command,
    ]
    assert meta["output"]["versions_omnicell"] == meta["topics"]["versions"]
    for element in _elements([*meta["input"], *meta["output"].values()]):  # h5ad/h5mu files: EDAM's HDF5 format
        (spec,) = element.values()
        if "h5ad" in spec.get("pattern", ""):
            assert {"edam": "http://edamontology.org/format_3590"} in spec["ontologies"]


def _elements(channel) -> list[dict]:
    """The elements of meta.yml channels: a tuple is a list, an element a one-key dict; outputs nest one more list."""
    return [channel] if isinstance(channel, dict) else [element for item in channel for element in _elements(item)]


@pytest.mark.parametrize("module", MODULES, ids=lambda m: m.name)
def test_module_follows_nfcore_conventions(module):
    text = (module / "main.nf").read_text(encoding="utf-8")
    parsed = nf.read_module(module)
    assert parsed.process == f"OMNICELL_{module.name.upper()}"
    labels = re.findall(r"^\s*label '(\w+)'", text, re.MULTILINE)
    standard = {"process_single", "process_low", "process_medium", "process_high", "process_long"}
    assert len(labels) == 1 and labels[0] in standard
    assert "task.ext.args ?: ''" in parsed.script and "task.ext.prefix ?:" in parsed.script
    assert "versions.yml" not in text  # versions come from the `versions` topic
    assert parsed.versions == [("versions_omnicell", "omnicell", "omnicell --version | sed 's/^omnicell //'")]
    assert 'conda "${moduleDir}/environment.yml"' in text
    assert "workflow.containerEngine in ['singularity', 'apptainer']" in text
    assert f"'{DOCKER}'" in text and f"'{SINGULARITY}'" in text
    assert not re.search(r"\bmeta\.(?!id\b)\w+", parsed.script + parsed.stub), "nf-core allows only standard meta keys"
    if module.name in GPU_MODULES:  # a GPU request: the CUDA image, and a device that falls back to CPU
        assert f"'{CUDA}'" in text and f"'docker://{CUDA}'" in text
        assert "task.accelerator ? 'auto' : 'cpu'" in parsed.script
    else:
        assert "accelerator" not in text and "--device" not in parsed.script


def test_environments_pin_the_package_version():
    for module in MODULES:
        assert _yaml(module / "environment.yml")["dependencies"] == [f"bioconda::omnicell={VERSION}"]


def test_cuda_image_is_the_one_build_sh_tags(tmp_path):
    docker = tmp_path / "docker"  # a stand-in that prints what build.sh asks of it
    docker.write_text('#!/bin/sh\nprintf "%s\\n" "$@"\n', encoding="utf-8")
    docker.chmod(0o755)
    build = NFCORE.parent / "containers" / "build.sh"
    args = subprocess.run(["bash", str(build), "cuda"], env={"PATH": f"{tmp_path}:/usr/bin:/bin"},
                          capture_output=True, text=True, check=True).stdout.splitlines()  # fmt: skip
    assert args[args.index("-t") + 1] == CUDA and "TORCH=cuda" in args


@pytest.mark.parametrize("subworkflow", SUBWORKFLOWS, ids=lambda s: s.name)
def test_subworkflow_follows_nfcore_layout(subworkflow):
    meta = _yaml(subworkflow / "meta.yml")
    jsonschema.validate(meta, _schema("subworkflows/yaml-schema.json"))
    assert meta["name"] == subworkflow.name
    text = (subworkflow / "main.nf").read_text(encoding="utf-8")
    assert f"workflow {subworkflow.name.upper()} {{" in text
    includes = dict(re.findall(r"include \{ (\w+) \} from '([^']+)'", text))
    assert sorted(includes) == sorted(f"OMNICELL_{c.split('/')[-1].upper()}" for c in meta["components"])
    # copied into a pipeline (subworkflows/nf-core/<name>/), each include resolves to modules/nf-core/<component>/
    pipeline = Path("/pipeline")
    for component in meta["components"]:
        link = includes[f"OMNICELL_{component.split('/')[-1].upper()}"]
        target = (pipeline / "subworkflows" / "nf-core" / subworkflow.name / link).resolve()
        assert target == pipeline / "modules" / "nf-core" / component / "main"
        assert (NFCORE / "modules" / component / "main.nf").exists()


def _cases():
    for module in MODULES:
        parsed = nf.read_module(module)
        snapshots = snap.read_snapshots(module)
        for case in nf.read_tests(module):
            yield pytest.param(parsed, case, snapshots.get(case.name), id=f"{module.name}-{case.name}")


@pytest.mark.parametrize(("module", "case", "snapshot"), list(_cases()))
def test_module_test_runs_against_the_cli(module, case, snapshot, tmp_path):
    result = nf.run_test(module, case, tmp_path)
    assert result.process.returncode == 0, (
        f"{module.process} ({case.name}) exited {result.process.returncode}\n{result.command}\n"
        f"{result.process.stderr[-3000:]}"
    )
    assert result.versions == {"versions_omnicell": [module.process, "omnicell", VERSION]}
    for name, files in result.outputs.items():
        for file in files:
            assert case.stub or file.is_dir() or file.stat().st_size > 0, f"{name} is empty"
    # the snapshot nf-test compares with: output names and versions (`python tests/_nfcore_snapshot.py` rewrites it)
    assert snapshot == result.snapshot(module)


@pytest.mark.parametrize("module", [m for m in MODULES if m.name in GPU_MODULES], ids=lambda m: m.name)
def test_gpu_request_runs_on_a_cpu_only_machine(module, tmp_path):
    """With ``accelerator`` set (a GPU request) on a machine without CUDA, as a CPU image is: it runs on the CPU."""
    parsed = nf.read_module(module)
    case = next(case for case in nf.read_tests(module) if not case.stub)
    result = nf.run_test(parsed, case, tmp_path, accelerator=1)
    assert "--device auto" in result.command
    assert result.process.returncode == 0, result.process.stderr[-3000:]


def test_renderer_reads_the_groovy_the_modules_use():
    scope = nf.Obj(meta=nf.Obj(id="s1"), task=nf.Obj(ext=nf.Obj(args=None), accelerator=None), shard_count=3,
                   shard_index=1, h5ad=nf.StagedFile("s1.h5mu"), params=nf.Obj(base="/data/"))  # fmt: skip
    assert nf.evaluate("task.ext.args ?: ''", scope) == ""
    assert nf.evaluate("task.accelerator ? 'auto' : 'cpu'", scope) == "cpu"
    shard = "(shard_count ?: 1) == 1 ? '' : \"--shard ${shard_index}/${shard_count}\""
    assert nf.evaluate(shard, scope) == "--shard 1/3"
    assert nf.evaluate(shard, nf.Obj(scope, shard_count=nf.Files())) == ""  # [] (none): the whole file
    assert nf.evaluate("h5ad.extension", scope) == "h5mu"
    assert nf.evaluate("file(params.base + 'x.h5ad')", scope) == nf.StagedFile("/data/x.h5ad")
    assert nf.evaluate("1 + 2", scope) == 3
    assert nf.interpolate(r"omnicell \$(x) ${meta.id}.${h5ad.extension} $meta.id", scope) == "omnicell $(x) s1.h5mu s1"
    with pytest.raises(nf.GroovyError):
        nf.evaluate("meta.id.collect { it }", scope)


def test_embed_scatter_subworkflow_chain(tmp_path):
    """What H5AD_EMBED_OMNICELL does, per its test: N embed tasks (shard I/N as inputs) gathered by one merge task."""
    import anndata as ad

    (subworkflow,) = SUBWORKFLOWS
    snapshots = snap.read_snapshots(subworkflow)
    (case,) = snap.subworkflow_inputs(subworkflow)
    item, _, shards = case.inputs
    meta, h5ad = snap.split_pair(item)
    assert int(shards) > 1
    result, tasks = snap.run_embed_scatter(NFCORE, meta, h5ad, int(shards), tmp_path)
    assert result.process.returncode == 0, result.process.stderr[-2000:]
    (merged_path,) = result.outputs["h5ad"]
    assert snapshots[case.name] == [[[{"id": "test"}, merged_path.name]], tasks]
    merged = ad.read_h5ad(merged_path)
    source = ad.read_h5ad(nf.TESTDATA / "pbmc_small.h5ad")
    assert list(merged.obs_names) == list(source.obs_names)
    assert merged.obsm["X_omnicell"].shape[0] == source.n_obs


def _lint_results(output: str) -> list[tuple[str, str, str, str]]:
    """(``[!]``/``[✗]``, component, check, message) of each warned or failed check in the linter's plain text."""
    results, kind = [], None
    for block in re.split(r"\n\s*\n", output):
        lines = [line.rstrip() for line in block.strip().splitlines()]
        header = re.fullmatch(
            r"\[(!|✗)\]\s+\d+ (?:Module|Subworkflow) Tests? (?:Warning|Failed)", lines[0] if lines else ""
        )
        if header:
            kind = header.group(1)
            continue
        if kind and lines and re.fullmatch(r"\S+ \w+", lines[0]) and len(lines) >= 3:
            component, check = lines[0].split()
            results.append((kind, component, check, " ".join(lines[3:])))
        elif lines and lines[0].startswith("[✔]"):
            kind = None
    return results


def test_lint_results_are_read_from_the_linters_output():
    sample = (
        "[!] 1 Module Test Warning\n\nomnicell/embed process_standard_label\nmodules/nf-core/omnicell/embed/main.nf\n"
        "https://nf-co.re/x\nNon-standard labels found: `process_gpu`\n\n[✗] 1 Module Test Failed\n\n"
        "omnicell/embed docker_tag\nmodules/nf-core/omnicell/embed/main.nf\nhttps://nf-co.re/x\nUnable to resolve\n\n"
        "[✔] 3 Tests Passed\n"
    )
    assert _lint_results(sample) == [
        ("!", "omnicell/embed", "process_standard_label", "Non-standard labels found: `process_gpu`"),
        ("✗", "omnicell/embed", "docker_tag", "Unable to resolve"),
    ]


def test_nfcore_linter_accepts_the_modules_and_subworkflow():
    """nf-core/tools' linter (wrappers/nf-core/lint.sh): nothing but the checks that need the network."""
    env = dict(os.environ)
    completed = subprocess.run(["bash", str(NFCORE / "lint.sh")], capture_output=True, text=True, env=env, timeout=900)
    output = completed.stdout + completed.stderr
    if "nf-core/tools" not in output and re.search(
        r"(No matching distribution|Could not find a version|network)", output
    ):
        pytest.skip(f"nf-core/tools cannot be installed from PyPI here: {output[-500:]}")
    assert "Tests Passed" in output, output[-3000:]
    results = _lint_results(output)
    left = [r for r in results if r[2] not in NETWORK_CHECKS]
    assert not left, "\n".join(" ".join(r) for r in left)
    # each lint run covered every component
    summary = re.findall(r"\[✔\]\s+(\d+) Tests Passed", output)
    assert len(summary) == 2 and all(int(count) > 0 for count in summary)


@pytest.mark.parametrize("module", MODULES, ids=lambda m: m.name)
def test_module_passes_only_the_options_its_command_shows(module):
    """The script's omnicell call uses only options its command's --help shows: no hidden alias (--seed, --n-genes)
    and no option the command accepts only to ignore it (--threads or --device where no model runs)."""
    from omnicell.cli import build_parser

    text = (module / "main.nf").read_text(encoding="utf-8")
    script = text[text.index("script:") : text.index("stub:")]
    command = re.search(r"omnicell ([a-z][a-z-]*)", script).group(1)
    options = set(re.findall(r"(?<![\w-])(--[a-z][a-z-]*)", script))
    name, shown = shown_options(build_parser(), [command])
    assert name == command
    assert options <= shown, f"omnicell {command}: {sorted(options - shown)}"
