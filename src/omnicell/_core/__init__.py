"""The private core every floor of omnicell uses (see docs/architecture.md).

Its modules are imported by name (``from omnicell._core.checks import check_count``): ``keys`` (AnnData
slot names), ``docs`` (shared docstring parts), ``log``, ``settings``, ``progress``, ``provenance``
(records in ``uns``), ``groups``, ``atomic`` (atomic output), ``tokenize_record``, ``checks`` (argument
and AnnData checks) and ``adata`` (AnnData/MuData access). It imports nothing of omnicell but
``_version``, and nothing heavy (no torch) at import time.
"""
