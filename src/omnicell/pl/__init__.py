"""Plotting (``oc.pl``). Embeddings plot with scanpy and squidpy directly, e.g.
``sc.pl.embedding(adata, basis='X_omnicell')``; omnicell-specific figures are added here."""

__all__: list[str] = []
