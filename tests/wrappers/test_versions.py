"""The wrappers require the omnicell release this checkout builds: the version is set once, in src/omnicell/_version.py.

Galaxy's macros.xml (and the data manager), the nf-core files and the conda recipe must spell it out (none can read
a file of the package), so this test checks them; the container reads it from the package at build time.
"""

from __future__ import annotations

import re
import tomllib
import xml.etree.ElementTree as ET
from pathlib import Path

import yaml

import omnicell

REPO = Path(__file__).resolve().parents[2]
WRAPPERS = REPO / "wrappers"
# PyPI name -> conda name, where they differ
CONDA_NAMES = {"torch": "pytorch", "igraph": "python-igraph"}


def test_galaxy_tool_version_is_the_package_version():
    tokens = {t.get("name"): t.text for t in ET.parse(WRAPPERS / "galaxy" / "macros.xml").getroot().iter("token")}
    assert tokens["@TOOL_VERSION@"] == omnicell.__version__
    requirement = next(ET.parse(WRAPPERS / "galaxy" / "macros.xml").getroot().iter("requirement"))
    assert (requirement.text, requirement.get("version")) == ("omnicell", "@TOOL_VERSION@")


def test_galaxy_data_manager_tokens_are_the_suites():
    """The data manager cannot import macros.xml (its own Tool Shed repository), so it repeats the tokens."""
    suite = {t.get("name"): t.text for t in ET.parse(WRAPPERS / "galaxy" / "macros.xml").getroot().iter("token")}
    manager = ET.parse(WRAPPERS / "galaxy" / "data_manager" / "omnicell_model_fetcher.xml").getroot()
    tokens = {t.get("name"): t.text for t in manager.iter("token")}
    assert tokens == {name: suite[name] for name in ("@TOOL_VERSION@", "@VERSION_SUFFIX@", "@PROFILE@")}
    requirement = next(manager.iter("requirement"))
    assert (requirement.text, requirement.get("version")) == ("omnicell", "@TOOL_VERSION@")


def test_nfcore_files_pin_the_package_version():
    found = 0
    for environment in (WRAPPERS / "nf-core" / "modules").glob("*/*/environment.yml"):
        assert yaml.safe_load(environment.read_text())["dependencies"] == [f"bioconda::omnicell={omnicell.__version__}"]
        # biocontainers' <version>--<build> and the project's CUDA image <version>-cuda
        containers = re.findall(r"/omnicell:([^-'\"]+)-", (environment.parent / "main.nf").read_text())
        assert containers and set(containers) == {omnicell.__version__}
        found += 1
    assert found >= 7


def test_container_reads_the_version_from_the_package():
    assert "src/omnicell/_version.py" in (WRAPPERS / "containers" / "build.sh").read_text()
    # The regex finds the version in the file it reads.
    text = (REPO / "src" / "omnicell" / "_version.py").read_text()
    assert re.search(r'^__version__ = "(.*)"$', text, re.MULTILINE).group(1) == omnicell.__version__


def test_conda_recipe_pins_the_package_version():
    """bioconda recipes spell the version out (the sdist URL needs it before anything is unpacked)."""
    recipe = (WRAPPERS / "conda" / "meta.yaml").read_text()
    assert re.findall(r'^\{% set version = "([^"]+)" %\}$', recipe, re.MULTILINE) == [omnicell.__version__]
    assert re.search(r"^\s*version: \{\{ version \}\}$", recipe, re.MULTILINE)


def test_conda_recipe_requires_what_pyproject_requires():
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    wanted = {}
    for requirement in project["dependencies"]:
        name, spec = re.fullmatch(r"([A-Za-z0-9_.-]+)\s*(.*)", requirement.split(";")[0].strip()).groups()
        wanted[CONDA_NAMES.get(name.lower(), name.lower())] = spec.replace(" ", "")
    recipe = (WRAPPERS / "conda" / "meta.yaml").read_text()
    run = recipe.split("  run:\n", 1)[1].split("\n\n", 1)[0]
    have = dict(re.fullmatch(r"\s*- (\S+)\s*(.*)", line).groups() for line in run.splitlines())
    have.pop("python")
    assert {name: spec.replace(" ", "") for name, spec in have.items()} == wanted
    assert f">={project['requires-python'].lstrip('>=')}" in run.splitlines()[0]
