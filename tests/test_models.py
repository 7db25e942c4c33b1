"""Checkpoint loading, conversion and the download registry (on local files and a loopback server)."""

from __future__ import annotations

import functools
import hashlib
import http.server
import importlib.util
import json
import shutil
import threading
from pathlib import Path

import numpy as np
import pytest
import torch

import omnicell as oc
from conftest import FIXTURES
from omnicell.models._registry import _REGISTRY, ModelSpec


def _forward(model, tokens, values):
    with torch.no_grad():
        return model.network(tokens, values).hidden


@pytest.fixture
def official_copy(tiny_dir, tmp_path) -> Path:
    folder = tmp_path / "official"
    shutil.copytree(tiny_dir, folder)
    (folder / "expected.npz").unlink()
    return folder


def test_load_official_folder(tiny_model, expected, tiny_dir):
    assert tiny_model.config.d_model == 32
    assert tiny_model.vocab.rna_start == 60 and tiny_model.vocab.rna_end == 61
    assert tiny_model.sha256 == hashlib.sha256((tiny_dir / "backbone.pth").read_bytes()).hexdigest()
    assert not tiny_model.network.training
    hidden = _forward(tiny_model, torch.tensor(expected["sc_tokens"]), torch.tensor(expected["sc_values"]))
    torch.testing.assert_close(hidden, torch.tensor(expected["sc_hidden"]), atol=1e-4, rtol=0)


def test_convert_round_trip(tiny_model, tiny_dir, tmp_path, expected):
    target = oc.models.convert(tiny_dir, tmp_path / "converted")
    assert {p.name for p in target.iterdir()} == {
        "config.json", "model.safetensors", "vocab.json", "MODEL_CARD.md", "tokenization.json"
    }  # fmt: skip
    reloaded = oc.models.load(target, device="cpu")
    assert reloaded.name == "official_tiny"
    # an official checkpoint reads cells with the released code's rule, and its conversion keeps it
    assert tiny_model.tokenization.source == "released code"
    assert reloaded.tokenization.single_cell == oc.data.SingleCellTokenization(strategy="hvg", n_genes=2000)
    assert reloaded.tokenization.spatial.n_neighbors == 9 and reloaded.tokenization.spatial.neighbor_distance is None
    assert reloaded.vocab == tiny_model.vocab
    tokens, values = torch.tensor(expected["sc_tokens"]), torch.tensor(expected["sc_values"])
    assert torch.equal(_forward(reloaded, tokens, values), _forward(tiny_model, tokens, values))
    with pytest.raises(FileExistsError, match="overwrite"):
        oc.models.convert(tiny_dir, target)
    oc.models.convert(tiny_dir, target, overwrite=True)


def test_vocab_json_or_vocabulary_json(official_copy):
    (official_copy / "vocab.json").rename(official_copy / "Vocabulary.json")
    assert oc.models.load(official_copy, device="cpu").vocab.rna_start == 60
    (official_copy / "Vocabulary.json").rename(official_copy / "genes.json")
    with pytest.raises(FileNotFoundError, match="vocab=PATH"):
        oc.models.load(official_copy, device="cpu")
    assert oc.models.load(official_copy, device="cpu", vocab=official_copy / "genes.json").vocab.rna_end == 61


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda s: s.pop("output.W"), "missing: output.W"),
        (lambda s: s.__setitem__("extra.weight", torch.zeros(2)), "unexpected: extra.weight"),
        (
            lambda s: s.__setitem__("layers.0.norm_attn.gamma", torch.zeros(31)),
            r"mis-shaped: layers.0.norm_attn.gamma \(31,\)",
        ),
    ],
)
def test_mismatched_checkpoint_names_the_tensors(official_copy, edit, message):
    state = torch.load(official_copy / "backbone.pth", weights_only=True)
    edit(state)
    torch.save(state, official_copy / "backbone.pth")
    with pytest.raises(ValueError, match=message):
        oc.models.load(official_copy, device="cpu")


def test_config_that_does_not_fit_the_weights(official_copy):
    text = (official_copy / "LMConfig.json").read_text().replace('"num_layers": 2', '"num_layers": 3')
    (official_copy / "LMConfig.json").write_text(text)
    with pytest.raises(ValueError, match=r"missing: layers\.2\."):
        oc.models.load(official_copy, device="cpu")


def test_vocabulary_larger_than_embedding(official_copy):
    text = (official_copy / "LMConfig.json").read_text().replace('"num_gene": 64', '"num_gene": 50')
    (official_copy / "LMConfig.json").write_text(text)
    state = torch.load(official_copy / "backbone.pth", weights_only=True)
    state["embedder.gene_embedding.weight"] = state["embedder.gene_embedding.weight"][:50]
    torch.save(state, official_copy / "backbone.pth")
    with pytest.raises(ValueError, match="vocabulary does not belong"):
        oc.models.load(official_copy, device="cpu")


def test_unknown_name_or_empty_folder(tmp_path):
    with pytest.raises(FileNotFoundError, match="registered"):
        oc.models.load("no-such-model")
    with pytest.raises(FileNotFoundError, match="holds no checkpoint"):
        oc.models.load(tmp_path)


@pytest.fixture
def file_server(tiny_dir):
    """An HTTP server on the loopback interface serving the fixture folder."""
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(tiny_dir))
    handler.log_message = lambda *args: None
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


def _spec(tiny_dir, base_url: str, name: str = "tiny-test", corrupt: bool = False) -> ModelSpec:
    files = {}
    for filename in ("LMConfig.json", "backbone.pth", "vocab.json"):
        digest = hashlib.sha256((tiny_dir / filename).read_bytes()).hexdigest()
        files[filename] = (f"{base_url}/{filename}", "0" * 64 if corrupt and filename == "backbone.pth" else digest)
    return ModelSpec(name=name, description="test", files=files)


def test_registry_downloads_verifies_and_caches(tiny_dir, file_server, tmp_path, expected, monkeypatch):
    oc.settings.cache_dir = tmp_path / "cache"
    try:
        oc.models.register(_spec(tiny_dir, file_server))
        assert not oc.models.available().loc["tiny-test", "cached"]
        model = oc.models.load("tiny-test", device="cpu")
        assert model.name == "tiny-test"
        assert (tmp_path / "cache" / "tiny-test" / "backbone.pth").exists()
        assert oc.models.available().loc["tiny-test", "cached"]
        # cached: loads again with the server gone
        oc.models.register(_spec(tiny_dir, "http://127.0.0.1:9"))
        again = oc.models.load("tiny-test", device="cpu")
        tokens, values = torch.tensor(expected["sc_tokens"]), torch.tensor(expected["sc_values"])
        assert torch.equal(_forward(model, tokens, values), _forward(again, tokens, values))
    finally:
        oc.settings.cache_dir = None
        _REGISTRY.pop("tiny-test", None)


def test_registry_rejects_a_bad_hash(tiny_dir, file_server, tmp_path):
    oc.settings.cache_dir = tmp_path / "cache"
    try:
        oc.models.register(_spec(tiny_dir, file_server, corrupt=True))
        with pytest.raises(OSError, match="sha256"):
            oc.models.load("tiny-test", device="cpu")
    finally:
        oc.settings.cache_dir = None
        _REGISTRY.pop("tiny-test", None)


def test_offline_error_lists_the_files(tmp_path, monkeypatch):
    monkeypatch.setenv("OMNICELL_CACHE_DIR", str(tmp_path / "cache"))
    spec = _REGISTRY["omnicell-v1"]
    oc.models.register(
        ModelSpec(
            name="offline-test",
            description="",
            files={name: ("http://127.0.0.1:9/" + name, digest) for name, (_, digest) in spec.files.items()},
        )
    )
    try:
        with pytest.raises(OSError) as info:
            oc.models.download("offline-test")
    finally:
        _REGISTRY.pop("offline-test", None)
    message = str(info.value)
    assert str(tmp_path / "cache" / "offline-test") in message
    for name, (_, digest) in spec.files.items():
        assert name in message and digest in message


def test_omnicell_v1_registry_entry_matches_the_published_hashes():
    spec = _REGISTRY["omnicell-v1"]
    assert set(spec.files) == {"LMConfig.json", "backbone.pth", "Vocabulary.json", "new_genes_homo_sapiens.csv"}
    assert spec.files["backbone.pth"][1] == "12497eb1dc76985ca3bcd88845a6b6edb7fcfdbb6c6df43d3da56645d922c0c7"
    assert "9a33a49daa919237189909e4d9ba48117f3ca12f" in spec.files["backbone.pth"][0]


def test_official_vocabulary_subset_keeps_the_released_numbering(official_assets):
    # The committed file is a subset of the released Vocabulary.json (make_subsets.py checks each kept gene's
    # token id against the original); here: the structure of the released numbering survives.
    with open(official_assets / "vocabulary_subset.json", encoding="utf-8") as handle:
        content = json.load(handle)
    specials = {name: content.pop(name) for name in oc.data.SPECIAL_TOKENS}
    assert specials == {"<RNA_START>": 60603, "<RNA_END>": 60604, "<ATAC_START>": 60605, "<ATAC_END>": 60606}
    genes, tokens = list(content), np.array(list(content.values()))
    assert genes == sorted(genes) and all(gene.startswith("ENSG") for gene in genes)
    assert tokens.min() >= 0 and tokens.max() < 60603 and (np.diff(tokens) > 0).all()  # ids in token order
    assert set(range(0, 60603, 50)) <= set(tokens.tolist())  # the every-50th sample spans the whole range
    vocab = oc.data.Vocabulary.from_json(official_assets / "vocabulary_subset.json")
    assert vocab.genes == genes
    assert (vocab.rna_start, vocab.rna_end) == (60603, 60604)
    assert vocab.max_token_id + 1 == oc.nn.OmniCellConfig().num_gene == 60607
    # The subset was cut from the file the registry downloads.
    spec = importlib.util.spec_from_file_location("make_subsets", FIXTURES / "make_subsets.py")
    make_subsets = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(make_subsets)
    assert make_subsets.VOCABULARY_SHA256 == _REGISTRY["omnicell-v1"].files["Vocabulary.json"][1]
    assert make_subsets.GENE_TABLE_SHA256 == _REGISTRY["omnicell-v1"].files["new_genes_homo_sapiens.csv"][1]


def test_truncated_safetensors_names_the_file(tiny_dir, tmp_path):
    target = oc.models.convert(tiny_dir, tmp_path / "converted")
    weights = target / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])
    with pytest.raises(OSError, match=r"model\.safetensors.*truncated or corrupt.*again"):
        oc.models.load(target, device="cpu")


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ('{"single_cell": {"strategy": "random", "n_genes": 10}, "spatial": null}', r"single_cell\.strategy"),
        ('{"single_cell": {"strategy": "hvg", "n_genes": 0}}', r"single_cell\.n_genes"),
        (
            '{"single_cell": {"strategy": "hvg", "n_genes": 8}, "spatial": {"strategy": "hvg", "n_genes": 8}}',
            r"spatial\.n_neighbors is missing",
        ),
        ("{not json", "not valid JSON"),
    ],
)
def test_bad_tokenization_json_names_the_field(tiny_dir, tmp_path, content, message):
    target = oc.models.convert(tiny_dir, tmp_path / "converted")
    (target / "tokenization.json").write_text(content)
    with pytest.raises(ValueError, match=message):
        oc.models.load(target, device="cpu")


def test_bundled_model_carries_its_recipe_tokenization():
    model = oc.models.load("omnicell-tiny", device="cpu")
    # The values of recipes/omnicell-tiny.yaml (engineer 14 retrained the bundled model on it).
    assert model.tokenization.single_cell == oc.data.SingleCellTokenization(strategy="hvg", n_genes=256)
    spatial = model.tokenization.spatial
    assert (spatial.strategy, spatial.n_genes, spatial.n_neighbors) == ("expressed", 64, 9)
    assert spatial.neighbor_distance == pytest.approx(1.517, abs=0.01)  # STARmap pixels x 0.01
