"""Packed batches (no padding, cu_seqlens) give the states of padded batches."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import omnicell as oc
from omnicell.nn import OmniCell, OmniCellConfig, load_state_dict, read_official
from omnicell.nn._attention import Packing, _nested_sdpa, _varlen_attention


@pytest.fixture(scope="module")
def network(tiny_dir):
    net = OmniCell(OmniCellConfig.from_json(tiny_dir / "LMConfig.json")).eval()
    load_state_dict(net, read_official(tiny_dir / "backbone.pth"))
    return net


def _ragged_batch(seed: int = 0):
    """Three sequences of lengths 14, 9, 5 with padding inside (a missing block) and at the end."""
    generator = torch.Generator().manual_seed(seed)
    tokens = torch.randint(0, 60, (3, 14), generator=generator)
    values = torch.rand(3, 14, generator=generator) * 5
    positions = torch.rand(3, 14, 2, generator=generator) * 50
    mask = torch.ones(3, 14, dtype=torch.bool)
    mask[1, 4:9] = False  # a missing neighbour's block in the middle
    mask[2, 5:] = False
    return tokens, values, positions, mask


@pytest.mark.parametrize("backend", ["sdpa", "eager"])
def test_packed_forward_equals_padded(network, backend):
    tokens, values, positions, mask = _ragged_batch()
    network.set_attention_backend(backend)
    try:
        with torch.no_grad():
            network.pack_threshold = None
            padded = network(tokens, values, positions, mask)
            network.pack_threshold = 0.0
            packed = network(tokens, values, positions, mask)
    finally:
        network.pack_threshold = 0.05
        network.set_attention_backend("auto")
    torch.testing.assert_close(packed.hidden[mask], padded.hidden[mask], atol=1e-5, rtol=0)
    torch.testing.assert_close(packed.routing[mask], padded.routing[mask], atol=1e-6, rtol=0)
    assert packed.load_balance_loss.item() == pytest.approx(padded.load_balance_loss.item(), abs=1e-6)
    assert packed.hidden[~mask].abs().max() == 0  # padded positions are not computed
    # a batch that is one sequence, shifted in position, differs: positions travel with the tokens
    with torch.no_grad():
        moved = network(tokens, values, positions + torch.tensor([[[0.0, 0.0]], [[5.0, 1.0]], [[0.0, 0.0]]]), mask)
    assert (moved.hidden[1][mask[1]] - padded.hidden[1][mask[1]]).abs().max() < 1e-4  # relative encoding
    assert (moved.hidden[:, :1] - padded.hidden[:, :1]).abs().max() < 1e-4


def test_explicit_cu_seqlens(network):
    tokens, values, positions, mask = _ragged_batch(1)
    lengths = mask.sum(1)
    with torch.no_grad():
        padded = network(tokens, values, positions, mask).hidden
        packed = network(
            tokens[mask][None],
            values[mask][None],
            positions[mask][None],
            cu_seqlens=torch.cat([torch.zeros(1), lengths.cumsum(0)]).int(),
        ).hidden
    torch.testing.assert_close(packed[0], padded[mask], atol=1e-5, rtol=0)
    with pytest.raises(ValueError, match="packed batch is one row"):
        network(tokens, values, positions, mask, cu_seqlens=torch.tensor([0, 14]))


def test_nested_jagged_sdpa_equals_per_sequence():
    """The CUDA varlen path (nested jagged SDPA) computes what the CPU per-sequence path does."""
    generator = torch.Generator().manual_seed(2)
    q, k, v = (torch.randn(1, 2, 23, 8, generator=generator) for _ in range(3))
    packing = Packing.from_lengths(torch.tensor([10, 6, 7], dtype=torch.int32))
    torch.testing.assert_close(
        _nested_sdpa(q, k, v, packing), _varlen_attention(q, k, v, packing, "sdpa"), atol=1e-6, rtol=0
    )
    # and each sequence only sees itself
    alone = torch.nn.functional.scaled_dot_product_attention(q[:, :, 10:16], k[:, :, 10:16], v[:, :, 10:16])
    torch.testing.assert_close(_varlen_attention(q, k, v, packing, "eager")[:, :, 10:16], alone, atol=1e-6, rtol=0)


def test_activation_checkpointing_gives_the_same_gradients(tiny_dir):
    config = OmniCellConfig.from_json(tiny_dir / "LMConfig.json")
    tokens, values, positions, mask = _ragged_batch(3)
    grads = []
    for checkpoint in (False, True):
        torch.manual_seed(0)
        net = OmniCell(config, checkpoint_activations=checkpoint).train()
        load_state_dict(net, read_official(tiny_dir / "backbone.pth"))
        out = net(tokens, values, positions, mask)
        (out.hidden[mask].square().mean() + out.load_balance_loss).backward()
        grads.append({name: p.grad.clone() for name, p in net.named_parameters() if p.grad is not None})
    assert grads[0].keys() == grads[1].keys() and len(grads[0]) > 10
    for name, grad in grads[0].items():
        torch.testing.assert_close(grads[1][name], grad, atol=1e-6, rtol=1e-5, msg=name)


@pytest.mark.filterwarnings("ignore:4 cells have fewer than 5 neighbours")
@pytest.mark.parametrize("spatial", [False, True])
def test_embeddings_packed_equal_padded(tiny_adata, tiny_model, expected, spatial):
    """The paper's per-cell gene rule leaves short cells padded; packing them changes no embedding."""
    results = []
    for threshold in (None, 0.0):
        adata = tiny_adata.copy()
        # cells 20-23 form their own small section: their windows miss neighbours (padded blocks)
        adata.obs["section"] = ["a"] * 20 + ["b"] * 4
        genes = expected["selected_genes"]
        oc.pp.tokenize(
            adata, tiny_model, genes=genes, strategy="expressed", n_genes=len(genes), spatial=spatial, n_neighbors=5,
            library_key="section" if spatial else None,
        )  # fmt: skip
        if not spatial:
            # Only 4 genes may fill a cell as zeros (a short fill list): weakly expressing cells are short.
            record = adata.uns["omnicell"]["tokenize"]
            record["zero_fill"] = np.asarray(record["zero_fill"])[:4]
        tiny_model.network.pack_threshold = threshold
        try:
            with pytest.warns(UserWarning, match="express none"):
                oc.tl.embed_cells(adata, tiny_model, batch_size=5, store_window=spatial)
        finally:
            tiny_model.network.pack_threshold = 0.05
        results.append(adata)
    batch = oc.get.token_batch(results[0], np.arange(24), tiny_model)
    assert batch.padding_mask is not None and (~batch.padding_mask).mean() > 0.05  # the case packing is for
    np.testing.assert_allclose(results[1].obsm["X_omnicell"], results[0].obsm["X_omnicell"], atol=1e-5, rtol=0)
    if spatial:
        np.testing.assert_allclose(
            results[1].obsm["X_omnicell_window"], results[0].obsm["X_omnicell_window"], atol=1e-5, rtol=0
        )
