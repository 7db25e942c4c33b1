"""The conda recipe (wrappers/conda/meta.yaml) against an sdist built from this checkout, as bioconda would build it.

The recipe downloads the release's sdist from PyPI and checks its sha256. A checkout's sdist differs from the
release's as soon as any file in it changes, so its hash cannot be compared with the recipe's; what is checked:
the recipe names the sdist this checkout builds (URL, name, version, layout the build script and tests need), the
sha256 field is a sha256, sdists build reproducibly (so the release's hash can be recomputed from its commit), and
scripts/update_conda_recipe.py writes a given sdist's version and hash into the recipe and nothing else.
"""

from __future__ import annotations

import hashlib
import importlib.util
import re
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest
import yaml

import omnicell

REPO = Path(__file__).resolve().parents[2]
RECIPE = REPO / "wrappers" / "conda" / "meta.yaml"


def _load_helper():
    spec = importlib.util.spec_from_file_location("update_conda_recipe", REPO / "scripts" / "update_conda_recipe.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _render(text: str) -> dict:
    """The recipe as conda-build sees it: jinja2 with conda-build's functions stubbed, then YAML."""
    jinja2 = pytest.importorskip("jinja2")

    def pin_subpackage(name, max_pin="x.x.x", exact=False):
        return f"pin_subpackage({name}, max_pin={max_pin}, exact={exact})"

    return yaml.safe_load(jinja2.Template(text).render(PYTHON="$PYTHON", pin_subpackage=pin_subpackage))


@pytest.fixture(scope="module")
def sdist(tmp_path_factory) -> Path:
    pytest.importorskip("build", reason="python -m build (pip install build) makes the sdist")
    out = tmp_path_factory.mktemp("sdist")
    subprocess.run([sys.executable, "-m", "build", "--sdist", "--outdir", str(out), str(REPO)],
                   check=True, capture_output=True, text=True, timeout=600)  # fmt: skip
    (built,) = out.glob("*.tar.gz")
    return built


def test_recipe_is_in_bioconda_form():
    recipe = _render(RECIPE.read_text())
    version = omnicell.__version__
    assert recipe["package"] == {"name": "omnicell", "version": version}
    assert recipe["source"]["url"] == f"https://pypi.org/packages/source/o/omnicell/omnicell-{version}.tar.gz"
    assert re.fullmatch(r"[0-9a-f]{64}", recipe["source"]["sha256"])
    assert "path" not in recipe["source"] and "git_url" not in recipe["source"]
    build = recipe["build"]
    assert build["noarch"] == "python" and build["number"] == 0
    assert build["script"] == "$PYTHON -m pip install . --no-deps --no-build-isolation -vvv"
    assert build["run_exports"] == ["pin_subpackage(omnicell, max_pin=x.x, exact=False)"]
    # the console script pyproject declares
    assert build["entry_points"] == ["omnicell = omnicell.cli:main"]
    assert 'omnicell = "omnicell.cli:main"' in (REPO / "pyproject.toml").read_text()
    assert {"omnicell", "omnicell.cli"} <= set(recipe["test"]["imports"])
    assert "omnicell --help" in recipe["test"]["commands"]
    about = recipe["about"]
    for key in ("home", "doc_url", "dev_url", "license", "license_family", "license_file", "summary"):
        assert about.get(key), f"about.{key} is missing"
    assert about["license"] == "MIT" == about["license_family"]
    assert recipe["extra"]["recipe-maintainers"]


def test_sdist_is_the_one_the_recipe_downloads(sdist):
    """Name, version and layout: the file the URL names, with what the build script, license and tests need."""
    recipe = _render(RECIPE.read_text())
    assert sdist.name == recipe["source"]["url"].rsplit("/", 1)[1]
    assert _load_helper().sdist_metadata(sdist) == ("omnicell", recipe["package"]["version"])
    top = f"omnicell-{recipe['package']['version']}"
    with tarfile.open(sdist) as archive:
        names = set(archive.getnames())
    for needed in ("pyproject.toml", recipe["about"]["license_file"], "src/omnicell/__init__.py",
                   "src/omnicell/_version.py", "src/omnicell/cli/__init__.py",
                   "src/omnicell/models/bundled/omnicell-tiny/model.safetensors"):  # fmt: skip
        assert f"{top}/{needed}" in names, f"the sdist lacks {needed}"


def test_sdist_builds_reproducibly(sdist, tmp_path):
    """The same tree gives the same bytes, so the recipe's hash can be recomputed from the release's commit."""
    subprocess.run([sys.executable, "-m", "build", "--sdist", "--outdir", str(tmp_path), str(REPO)],
                   check=True, capture_output=True, text=True, timeout=600)  # fmt: skip
    again = tmp_path / sdist.name
    assert hashlib.sha256(again.read_bytes()).hexdigest() == hashlib.sha256(sdist.read_bytes()).hexdigest()


def test_helper_writes_the_sdists_version_and_hash(sdist, tmp_path):
    recipe = tmp_path / "meta.yaml"
    original = RECIPE.read_text()
    recipe.write_text(original.replace(f'"{omnicell.__version__}"', '"0.0.1"'))
    subprocess.run([sys.executable, str(REPO / "scripts" / "update_conda_recipe.py"), str(sdist), "--recipe",
                    str(recipe)], check=True, capture_output=True, text=True)  # fmt: skip
    updated = recipe.read_text()
    expected_sha = hashlib.sha256(sdist.read_bytes()).hexdigest()
    rendered = _render(updated)
    assert rendered["source"]["sha256"] == expected_sha
    assert rendered["package"]["version"] == omnicell.__version__
    # only those two lines changed
    changed = [(a, b) for a, b in zip(original.splitlines(), updated.splitlines(), strict=True) if a != b]
    assert all("sha256:" in b for _, b in changed) and len(changed) <= 1


def test_helper_refuses_a_file_that_is_not_named_after_its_metadata(sdist, tmp_path):
    renamed = tmp_path / "omnicell-9.9.9.tar.gz"
    renamed.write_bytes(sdist.read_bytes())
    with pytest.raises(ValueError, match="not named omnicell-"):
        _load_helper().sdist_metadata(renamed)
