"""Helpers shared by omnicell's plots: saving and showing the way scanpy does."""

from __future__ import annotations

import os
from pathlib import Path

from matplotlib.figure import Figure

__all__ = ["finish_figure", "savefig_or_show"]

_EXTENSIONS = (".png", ".pdf", ".svg", ".jpg", ".jpeg", ".tif", ".tiff", ".eps")


def finish_figure(figure: Figure, name: str, axes, *, show: bool | None, save: bool | str | None, return_fig: bool):
    """What scanpy's plots return: the Figure with ``return_fig=True`` (saved if asked, not shown).

    Otherwise save and/or show, and return ``axes`` unless the figure was shown.
    """
    if return_fig:
        savefig_or_show(figure, name, show=False, save=save, close=False)
        return figure
    shown = savefig_or_show(figure, name, show=show, save=save)
    return None if shown else axes


def savefig_or_show(
    figure: Figure, name: str, *, show: bool | None, save: bool | str | None, close: bool = True
) -> bool:
    """Save and/or show ``figure`` following scanpy's rules (then close it); return whether it was shown.

    ``save=True`` writes ``sc.settings.figdir / f"{name}.{sc.settings.file_format_figs}"``; a string
    is appended to ``name`` (``save='_pbmc.pdf'`` gives ``{name}_pbmc.pdf``), as scanpy does, unless
    it names a folder or is an absolute path, which is used as the file path.
    ``show=None`` follows ``sc.settings.autoshow``.
    """
    import matplotlib.pyplot as plt
    import scanpy as sc

    show = sc.settings.autoshow if show is None else show
    save = sc.settings.autosave if save is None else save
    if save:
        if isinstance(save, str) and (os.sep in save or "/" in save):
            path = Path(save)
        else:
            suffix = save if isinstance(save, str) else ""
            extension = next((e for e in _EXTENSIONS if suffix.lower().endswith(e)), None)
            if extension is None:
                extension = "." + str(sc.settings.file_format_figs)
            else:
                suffix = suffix[: -len(extension)]
            path = Path(sc.settings.figdir) / f"{name}{suffix}{extension}"
        if path.suffix.lower() not in _EXTENSIONS:
            path = path.with_name(path.name + "." + str(sc.settings.file_format_figs))
        path.parent.mkdir(parents=True, exist_ok=True)
        figure.savefig(path, bbox_inches="tight")  # dpi: rcParams["savefig.dpi"], as scanpy
    if show:
        plt.show()
    if close and (save or show):
        plt.close(figure)
    return bool(show)
