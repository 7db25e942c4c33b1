"""The private engine: running the model over the cells of an AnnData (see docs/architecture.md).

Its modules are imported by name: ``tokenize`` (the step ``oc.pp.tokenize`` re-exports, here so that
``train`` can use it), ``plan`` (:class:`~omnicell._engine.plan.InferencePlan`: a validated pass and its
batches), ``pipeline`` (token batches to the device), ``embed`` (pooled, projected embeddings, streamed
and written) and ``split`` (the one way work over cells is shared out). ``tl``, ``get``, ``train`` and
``cli`` build on it.
"""
