"""Sphinx configuration of omnicell's documentation.

Build (offline too): ``pip install -e '.[docs]'`` then ``sphinx-build -b html docs docs/_build/html``.
The API tables, the command-line help and the tutorial notebooks are taken from the installed
package and ``notebooks/`` at build time (see ``_ext/omnicell_docs.py``).
"""

from __future__ import annotations

import os
import shutil
import sys
import warnings
from datetime import date
from importlib.metadata import metadata
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE / "_ext"))

from omnicell_docs import class_docstring_attributes  # noqa: E402

# sphinx-autodoc-typehints on Sphinx 9 (a Python deprecation notice, not a documentation problem)
warnings.filterwarnings("ignore", message=".*_RstSnippetParser.set_application.*")

# -- Project -----------------------------------------------------------------------------------------

_info = metadata("omnicell")
project = _info["Name"]
author = "omnicell developers"
copyright = f"{date.today():%Y}, {author}"
version = release = _info["Version"]
repository_url = "https://github.com/omnicell/omnicell"

# -- Tutorials: notebooks/ is the single source; copies are made here (docs/.gitignore) -------------

TUTORIALS = HERE / "tutorials"
for _stale in TUTORIALS.glob("*.ipynb"):  # copies of notebooks since removed or renamed
    if not (ROOT / "notebooks" / _stale.name).exists():
        _stale.unlink()
for _notebook in sorted((ROOT / "notebooks").glob("*.ipynb")):
    _copy = TUTORIALS / _notebook.name
    if not _copy.exists() or _copy.read_bytes() != _notebook.read_bytes():
        shutil.copyfile(_notebook, _copy)

# -- General -----------------------------------------------------------------------------------------

extensions = [
    "myst_nb",
    "sphinx.ext.autodoc",
    "sphinx.ext.autosummary",
    "sphinx.ext.napoleon",
    "sphinx_autodoc_typehints",  # after napoleon
    "sphinx.ext.intersphinx",
    "sphinx.ext.viewcode",
    "sphinx.ext.mathjax",
    "omnicell_docs",  # _ext/: API tables from __all__, CLI help, offline intersphinx
]

templates_path = ["_templates"]
exclude_patterns = ["_build", "Thumbs.db", ".DS_Store", "**.ipynb_checkpoints", "_ext", "_templates"]
source_suffix = {".rst": "restructuredtext", ".md": "myst-nb", ".ipynb": "myst-nb"}
master_doc = "index"
default_role = "literal"
pygments_style = "default"
nitpicky = False

# -- MyST / myst-nb ----------------------------------------------------------------------------------

myst_enable_extensions = ["colon_fence", "deflist", "dollarmath"]
myst_heading_anchors = 3
# Every notebook is executed at each build (offline: the bundled model and OMNICELL_DATA_DIR's files), so a
# notebook that breaks fails the build (CI builds the docs). OMNICELL_DOCS_EXECUTE takes myst-nb's execution
# modes: "force" (default), "off" (a quick build that shows the outputs stored in notebooks/, made by
# scripts/execute_notebooks.py), "auto" or "cache". Documented for contributors in docs/tutorials/index.md.
nb_execution_mode = os.environ.get("OMNICELL_DOCS_EXECUTE", "force")
nb_execution_timeout = int(os.environ.get("OMNICELL_DOCS_CELL_TIMEOUT", "600"))  # seconds per cell
nb_execution_raise_on_error = True
nb_execution_show_tb = True  # the traceback of a failing cell in the build log
nb_merge_streams = True
nb_output_stderr = "remove"  # progress bars and library notices on stderr are not shown

# -- Autodoc, autosummary, napoleon ------------------------------------------------------------------

API_MODULES = ["pp", "tl", "pl", "get", "datasets", "models", "nn", "data"]  # the subpackages api.md documents

autosummary_generate = True
autosummary_imported_members = False
autosummary_context = {
    # class.rst: attributes the class docstring already describes (napoleon), not documented twice
    "docstring_attributes": class_docstring_attributes([f"omnicell.{m}" for m in API_MODULES]),
    "skip_members": ["training", "call_super_init", "dump_patches", "T_destination"],  # torch.nn.Module
}
autodoc_member_order = "groupwise"
autodoc_default_options = {"show-inheritance": False}
autoclass_content = "class"
napoleon_google_docstring = False
napoleon_numpy_docstring = True
napoleon_include_init_with_doc = False
napoleon_use_rtype = True
napoleon_use_param = True
napoleon_use_ivar = False
# omnicell's Returns sections are prose ("None, or a copy of ``adata`` ... Writes" followed by a
# definition list of the slots written), not numpydoc "type / description" pairs: render them as
# they are, under a "Returns" heading (the return type comes from the annotation).
napoleon_custom_sections = ["Returns"]
typehints_defaults = "braces"
typehints_document_rtype = True
always_document_param_types = False

# -- Intersphinx -------------------------------------------------------------------------------------
# Fetched at build time. Without network (or while a site is down) the inventories are skipped:
# the build still succeeds, with -W too (omnicell_docs demotes that warning), only without links
# to these projects. OMNICELL_DOCS_OFFLINE=1 skips the fetch altogether.

intersphinx_mapping = {
    "python": ("https://docs.python.org/3", None),
    "anndata": ("https://anndata.readthedocs.io/en/stable/", None),
    "scanpy": ("https://scanpy.readthedocs.io/en/stable/", None),
    "squidpy": ("https://squidpy.readthedocs.io/en/stable/", None),
    "mudata": ("https://mudata.readthedocs.io/en/latest/", None),
    "numpy": ("https://numpy.org/doc/stable/", None),
    "pandas": ("https://pandas.pydata.org/pandas-docs/stable/", None),
    "scipy": ("https://docs.scipy.org/doc/scipy/", None),
    "torch": ("https://docs.pytorch.org/docs/stable/", None),
}
if os.environ.get("OMNICELL_DOCS_OFFLINE", "").lower() in {"1", "true", "yes"}:
    intersphinx_mapping = {}
intersphinx_timeout = 10
intersphinx_disabled_reftypes = ["*:doc", "std:label"]  # only cross-link API objects

# -- HTML --------------------------------------------------------------------------------------------

html_theme = "sphinx_book_theme"
html_title = f"omnicell {release}"
html_static_path: list[str] = []
html_theme_options = {
    "repository_url": repository_url,
    "use_repository_button": True,
    "path_to_docs": "docs/",
    "navigation_with_keys": False,
}
html_show_sourcelink = False
