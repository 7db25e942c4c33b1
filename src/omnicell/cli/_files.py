"""Reading the command's input files and writing its outputs; the errors a wrapper shows."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from omnicell._core.atomic import atomic_output

__all__ = ["InputError", "check_output", "read_data", "read_reference", "write_data"]

_SUFFIXES = (".h5ad", ".h5mu")


class InputError(ValueError):
    """Bad input or option: the message names the file or option and what to do (exit status 1).

    ``details``: lines printed after the one-line message where one line cannot hold what the user needs
    (the files to place by hand for an offline download).
    """

    def __init__(self, message: str, *, details: tuple[str, ...] | list[str] = ()) -> None:
        super().__init__(message)
        self.details = tuple(details)


def _check_file(path: Path, what: str) -> None:
    if not path.exists():
        raise InputError(f"{what} {path} does not exist.")
    if path.is_dir():
        raise InputError(f"{what} {path} is a folder; give an .h5ad file.")
    if not os.access(path, os.R_OK):
        raise InputError(f"{what} {path} is not readable (check its permissions).")


def read_data(path: Path, *, mod: str | None, what: str = "input file", backed: bool = False) -> tuple[Any, str | None]:
    """``(AnnData or MuData, modality)`` of an .h5ad or .h5mu file, with one-line errors.

    An .h5mu needs a modality: ``mod``, else ``'rna'`` when present.
    """
    import h5py

    path = Path(path)
    _check_file(path, what)
    if path.suffix not in _SUFFIXES:
        raise InputError(f"{what} {path} is not an .h5ad or .h5mu file (convert it with scanpy or anndata first).")
    if not h5py.is_hdf5(path):
        raise InputError(f"{what} {path} is not an HDF5 (.h5ad/.h5mu) file; is it truncated or of another format?")
    try:
        if path.suffix == ".h5mu":
            try:
                import mudata
            except ImportError:
                raise InputError(f"{what} {path} is an .h5mu file: install mudata (pip install mudata).") from None
            data = mudata.read_h5mu(path)
            if mod is None:
                mod = "rna" if "rna" in data.mod else None
            if mod not in data.mod:
                raise InputError(
                    f"{what} {path} has no modality {mod!r}; choose one with --mod ({', '.join(data.mod)})."
                )
            return data, mod
        import anndata as ad

        if mod is not None:
            raise InputError(f"--mod {mod} applies to .h5mu files; {what} {path} is an .h5ad.")
        return ad.read_h5ad(path, backed="r" if backed else None), None
    except InputError:
        raise
    except Exception as error:  # h5py and anndata raise many kinds on a damaged file
        detail = str(error).splitlines()[0] if str(error) else type(error).__name__
        raise InputError(f"cannot read {what} {path} ({detail}); is it a valid {path.suffix} file?") from error


def read_reference(path: Path | None, *, mod: str | None, command: str, index: bool = False):
    """The AnnData of ``--reference`` (the modality ``mod`` of an .h5mu).

    With ``index`` (the function also takes a reference index), an index folder or .tar is passed on as
    its path, for the function to open memory-mapped.
    """
    if path is None:
        raise InputError(f"{command} needs --reference FILE: an .h5ad with labelled reference cells.")
    if index:
        from omnicell.data import is_index_folder, is_index_tar

        if is_index_folder(path) or is_index_tar(path):
            return str(path)
        if Path(path).is_dir():
            raise InputError(
                f"reference {path} is a folder but not a reference index (no manifest.json); give an .h5ad or a "
                "folder written by `omnicell index`."
            )
    data, mod = read_data(path, mod=mod if Path(path).suffix == ".h5mu" else None, what="reference file")
    return data.mod[mod] if mod is not None else data


def check_output(output: Path, inputs: list[Path], *, suffixes: tuple[str, ...] = _SUFFIXES) -> None:
    """Refuse an output that is an input or has the wrong suffix, before any work."""
    output = Path(output)
    if output.suffix not in suffixes:
        raise InputError(f"-o {output}: the output must end in {' or '.join(suffixes)}.")
    for path in inputs:
        if Path(path).exists() and output.resolve() == Path(path).resolve():
            raise InputError(f"-o {output}: the output must differ from the input (the input is never modified).")
    if output.exists() and output.is_dir():
        raise InputError(f"-o {output} is a folder; give a file name.")
    data_suffixes = [Path(path).suffix for path in inputs if Path(path).suffix in _SUFFIXES]
    if output.suffix in _SUFFIXES and data_suffixes and output.suffix != data_suffixes[0]:
        raise InputError(
            f"-o {output}: the input is an {data_suffixes[0]} file, so the output must end in {data_suffixes[0]}."
        )


def write_data(data: Any, output: Path) -> None:
    """Write an AnnData (.h5ad) or MuData (.h5mu) atomically (hidden temporary beside it, renamed)."""
    output = Path(output)
    is_mudata = type(data).__name__ == "MuData"
    if is_mudata and output.suffix != ".h5mu":
        raise InputError(f"-o {output}: the input was an .h5mu file, so the output must end in .h5mu.")
    if not is_mudata and output.suffix != ".h5ad":
        raise InputError(f"-o {output}: the output of an .h5ad input must end in .h5ad.")
    with atomic_output(output) as temporary:
        if is_mudata:
            data.write_h5mu(temporary)
        else:
            data.write_h5ad(temporary)
