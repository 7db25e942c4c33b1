"""Execute the tutorial notebooks in place and store them with their outputs, kept small.

    OMNICELL_DATA_DIR=/path/to/shared/data python scripts/execute_notebooks.py [notebooks/01_single_cell.ipynb ...]

Offline, like ``scripts/build_docs.sh``: the bundled model and the data files of ``OMNICELL_DATA_DIR``. What is
stored: the cells' results and figures (PNG, scaled down to ``MAX_SCALE`` of their drawn size and at most
``MAX_WIDTH`` pixels wide, in a palette of ``COLOURS``), not stderr (progress bars, library
notices), not execution timestamps, so that a re-run changes the files only where a result changed.
"""

from __future__ import annotations

import base64
import io
import os
import sys
import time
from pathlib import Path

import nbformat
from nbclient import NotebookClient

ROOT = Path(__file__).resolve().parents[1]

#: Stored figures are at most this wide (pixels) and at most this share of the size they were drawn at ...
MAX_WIDTH, MAX_SCALE = 1200, 0.6
#: ... in a palette of this many colours (categorical plots use far fewer; gradients stay smooth enough).
COLOURS = 128


def shrink_png(data: str) -> str:
    """A figure (base64 PNG) made small: scaled down, palette colours, optimised."""
    from PIL import Image

    image = Image.open(io.BytesIO(base64.b64decode(data)))
    scale = min(MAX_SCALE, MAX_WIDTH / image.width)
    size = (max(1, round(image.width * scale)), max(1, round(image.height * scale)))
    image = image.convert("RGBA").resize(size, Image.Resampling.LANCZOS)
    image = image.quantize(colors=COLOURS, method=Image.Quantize.FASTOCTREE)
    out = io.BytesIO()
    image.save(out, "PNG", optimize=True)
    return base64.b64encode(out.getvalue()).decode("ascii")


def _trim(notebook: nbformat.NotebookNode) -> None:
    """Drop stderr streams and per-run metadata; keep results, stdout and figures."""
    for cell in notebook.cells:
        if cell.cell_type != "code":
            continue
        cell.metadata.pop("execution", None)
        cell.outputs = [out for out in cell.outputs if not (out.output_type == "stream" and out.name == "stderr")]
        for out in cell.outputs:
            if "image/png" in out.get("data", {}):
                out.data["image/png"] = shrink_png(out.data["image/png"])
                out.get("metadata", {}).pop("image/png", None)  # a drawn size no longer true
    notebook.metadata.pop("widgets", None)


def main(paths: list[str]) -> None:
    os.environ.setdefault("OMNICELL_DOCS_OFFLINE", "1")
    os.environ.setdefault("MPLBACKEND", "module://matplotlib_inline.backend_inline")
    os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT / "src"), os.environ.get("PYTHONPATH")]))
    notebooks = [Path(p) for p in paths] or sorted((ROOT / "notebooks").glob("*.ipynb"))
    for path in notebooks:
        start = time.perf_counter()
        notebook = nbformat.read(path, as_version=4)
        NotebookClient(
            notebook, timeout=1200, kernel_name="python3", resources={"metadata": {"path": str(ROOT / "notebooks")}}
        ).execute()
        _trim(notebook)
        nbformat.write(notebook, path)
        print(f"{path.name}: {time.perf_counter() - start:.0f} s, {path.stat().st_size / 1024:.0f} KiB", flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
