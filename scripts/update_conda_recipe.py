"""Write a release's version and sdist sha256 into the conda recipe (wrappers/conda/meta.yaml).

    python -m build --sdist && python scripts/update_conda_recipe.py dist/omnicell-0.1.0.tar.gz

Run it on the sdist that is uploaded to PyPI: the recipe downloads that file and conda-build checks its hash.
Hatchling builds sdists reproducibly, so the sdist rebuilt from the release's commit has the same hash.
"""

from __future__ import annotations

import argparse
import hashlib
import re
import tarfile
from email.parser import HeaderParser
from pathlib import Path

RECIPE = Path(__file__).resolve().parents[1] / "wrappers" / "conda" / "meta.yaml"
VERSION_LINE = re.compile(r'^\{% set version = "([^"]+)" %\}$', re.MULTILINE)
SHA_LINE = re.compile(r"^(  sha256: )([0-9a-f]{64})$", re.MULTILINE)


def sdist_metadata(sdist: Path) -> tuple[str, str]:
    """(name, version) from the sdist's PKG-INFO; the file must be named ``{name}-{version}.tar.gz`` after them."""
    with tarfile.open(sdist) as archive:
        top_level = (m for m in archive.getmembers() if m.name.count("/") == 1 and m.name.endswith("/PKG-INFO"))
        member = next(top_level, None)
        if member is None:
            raise ValueError(f"{sdist} holds no top-level PKG-INFO: not an sdist")
        info = HeaderParser().parsestr(archive.extractfile(member).read().decode())
    name, version = info["Name"], info["Version"]
    if sdist.name != f"{name}-{version}.tar.gz":
        raise ValueError(f"{sdist.name} is not named {name}-{version}.tar.gz after its PKG-INFO")
    return name, version


def update(recipe_text: str, *, version: str, sha256: str) -> str:
    """The recipe with ``version`` and ``sha256`` set (each must occur once); the rest unchanged."""
    for pattern, what in ((VERSION_LINE, "{% set version = ... %}"), (SHA_LINE, "  sha256: <64 hex>")):
        if len(pattern.findall(recipe_text)) != 1:
            raise ValueError(f"the recipe must have exactly one line {what}")
    recipe_text = VERSION_LINE.sub(f'{{% set version = "{version}" %}}', recipe_text)
    return SHA_LINE.sub(rf"\g<1>{sha256}", recipe_text)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("sdist", type=Path, help="the release's sdist (omnicell-X.Y.Z.tar.gz)")
    parser.add_argument("--recipe", type=Path, default=RECIPE, help="recipe to update (default: %(default)s)")
    args = parser.parse_args(argv)
    name, version = sdist_metadata(args.sdist)
    if name != "omnicell":
        raise SystemExit(f"{args.sdist} is an sdist of {name}, not omnicell")
    sha256 = hashlib.sha256(args.sdist.read_bytes()).hexdigest()
    args.recipe.write_text(update(args.recipe.read_text(), version=version, sha256=sha256))
    print(f"{args.recipe}: version {version}, sha256 {sha256}")


if __name__ == "__main__":
    main()
