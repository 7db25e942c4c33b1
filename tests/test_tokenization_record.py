"""The typed record of a tokenisation in uns['omnicell']['tokenize'] and the shared docstring parts."""

from __future__ import annotations

import dataclasses

import anndata as ad
import numpy as np
import pytest

from omnicell._core.docs import DOC_PARTS, doc_params
from omnicell._core.tokenize_record import TokenizeRecord

OLD_LAYOUT = {  # a record as omnicell 0.1.0 wrote it (no gene_list_given, no neighbors_key, ...)
    "strategy": "expressed",
    "genes": ["g2", "g0"],
    "token_ids": [7, 5],
    "zero_fill": [1, 0],
    "n_genes": 2,
    "use_raw": False,
    "spatial": True,
    "n_neighbors": 3,
    "spatial_key": "spatial",
    "coord_scale": 0.5,
    "vocab_sha256": "abc",
    "model": "tiny",
    "model_sha256": "def",
    "omnicell_version": "0.1.0",
}


def test_record_survives_an_h5ad_round_trip(tmp_path):
    adata = ad.AnnData(np.zeros((2, 3), dtype=np.float32))
    record = TokenizeRecord.from_mapping(OLD_LAYOUT, strict=False)
    record.write(adata)
    adata.write_h5ad(tmp_path / "a.h5ad")
    back = TokenizeRecord.read(ad.read_h5ad(tmp_path / "a.h5ad"))
    assert back.genes.dtype.kind == "U" and list(back.genes) == ["g2", "g0"]
    assert back.token_ids.dtype == np.int64 and list(back.token_ids) == [7, 5]
    assert list(back.zero_fill) == [1, 0] and back.n_genes == 2 and isinstance(back.n_genes, int)
    assert back.spatial is True and back.n_neighbors == 3 and back.coord_scale == 0.5
    assert back.layer is None and back.neighbors_key is None and back.gene_list_given is False
    assert back.model == "tiny" and back.omnicell_version  # stamped on writing


def test_unknown_and_missing_keys():
    with pytest.raises(TypeError, match="no fields"):
        TokenizeRecord.from_mapping({**OLD_LAYOUT, "invented": 1})
    newer = TokenizeRecord.from_mapping({**OLD_LAYOUT, "invented": 1}, strict=False)
    assert newer.extra == {"invented": 1} and newer.to_dict()["invented"] == 1  # kept when rewritten
    incomplete = {k: v for k, v in OLD_LAYOUT.items() if k != "genes"}
    with pytest.raises(ValueError, match=r"lacks \['genes'\].*oc\.pp\.tokenize"):
        TokenizeRecord.from_mapping(incomplete)
    assert TokenizeRecord.read(ad.AnnData(np.zeros((1, 1)))) is None
    changed = dataclasses.replace(newer, use_raw=True)
    assert changed.use_raw and not newer.use_raw


def test_doc_params_fills_the_parts():
    @doc_params
    def tool(adata, *, copy=False):
        """Do something.

        Parameters
        ----------
        adata
            Cells.
        {doc_copy}
        """

    assert tool.__doc__.endswith(DOC_PARTS["doc_copy"])
    assert "\ncopy\n    Return a modified copy" in tool.__doc__

    def broken():
        """{doc_nothing}"""

    with pytest.raises(KeyError, match="doc_nothing"):
        doc_params(broken)


def test_every_tool_docstring_is_filled():
    import omnicell as oc

    for module in (oc.pp, oc.tl):
        for name in module.__all__:
            doc = getattr(module, name).__doc__ or ""
            assert "{doc_" not in doc, name
    assert "Return a modified copy" in oc.tl.embed_cells.__doc__


def test_tokenize_writes_only_declared_fields(tiny_adata, tiny_model):
    import omnicell as oc

    oc.pp.tokenize(tiny_adata, tiny_model, spatial=True, n_neighbors=3)
    record = TokenizeRecord.read(tiny_adata)
    assert record.extra == {}, "declare the new keys of uns['omnicell']['tokenize'] in TokenizeRecord"
    assert record.spatial and record.n_neighbors == 3 and len(record.genes) == len(record.token_ids)
