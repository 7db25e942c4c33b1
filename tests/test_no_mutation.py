"""Every public tool, given a realistic bad input, raises a clear error and leaves the AnnData unchanged.

Each case builds a fresh AnnData, snapshots it deeply (X, layers, obs, var, obsm, varm, obsp, varp, uns,
raw), calls the tool expecting an error whose message names the argument, slot or file, and compares.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
import torch

import omnicell as oc

from ._snapshot import assert_unchanged, snapshot

N_OBS = 24


def _base(tiny_adata):
    adata = tiny_adata
    rng = np.random.default_rng(0)
    adata.obs["label"] = np.repeat(["a", "b"], N_OBS // 2)
    adata.obs["batch"] = np.tile(["x", "y"], N_OBS // 2)
    adata.obs["single"] = ["only"] + ["many"] * (N_OBS - 1)
    adata.obsm["X_pca"] = rng.normal(size=(N_OBS, 5)).astype(np.float32)
    adata.layers["counts"] = adata.X.copy()
    adata.uns["user"] = {"note": "keep me", "values": np.arange(3)}
    return adata


def _tokenized(tiny_adata, model, **kwargs):
    adata = _base(tiny_adata)
    oc.pp.tokenize(adata, model, **kwargs)
    return adata


def _embedded(tiny_adata, model, **kwargs):
    adata = _tokenized(tiny_adata, model, **kwargs)
    oc.tl.embed_cells(adata, model)
    return adata


def _with_gene_embedding(tiny_adata, model):
    adata = _base(tiny_adata)
    rng = np.random.default_rng(1)
    adata.varm["omnicell"] = rng.normal(size=(adata.n_vars, 4)).astype(np.float32)
    return adata


PREPARE = {
    "raw": lambda a, m: _base(a),
    "tokenized": _tokenized,
    "spatial": lambda a, m: _tokenized(a, m, spatial=True, n_neighbors=3),
    "embedded": _embedded,
    "gene_embedding": _with_gene_embedding,
}

NO_GPU = not torch.cuda.is_available()


def _set(slot, key, value):
    """A case modifier: put a bad value into the AnnData before the call."""

    def modify(adata):
        getattr(adata, slot)[key] = value(adata) if callable(value) else value

    return modify


def _x(value):
    def modify(adata):
        adata.X = value(adata)

    return modify


CASES = [
    # ---- pp.map_genes
    ("map_genes species", "raw", None, lambda a, m: oc.pp.map_genes(a, m, species="martian"), ValueError, "species"),
    ("map_genes gene_key", "raw", None, lambda a, m: oc.pp.map_genes(a, m, gene_key="nope"), KeyError, "gene_key|nope"),
    ("map_genes model", "raw", None, lambda a, m: oc.pp.map_genes(a, "no-such-model"), Exception, "no-such-model"),
    # ---- pp.tokenize: arguments
    ("tokenize n_genes=0", "raw", None, lambda a, m: oc.pp.tokenize(a, m, n_genes=0), ValueError, "n_genes"),
    ("tokenize n_genes=-3", "raw", None, lambda a, m: oc.pp.tokenize(a, m, n_genes=-3), ValueError, "n_genes"),
    (
        "tokenize n_genes=2.5",
        "raw",
        None,
        lambda a, m: oc.pp.tokenize(a, m, n_genes=2.5),
        (TypeError, ValueError),
        "n_genes",
    ),
    (
        "tokenize n_genes='10'",
        "raw",
        None,
        lambda a, m: oc.pp.tokenize(a, m, n_genes="10"),
        (TypeError, ValueError),
        "n_genes",
    ),
    (
        "tokenize n_genes=nan",
        "raw",
        None,
        lambda a, m: oc.pp.tokenize(a, m, n_genes=float("nan")),
        (TypeError, ValueError),
        "n_genes",
    ),
    (
        "tokenize n_genes=True",
        "raw",
        None,
        lambda a, m: oc.pp.tokenize(a, m, n_genes=True),
        (TypeError, ValueError),
        "n_genes",
    ),
    ("tokenize strategy", "raw", None, lambda a, m: oc.pp.tokenize(a, m, strategy="random"), ValueError, "strategy"),
    ("tokenize layer", "raw", None, lambda a, m: oc.pp.tokenize(a, m, layer="missing"), KeyError, "missing.*counts"),
    ("tokenize use_raw", "raw", None, lambda a, m: oc.pp.tokenize(a, m, use_raw=True), ValueError, "raw"),
    ("tokenize gene_key", "raw", None, lambda a, m: oc.pp.tokenize(a, m, gene_key="nope"), KeyError, "nope"),
    (
        "tokenize genes unknown",
        "raw",
        None,
        lambda a, m: oc.pp.tokenize(a, m, genes=["NOTAGENE"]),
        ValueError,
        "NOTAGENE",
    ),
    ("tokenize genes empty", "raw", None, lambda a, m: oc.pp.tokenize(a, m, genes=[]), ValueError, "genes"),
    ("tokenize species", "raw", None, lambda a, m: oc.pp.tokenize(a, m, species="fish"), ValueError, "species"),
    ("tokenize spatial not bool", "raw", None, lambda a, m: oc.pp.tokenize(a, m, spatial="yes"), TypeError, "spatial"),
    (
        "tokenize coord_scale<0",
        "raw",
        None,
        lambda a, m: oc.pp.tokenize(a, m, spatial=True, coord_scale=-1.0),
        ValueError,
        "coord_scale",
    ),
    (
        "tokenize coord_scale nan",
        "raw",
        None,
        lambda a, m: oc.pp.tokenize(a, m, spatial=True, coord_scale=float("nan")),
        ValueError,
        "coord_scale",
    ),
    (
        "tokenize coord_scale str",
        "raw",
        None,
        lambda a, m: oc.pp.tokenize(a, m, spatial=True, coord_scale="big"),
        (TypeError, ValueError),
        "coord_scale",
    ),
    (
        "tokenize n_neighbors=0",
        "raw",
        None,
        lambda a, m: oc.pp.tokenize(a, m, spatial=True, n_neighbors=0),
        ValueError,
        "n_neighbors",
    ),
    (
        "tokenize n_neighbors=-1",
        "raw",
        None,
        lambda a, m: oc.pp.tokenize(a, m, spatial=True, n_neighbors=-1),
        ValueError,
        "n_neighbors",
    ),
    (
        "tokenize n_neighbors=1.5",
        "raw",
        None,
        lambda a, m: oc.pp.tokenize(a, m, spatial=True, n_neighbors=1.5),
        (TypeError, ValueError),
        "n_neighbors",
    ),
    (
        "tokenize spatial_key",
        "raw",
        None,
        lambda a, m: oc.pp.tokenize(a, m, spatial=True, spatial_key="xy"),
        KeyError,
        "xy",
    ),
    (
        "tokenize neighbors_key",
        "raw",
        None,
        lambda a, m: oc.pp.tokenize(a, m, spatial=True, neighbors_key="graph"),
        KeyError,
        "graph",
    ),
    (
        "tokenize library_key",
        "raw",
        None,
        lambda a, m: oc.pp.tokenize(a, m, spatial=True, library_key="section"),
        KeyError,
        "section",
    ),
    ("tokenize model", "raw", None, lambda a, m: oc.pp.tokenize(a, "/no/such/model"), Exception, "no/such/model"),
    ("tokenize not AnnData", "raw", None, lambda a, m: oc.pp.tokenize(a.X, m), TypeError, "AnnData"),
    # ---- pp.tokenize: bad data
    (
        "tokenize NaN",
        "raw",
        _x(lambda a: np.where(np.arange(a.n_vars) == 0, np.nan, a.X)),
        lambda a, m: oc.pp.tokenize(a, m),
        ValueError,
        "adata.X.*NaN",
    ),
    (
        "tokenize inf",
        "raw",
        _x(lambda a: np.where(np.arange(a.n_vars) == 0, np.inf, a.X)),
        lambda a, m: oc.pp.tokenize(a, m),
        ValueError,
        "adata.X.*infinite",
    ),
    (
        "tokenize negative",
        "raw",
        _x(lambda a: a.X - 1.0),
        lambda a, m: oc.pp.tokenize(a, m),
        ValueError,
        "adata.X.*negative",
    ),
    (
        "tokenize negative sparse",
        "raw",
        _x(lambda a: sp.csr_matrix(a.X - 1.0)),
        lambda a, m: oc.pp.tokenize(a, m),
        ValueError,
        "negative",
    ),
    (
        "tokenize all zero",
        "raw",
        _x(lambda a: np.zeros(a.shape, dtype=np.float32)),
        lambda a, m: oc.pp.tokenize(a, m),
        ValueError,
        "adata.X.*zero",
    ),
    (
        "tokenize all zero hvg",
        "raw",
        _x(lambda a: np.zeros(a.shape, dtype=np.float32)),
        lambda a, m: oc.pp.tokenize(a, m, n_genes=3),
        ValueError,
        "zero|varies",
    ),
    (
        "tokenize string matrix",
        "raw",
        _x(lambda a: a.X.astype(str).astype(object)),
        lambda a, m: oc.pp.tokenize(a, m),
        (TypeError, ValueError),
        "adata.X",
    ),
    (
        "tokenize duplicate var",
        "raw",
        lambda a: setattr(a, "var_names", ["g"] * a.n_vars),
        lambda a, m: oc.pp.tokenize(a, m),
        ValueError,
        "var_names",
    ),
    (
        "tokenize no vocab gene",
        "raw",
        lambda a: setattr(a, "var_names", [f"x{i}" for i in range(a.n_vars)]),
        lambda a, m: oc.pp.tokenize(a, m),
        ValueError,
        "vocabulary",
    ),
    ("tokenize 0 cells", "raw", None, lambda a, m: oc.pp.tokenize(a[:0].copy(), m), ValueError, "empty"),
    ("tokenize 0 genes", "raw", None, lambda a, m: oc.pp.tokenize(a[:, :0].copy(), m), ValueError, "empty"),
    (
        "tokenize one cell hvg",
        "raw",
        None,
        lambda a, m: oc.pp.tokenize(a[:1].copy(), m, n_genes=3),
        ValueError,
        "2 cells",
    ),
    (
        "tokenize coords 3 columns",
        "raw",
        _set("obsm", "spatial", lambda a: np.c_[a.obsm["spatial"], np.arange(a.n_obs)]),
        lambda a, m: oc.pp.tokenize(a, m, spatial=True),
        ValueError,
        "spatial.*3",
    ),
    (
        "tokenize coords 1 column",
        "raw",
        _set("obsm", "spatial", lambda a: a.obsm["spatial"][:, :1]),
        lambda a, m: oc.pp.tokenize(a, m, spatial=True),
        ValueError,
        "spatial",
    ),
    (
        "tokenize coords NaN",
        "raw",
        _set("obsm", "spatial", lambda a: np.where(np.arange(a.n_obs)[:, None] == 2, np.nan, a.obsm["spatial"])),
        lambda a, m: oc.pp.tokenize(a, m, spatial=True),
        ValueError,
        "spatial.*NaN",
    ),
    (
        "tokenize coords strings",
        "raw",
        _set("obsm", "spatial", lambda a: np.full((a.n_obs, 2), "left", dtype=object)),
        lambda a, m: oc.pp.tokenize(a, m, spatial=True),
        (TypeError, ValueError),
        "spatial",
    ),
    (
        "tokenize duplicate obs spatial",
        "raw",
        lambda a: setattr(a, "obs_names", ["c"] * a.n_obs),
        lambda a, m: oc.pp.tokenize(a, m, spatial=True),
        ValueError,
        "obs_names",
    ),
    # ---- tl.embed_cells
    ("embed_cells cuda", "raw", None, lambda a, m: oc.tl.embed_cells(a, m, device="cuda"), Exception, "cuda|CUDA|GPU"),
    ("embed_cells device", "raw", None, lambda a, m: oc.tl.embed_cells(a, m, device="tpu9"), Exception, "device|tpu9"),
    (
        "embed_cells batch_size",
        "raw",
        None,
        lambda a, m: oc.tl.embed_cells(a, m, batch_size=0),
        ValueError,
        "batch_size",
    ),
    (
        "embed_cells precision",
        "raw",
        None,
        lambda a, m: oc.tl.embed_cells(a, m, precision="float8"),
        ValueError,
        "precision",
    ),
    (
        "embed_cells projection",
        "raw",
        None,
        lambda a, m: oc.tl.embed_cells(a, m, projection=1.5),
        ValueError,
        "projection",
    ),
    ("embed_cells key_added", "raw", None, lambda a, m: oc.tl.embed_cells(a, m, key_added=""), ValueError, "key_added"),
    (
        "embed_cells var subset",
        "tokenized",
        None,
        lambda a, m: oc.tl.embed_cells(a[:, 2:].copy(), m),
        ValueError,
        "tokenize",
    ),
    (
        "embed_cells NaN after tokenize",
        "tokenized",
        _x(lambda a: np.full(a.shape, np.nan, dtype=np.float32)),
        lambda a, m: oc.tl.embed_cells(a, m),
        ValueError,
        "NaN",
    ),
    (
        "embed_cells reordered",
        "spatial",
        None,
        lambda a, m: oc.tl.embed_cells(a[::-1].copy(), m),
        ValueError,
        "tokenize",
    ),
    (
        "embed_cells subset spatial",
        "spatial",
        None,
        lambda a, m: oc.tl.embed_cells(a[2:].copy(), m),
        ValueError,
        "tokenize",
    ),
    (
        "embed_cells spatial coords removed",
        "spatial",
        lambda a: a.obsm.pop("spatial"),
        lambda a, m: oc.tl.embed_cells(a, m),
        KeyError,
        "spatial",
    ),
    # ---- tl.embed_genes
    (
        "embed_genes unknown gene",
        "raw",
        None,
        lambda a, m: oc.tl.embed_genes(a, m, genes=["NOTAGENE"]),
        ValueError,
        "NOTAGENE",
    ),
    ("embed_genes level", "raw", None, lambda a, m: oc.tl.embed_genes(a, m, level="tissue"), ValueError, "level"),
    (
        "embed_genes groupby",
        "raw",
        None,
        lambda a, m: oc.tl.embed_genes(a, m, level="cell", groupby="nope"),
        KeyError,
        "nope",
    ),
    (
        "embed_genes n_neighbors",
        "raw",
        None,
        lambda a, m: oc.tl.embed_genes(a, m, n_neighbors=0),
        ValueError,
        "n_neighbors",
    ),
    ("embed_genes use_rep", "raw", None, lambda a, m: oc.tl.embed_genes(a, m, use_rep="X_nope"), KeyError, "X_nope"),
    (
        "embed_genes precision",
        "raw",
        None,
        lambda a, m: oc.tl.embed_genes(a, m, precision="half"),
        ValueError,
        "precision",
    ),
    ("embed_genes cuda", "raw", None, lambda a, m: oc.tl.embed_genes(a, m, device="cuda"), Exception, "cuda|CUDA|GPU"),
    # ---- tl.gene_modules
    (
        "gene_modules layer",
        "gene_embedding",
        None,
        lambda a, m: oc.tl.gene_modules(a, layer="missing"),
        KeyError,
        "missing.*counts",
    ),
    ("gene_modules use_rep", "raw", None, lambda a, m: oc.tl.gene_modules(a), KeyError, "omnicell.*embed_genes"),
    (
        "gene_modules method",
        "gene_embedding",
        None,
        lambda a, m: oc.tl.gene_modules(a, method="kmeans"),
        ValueError,
        "method",
    ),
    (
        "gene_modules resolution",
        "gene_embedding",
        None,
        lambda a, m: oc.tl.gene_modules(a, resolution=-1.0),
        ValueError,
        "resolution",
    ),
    (
        "gene_modules min_size",
        "gene_embedding",
        None,
        lambda a, m: oc.tl.gene_modules(a, min_size=0),
        ValueError,
        "min_size",
    ),
    (
        "gene_modules min_size too big",
        "gene_embedding",
        None,
        lambda a, m: oc.tl.gene_modules(a, min_size=50),
        ValueError,
        "min_size",
    ),
    (
        "gene_modules ctrl_size",
        "gene_embedding",
        None,
        lambda a, m: oc.tl.gene_modules(a, ctrl_size=0),
        ValueError,
        "ctrl_size",
    ),
    (
        "gene_modules similarity",
        "gene_embedding",
        None,
        lambda a, m: oc.tl.gene_modules(a, similarity="pearson"),
        ValueError,
        "similarity",
    ),
    (
        "gene_modules NaN embedding",
        "gene_embedding",
        _set("varm", "omnicell", lambda a: np.full((a.n_vars, 4), np.nan)),
        lambda a, m: oc.tl.gene_modules(a),
        ValueError,
        "omnicell.*embedding",
    ),
    # ---- tl.expert_usage, gene_importance, importance_roc, marker_genes
    ("expert_usage groupby", "raw", None, lambda a, m: oc.tl.expert_usage(a, "nope", m), KeyError, "nope"),
    (
        "expert_usage weights",
        "raw",
        None,
        lambda a, m: oc.tl.expert_usage(a, "label", m, weights="max"),
        ValueError,
        "weights",
    ),
    (
        "gene_importance groupby",
        "raw",
        None,
        lambda a, m: oc.tl.gene_importance(a, m, groupby="nope"),
        KeyError,
        "nope",
    ),
    (
        "gene_importance layers",
        "raw",
        None,
        lambda a, m: oc.tl.gene_importance(a, m, layers=[99]),
        ValueError,
        "layers",
    ),
    (
        "importance_roc key",
        "raw",
        None,
        lambda a, m: oc.tl.importance_roc(a, "label"),
        KeyError,
        "omnicell_importance|gene_importance",
    ),
    ("marker_genes groupby", "raw", None, lambda a, m: oc.tl.marker_genes(a, "nope", m), KeyError, "nope"),
    (
        "marker_genes groups",
        "raw",
        None,
        lambda a, m: oc.tl.marker_genes(a, "label", m, groups=["zzz"]),
        ValueError,
        "zzz",
    ),
    (
        "marker_genes n_genes",
        "raw",
        None,
        lambda a, m: oc.tl.marker_genes(a, "label", m, n_genes=0),
        ValueError,
        "n_genes",
    ),
    (
        "marker_genes one group",
        "raw",
        None,
        lambda a, m: (
            oc.tl.marker_genes(a, "batch", m, groups=["x"])
            if False
            else oc.tl.marker_genes(a[a.obs["label"] == "a"].copy(), "label", m)
        ),
        ValueError,
        "group",
    ),
    # ---- cell-level tasks on an embedding
    (
        "evaluate_clustering label",
        "embedded",
        None,
        lambda a, m: oc.tl.evaluate_clustering(a, "nope"),
        KeyError,
        "nope",
    ),
    (
        "evaluate_clustering use_rep",
        "raw",
        None,
        lambda a, m: oc.tl.evaluate_clustering(a, "label"),
        KeyError,
        "X_omnicell",
    ),
    (
        "evaluate_clustering resolutions",
        "embedded",
        None,
        lambda a, m: oc.tl.evaluate_clustering(a, "label", resolutions=[-1.0]),
        ValueError,
        "resolution",
    ),
    (
        "evaluate_clustering select",
        "embedded",
        None,
        lambda a, m: oc.tl.evaluate_clustering(a, "label", select="f1"),
        ValueError,
        "select",
    ),
    (
        "evaluate_clustering n_neighbors",
        "embedded",
        None,
        lambda a, m: oc.tl.evaluate_clustering(a, "label", n_neighbors=0),
        ValueError,
        "n_neighbors",
    ),
    (
        "evaluate_clustering NaN rep",
        "embedded",
        _set("obsm", "X_omnicell", lambda a: np.full((a.n_obs, 3), np.nan)),
        lambda a, m: oc.tl.evaluate_clustering(a, "label"),
        ValueError,
        "X_omnicell.*NaN",
    ),
    ("annotate label", "embedded", None, lambda a, m: oc.tl.annotate(a, a.copy(), "nope"), KeyError, "nope"),
    (
        "annotate use_rep",
        "embedded",
        None,
        lambda a, m: oc.tl.annotate(a, a.copy(), "label", use_rep="X_nope"),
        KeyError,
        "X_nope",
    ),
    (
        "annotate epochs",
        "embedded",
        None,
        lambda a, m: oc.tl.annotate(a, a.copy(), "label", epochs=0),
        ValueError,
        "epochs",
    ),
    (
        "annotate reference type",
        "embedded",
        None,
        lambda a, m: oc.tl.annotate(a, "ref.h5ad", "label"),
        TypeError,
        "reference",
    ),
    (
        "annotate dims",
        "embedded",
        None,
        lambda a, m: oc.tl.annotate(a, a.copy(), "label", use_rep="X_pca") if False else _annotate_dims(a),
        ValueError,
        "dimension|columns",
    ),
    (
        "cross_validate folds",
        "embedded",
        None,
        lambda a, m: oc.tl.cross_validate_annotation(a, "label", folds=1),
        ValueError,
        "folds",
    ),
    (
        "cross_validate folds > cells",
        "embedded",
        None,
        lambda a, m: oc.tl.cross_validate_annotation(a, "single", folds=30),
        ValueError,
        "folds",
    ),
    ("map_query label", "embedded", None, lambda a, m: oc.tl.map_query(a, a.copy(), "nope"), KeyError, "nope"),
    (
        "map_query alpha",
        "embedded",
        None,
        lambda a, m: oc.tl.map_query(a, a.copy(), "label", alpha=1.0, k=3),
        ValueError,
        "alpha",
    ),
    (
        "map_query k > reference",
        "embedded",
        None,
        lambda a, m: oc.tl.map_query(a, a.copy(), "label", k=50),
        ValueError,
        "k=50 exceeds",
    ),
    (
        "map_query reference path",
        "embedded",
        None,
        lambda a, m: oc.tl.map_query(a, "no_such_index", "label"),
        FileNotFoundError,
        "no_such_index",
    ),
    ("deconvolve label", "embedded", None, lambda a, m: oc.tl.deconvolve(a, a.copy(), "nope"), KeyError, "nope"),
    (
        "deconvolve epochs",
        "embedded",
        None,
        lambda a, m: oc.tl.deconvolve(a, a.copy(), "label", epochs=0),
        ValueError,
        "epochs",
    ),
    (
        "dropout_robustness label",
        "raw",
        None,
        lambda a, m: oc.tl.dropout_robustness(a, m, label_key="nope"),
        KeyError,
        "nope",
    ),
    (
        "dropout_robustness rates",
        "raw",
        None,
        lambda a, m: oc.tl.dropout_robustness(a, m, label_key="label", rates=[1.5]),
        ValueError,
        "rates",
    ),
    ("spatial_domains use_rep", "raw", None, lambda a, m: oc.tl.spatial_domains(a), KeyError, "niche|embed_cells"),
    (
        "spatial_domains n_domains",
        "embedded",
        None,
        lambda a, m: oc.tl.spatial_domains(a, use_rep="X_omnicell", n_domains=0),
        ValueError,
        "n_domains",
    ),
    (
        "neighborhood_average use_rep",
        "raw",
        None,
        lambda a, m: oc.tl.neighborhood_average(a, use_rep="X_nope"),
        KeyError,
        "X_nope",
    ),
    (
        "neighborhood_average spatial_key",
        "raw",
        None,
        lambda a, m: oc.tl.neighborhood_average(a, spatial_key="xy"),
        KeyError,
        "xy",
    ),
    (
        "neighborhood_average n_neighbors",
        "raw",
        None,
        lambda a, m: oc.tl.neighborhood_average(a, n_neighbors=0),
        ValueError,
        "n_neighbors",
    ),
    (
        "benchmark label",
        "embedded",
        None,
        lambda a, m: oc.tl.benchmark(a, label_key="nope", batch_key="batch"),
        (KeyError, ValueError),
        "nope|90 cells",
    ),
    (
        "benchmark embeddings",
        "embedded",
        None,
        lambda a, m: oc.tl.benchmark(a, label_key="label", batch_key="batch", embeddings=["X_nope"]),
        (KeyError, ValueError),
        "X_nope|90 cells",
    ),
    # ---- fine_tune (model untouched, AnnData untouched)
    (
        "fine_tune float16 on CPU",
        "raw",
        None,
        lambda a, m: oc.tl.fine_tune(a, m, precision="float16", device="cpu"),
        ValueError,
        "float16",
    ),
    ("fine_tune epochs", "raw", None, lambda a, m: oc.tl.fine_tune(a, m, epochs=0), ValueError, "epochs"),
    ("fine_tune lr", "raw", None, lambda a, m: oc.tl.fine_tune(a, m, lr=-1.0), ValueError, "lr"),
    (
        "fine_tune validation_fraction",
        "raw",
        None,
        lambda a, m: oc.tl.fine_tune(a, m, validation_fraction=1.5),
        ValueError,
        "validation_fraction",
    ),
    # ---- get
    (
        "token_batch cells",
        "tokenized",
        None,
        lambda a, m: oc.get.token_batch(a, [999], m),
        (IndexError, ValueError),
        "cells",
    ),
    ("token_batch untokenised", "raw", None, lambda a, m: oc.get.token_batch(a, [0], m), KeyError, "tokenize"),
    # ---- pl
    (
        "pl.expert_heatmap key",
        "raw",
        None,
        lambda a, m: oc.pl.expert_heatmap(a, "label", show=False),
        KeyError,
        "expert_usage|omnicell_experts",
    ),
    (
        "pl.gene_modules key",
        "raw",
        None,
        lambda a, m: oc.pl.gene_modules(a, show=False),
        KeyError,
        "gene_modules|omnicell_module",
    ),
    (
        "search use_rep",
        "embedded",
        None,
        lambda a, m: oc.tl.search(a, oc.tl.build_index(a.copy()), use_rep="X_nope"),
        KeyError,
        "X_nope",
    ),
    (
        "search dims",
        "embedded",
        None,
        lambda a, m: oc.tl.search(a, oc.tl.build_index(a.copy(), use_rep="X_pca")),
        ValueError,
        "dimensions",
    ),
    (
        "search k",
        "embedded",
        None,
        lambda a, m: oc.tl.search(a, oc.tl.build_index(a.copy()), k=N_OBS + 1),
        ValueError,
        "k=",
    ),
    (
        "build_index NaN",
        "embedded",
        _set("obsm", "X_pca", lambda a: np.where(np.arange(a.n_obs)[:, None] < 2, np.nan, a.obsm["X_pca"])),
        lambda a, m: oc.tl.build_index(a, use_rep="X_pca"),
        ValueError,
        "NaN or infinite values in 2 cells",
    ),
    (
        "pl.proportions key",
        "raw",
        None,
        lambda a, m: oc.pl.proportions(a, show=False),
        KeyError,
        "deconvolve|omnicell_proportions",
    ),
    ("pl.benchmark key", "raw", None, lambda a, m: oc.pl.benchmark(a, show=False), KeyError, "benchmark"),
    (
        "perturb_genes unknown gene",
        "tokenized",
        None,
        lambda a, m: oc.tl.perturb_genes(a, "NOT_A_GENE", model=m),
        KeyError,
        "NOT_A_GENE",
    ),
    (
        "perturb_genes empty selection",
        "raw",
        None,
        lambda a, m: oc.tl.perturb_genes(a, a.var_names[0], cells=np.zeros(a.n_obs, dtype=bool), model=m),
        ValueError,
        "no cell",
    ),
    (
        "perturb_genes groupby",
        "tokenized",
        None,
        lambda a, m: oc.tl.perturb_genes(a, a.var_names[0], groupby="missing", model=m),
        KeyError,
        "missing",
    ),
    (
        "perturb_niche single-cell tokenisation",
        "tokenized",
        None,
        lambda a, m: oc.tl.perturb_niche(a, remove=True, model=m),
        ValueError,
        "spatial=True",
    ),
    (
        "perturb_niche unknown label",
        "spatial",
        None,
        lambda a, m: oc.tl.perturb_niche(a, replace_with="nowhere", groupby="label", model=m),
        ValueError,
        "nowhere",
    ),
    (
        "pl.perturbation key",
        "raw",
        None,
        lambda a, m: oc.pl.perturbation(a, show=False),
        KeyError,
        "perturb",
    ),
    (
        "pl.marker_genes key",
        "raw",
        None,
        lambda a, m: oc.pl.marker_genes(a, show=False),
        KeyError,
        "marker_genes|rank_genes",
    ),
]


def _annotate_dims(adata):
    reference = adata.copy()
    reference.obsm["X_omnicell"] = reference.obsm["X_omnicell"][:, :3]
    oc.tl.annotate(adata, reference, "label")


def _param(case):
    gpu_only = "cuda" in case[0] and not NO_GPU  # these expect "no GPU"
    return pytest.param(case, id=case[0], marks=[pytest.mark.skip(reason="a GPU is present")] if gpu_only else [])


@pytest.mark.parametrize("case", [_param(case) for case in CASES])
def test_error_leaves_adata_unchanged(case, tiny_adata, tiny_model):
    _name, prepare, modify, call, error, match = case
    adata = PREPARE[prepare](tiny_adata, tiny_model)
    if modify is not None:
        modify(adata)
    before = snapshot(adata)
    weights = {k: v.clone() for k, v in tiny_model.network.state_dict().items()}
    with pytest.raises(error, match=match):
        call(adata, tiny_model)
    assert_unchanged(before, adata)
    for key, value in tiny_model.network.state_dict().items():
        assert torch.equal(value, weights[key]), f"model parameter {key} changed"


def test_benchmark_copy_leaves_the_callers_obsm(monkeypatch):
    """benchmark(copy=True) must not touch the caller's embeddings, even if scib-metrics changes its inputs."""
    import anndata as ad

    from omnicell.tl import _benchmark

    rng = np.random.default_rng(2)
    obs = pd.DataFrame({"label": np.repeat(["a", "b"], 60), "batch": np.tile(["x", "y"], 60)})
    obs.index = [f"c{i}" for i in range(120)]
    adata = ad.AnnData(X=rng.poisson(1.0, size=(120, 3)).astype(np.float32), obs=obs)
    adata.obsm["X_pca"] = rng.normal(size=(120, 5)).astype(np.float32)
    adata.obsm["X_omnicell"] = rng.normal(size=(120, 4)).astype(np.float32)
    seen = []

    def scaling_in_place(holder, embeddings, *args, **kwargs):
        for key in holder.obsm:
            holder.obsm[key] *= 0.0  # what a metric normalising in place would do
        seen.append(True)
        return pd.DataFrame(), []

    monkeypatch.setattr(_benchmark, "_run_benchmarker", scaling_in_place)
    before = snapshot(adata)
    result = oc.tl.benchmark(adata, label_key="label", batch_key="batch", copy=True)
    assert seen and result is not adata
    assert_unchanged(before, adata)


def test_random_state_is_the_only_seed_keyword(tiny_adata, tiny_model):
    adata = _with_gene_embedding(tiny_adata, tiny_model)
    oc.tl.gene_modules(adata, min_size=1, score=False, random_state=3)
    assert adata.uns["omnicell"]["gene_modules"]["seed"] == 3
    with pytest.raises(TypeError, match="seed"):  # seed= was removed (no released users to keep it for)
        oc.tl.gene_modules(adata, min_size=1, score=False, seed=3)
    with pytest.raises(TypeError, match="random_state"):
        oc.tl.gene_modules(adata, min_size=1, score=False, random_state="zero")


def test_provenance_is_kept_per_result_key(tiny_adata, tiny_model, tmp_path):
    adata = _tokenized(tiny_adata, tiny_model)
    oc.tl.embed_cells(adata, tiny_model, key_added="X_full", projection=None)
    oc.tl.embed_cells(adata, tiny_model, key_added="X_projected", projection=0.9)
    records = adata.uns["omnicell"]["by_key"]["embed_cells"]
    assert set(records) == {"X_full", "X_projected"}
    assert "projection" not in records["X_full"] and records["X_projected"]["projection"] == 0.9
    assert records["X_full"]["n_components"] == adata.obsm["X_full"].shape[1]
    assert records["X_projected"]["n_components"] == adata.obsm["X_projected"].shape[1]
    # the latest run stays where readers look for it
    assert adata.uns["omnicell"]["embed_cells"]["key_added"] == "X_projected"
    from omnicell._core.provenance import get_record

    assert get_record(adata, "embed_cells", key="X_full")["key_added"] == "X_full"
    adata.write_h5ad(tmp_path / "a.h5ad")  # still h5ad-writable


def _negative(x):
    x = np.array(x, dtype=np.float32)
    x[2, :3] = -1.0
    return x


def _not_a_number(x):
    x = np.array(x, dtype=np.float32)
    x[4, 1] = np.nan
    return x


@pytest.mark.parametrize(
    ("name", "make_x", "call", "match"),
    [
        ("negative values", _negative, lambda a, m: oc.pp.tokenize(a, m), "negative"),
        ("NaN", _not_a_number, lambda a, m: oc.pp.tokenize(a, m), "NaN"),
        ("sparse NaN", lambda x: sp.csr_matrix(_not_a_number(x)), lambda a, m: oc.pp.tokenize(a, m), "NaN"),
        ("n_genes 0", np.asarray, lambda a, m: oc.pp.tokenize(a, m, n_genes=0), "n_genes"),
        ("embed batch_size 0", np.asarray, lambda a, m: oc.tl.embed_cells(a, m, batch_size=0), "batch_size"),
    ],
)
def test_backed_file_and_adata_are_left_as_they_were(name, make_x, call, match, tiny_adata, tiny_model, tmp_path):
    """A backed AnnData (X read from disk chunk by chunk): the error comes first, the file is byte-identical."""
    import hashlib

    import anndata as ad

    tiny_adata.X = make_x(tiny_adata.X)
    path = tmp_path / "cells.h5ad"
    tiny_adata.write_h5ad(path)
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    adata = ad.read_h5ad(path, backed="r")
    before = snapshot(adata)
    with pytest.raises(ValueError, match=match):
        call(adata, tiny_model)
    assert_unchanged(before, adata)
    adata.file.close()
    assert hashlib.sha256(path.read_bytes()).hexdigest() == digest, f"{name}: the file on disk changed"
