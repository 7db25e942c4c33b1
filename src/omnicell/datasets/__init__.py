"""Public datasets for the tutorials and the paper's analyses (``oc.datasets``).

Each function returns an :class:`~anndata.AnnData` with raw counts in ``X``, labels in ``obs`` and, for
spatial data, coordinates in ``obsm['spatial']``. Files are downloaded once (pooch, sha256-checked) into
``oc.settings.cache_dir / "datasets"``. Offline, set the environment variable ``OMNICELL_DATA_DIR`` (or pass
``folder=``) to a folder holding the files; :func:`files` lists their names, sources and hashes.
"""

from omnicell.datasets._datasets import files, pbmc68k_reduced, pbmc_cite, starmap_visual_cortex, visium_mouse_brain
from omnicell.datasets._pseudo_spots import pseudo_spots

__all__ = ["files", "pbmc68k_reduced", "pbmc_cite", "pseudo_spots", "starmap_visual_cortex", "visium_mouse_brain"]
