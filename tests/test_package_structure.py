"""Public API conventions (after scanpy's test_sig_conventions)."""

from __future__ import annotations

import inspect

import pytest

import omnicell as oc

PUBLIC = [
    (module.__name__, name, getattr(module, name))
    for module in (oc.pp, oc.tl, oc.pl, oc.get)
    for name in module.__all__
    if inspect.isfunction(getattr(module, name))
]


def test_there_are_public_functions():
    names = {name for _, name, _ in PUBLIC}
    assert {"tokenize", "embed_cells", "token_batch"} <= names


@pytest.mark.parametrize(("module", "name", "function"), PUBLIC, ids=[f"{m}.{n}" for m, n, _ in PUBLIC])
def test_signature_conventions(module, name, function):
    parameters = list(inspect.signature(function).parameters.values())
    assert parameters[0].name == "adata"
    positional = [p for p in parameters if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    assert len(positional) <= 3, f"{module}.{name} has more than 3 positional parameters"
    for parameter in positional:
        assert parameter.annotation not in (bool, "bool"), f"{module}.{name}: positional boolean {parameter.name}"
    assert "AnnData" in str(parameters[0].annotation)  # AnnData, or AnnData | MuData
    doc = inspect.getdoc(function) or ""
    assert "Parameters" in doc and "Returns" in doc
    for parameter in parameters:
        assert parameter.name in doc, f"{module}.{name} does not document {parameter.name}"
    if "copy" in {p.name for p in parameters}:
        assert inspect.signature(function).parameters["copy"].default is False


def test_root_exposes_subpackages_and_settings():
    assert set(oc.__all__) >= {"pp", "tl", "pl", "get", "models", "nn", "settings"}
    with pytest.raises(ValueError, match="device"):
        oc.settings.device = "tpu"
    with pytest.raises(ValueError, match="attention_backend"):
        oc.settings.attention_backend = "fast"
