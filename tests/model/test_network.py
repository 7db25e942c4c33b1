"""The network on tensors reproduces the official implementation's outputs."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from omnicell.nn import (
    OmniCell,
    OmniCellConfig,
    load_balance_loss,
    load_state_dict,
    pool_cells,
    read_official,
    spectral_basis,
)


@pytest.fixture(scope="module")
def network(tiny_dir):
    net = OmniCell(OmniCellConfig.from_json(tiny_dir / "LMConfig.json")).eval()
    load_state_dict(net, read_official(tiny_dir / "backbone.pth"))
    return net


def _cell_index(length: int, block: int, batch: int) -> torch.Tensor:
    index = torch.full((batch, length), -1)
    for cell in range(length // block):
        index[:, cell * block + 1 : (cell + 1) * block - 1] = cell
    return index


def test_official_state_dict_names_and_shapes():
    with torch.device("meta"):
        net = OmniCell(OmniCellConfig())
    shapes = {key: tuple(value.shape) for key, value in net.state_dict().items()}
    assert len(shapes) == 109
    assert sum(p.numel() for p in net.parameters()) == 73_521_152
    assert shapes["embedder.gene_embedding.weight"] == (60607, 512)
    assert shapes["embedder.value_embedding.router.0.weight"] == (512, 512)
    assert shapes["embedder.value_embedding.router.2.weight"] == (10, 512)
    assert {shapes[f"embedder.value_embedding.shared_experts.{i}.weight"] for i in range(5)} == {(512, 1)}
    assert {shapes[f"embedder.value_embedding.routing_experts.{i}.weight"] for i in range(10)} == {(512, 1)}
    for i in range(10):
        assert shapes[f"layers.{i}.norm_attn.gamma"] == (512,)
        assert shapes[f"layers.{i}.norm_ffn.gamma"] == (512,)
        for name in "qkv":
            assert shapes[f"layers.{i}.self_attn.{name}_proj.weight"] == (512, 512)
        assert shapes[f"layers.{i}.self_attn.out_proj.weight"] == (512, 512)
        assert shapes[f"layers.{i}.ffn.gate_proj.weight"] == (2048, 512)
        assert shapes[f"layers.{i}.ffn.up_proj.weight"] == (2048, 512)
        assert shapes[f"layers.{i}.ffn.down_proj.weight"] == (512, 2048)
    assert shapes["output.W"] == (512, 512)


@pytest.mark.parametrize("backend", ["sdpa", "eager"])
def test_single_cell_forward_matches_official(network, expected, backend):
    network.set_attention_backend(backend)
    with torch.no_grad():
        out = network(torch.tensor(expected["sc_tokens"]), torch.tensor(expected["sc_values"]))
    np.testing.assert_allclose(out.hidden.numpy(), expected["sc_hidden"], atol=1e-4, rtol=0)
    assert out.load_balance_loss.item() == pytest.approx(float(expected["sc_load_balance_loss"]), abs=1e-5)
    index = _cell_index(out.hidden.shape[1], out.hidden.shape[1], out.hidden.shape[0])
    scores = network.output(out.hidden, index)[:, 1:-1]
    np.testing.assert_allclose(scores.detach().numpy(), expected["sc_head_scores"], atol=1e-4, rtol=0)
    pooled = pool_cells(out.hidden, index, torch.tensor(expected["sc_mask"]).bool(), 1)[:, 0]
    np.testing.assert_allclose(pooled.numpy(), expected["sc_cell_unprojected"], atol=1e-5, rtol=0)
    network.set_attention_backend("auto")


def test_spatial_forward_matches_official(network, expected):
    tokens = torch.tensor(expected["sp_tokens"])
    with torch.no_grad():
        out = network(tokens, torch.tensor(expected["sp_values"]), torch.tensor(expected["sp_positions"]))
    np.testing.assert_allclose(out.hidden.numpy(), expected["sp_hidden"], atol=1e-3, rtol=0)
    assert out.load_balance_loss.item() == pytest.approx(float(expected["sp_load_balance_loss"]), abs=1e-5)


def test_spectral_basis_matches_official(network, expected):
    basis, eigenvalues = spectral_basis(network.output.W.detach(), 0.9)
    assert basis.shape[1] == int(expected["n_components"])
    np.testing.assert_allclose(eigenvalues.numpy(), expected["eigenvalues"], atol=1e-5)
    # same subspace, same vectors up to sign
    overlap = np.abs(basis.numpy().T @ expected["basis"])
    np.testing.assert_allclose(np.diag(overlap), 1.0, atol=1e-4)
    # the sign convention makes each column's largest entry positive
    pivots = basis.abs().argmax(0)
    assert (basis[pivots, torch.arange(basis.shape[1])] > 0).all()
    with pytest.raises(ValueError, match="projection"):
        spectral_basis(network.output.W.detach(), 0.0)


def test_rotary_is_relative(network):
    """Shifting every coordinate by the same offset leaves attention unchanged (2D RoPE is relative)."""
    generator = torch.Generator().manual_seed(0)
    tokens = torch.randint(0, 60, (2, 14), generator=generator)
    values = torch.rand(2, 14, generator=generator) * 5
    positions = torch.rand(2, 14, 2, generator=generator) * 10
    with torch.no_grad():
        base = network(tokens, values, positions).hidden
        shifted = network(tokens, values, positions + torch.tensor([3.0, -2.0])).hidden
        swapped = network(tokens, values, positions.flip(-1)).hidden
    torch.testing.assert_close(base, shifted, atol=1e-4, rtol=0)
    assert (base - swapped).abs().max() > 1e-3  # x and y are distinct axes


def test_backends_agree_with_padding(network):
    """Padded batches give each sequence the states it has alone, on every backend."""
    generator = torch.Generator().manual_seed(1)
    lengths = [14, 9, 5]
    tokens = torch.randint(0, 60, (3, 14), generator=generator)
    values = torch.rand(3, 14, generator=generator) * 5
    positions = torch.rand(3, 14, 2, generator=generator) * 50
    mask = torch.arange(14)[None, :] < torch.tensor(lengths)[:, None]
    results = {}
    for backend in ("sdpa", "eager"):
        network.set_attention_backend(backend)
        with torch.no_grad():
            results[backend] = network(tokens, values, positions, mask).hidden
            for row, length in enumerate(lengths):
                alone = network(
                    tokens[row : row + 1, :length], values[row : row + 1, :length], positions[row : row + 1, :length]
                ).hidden
                torch.testing.assert_close(results[backend][row, :length], alone[0], atol=1e-5, rtol=0)
    network.set_attention_backend("auto")
    torch.testing.assert_close(results["sdpa"][mask], results["eager"][mask], atol=1e-5, rtol=0)


def test_eager_returns_attention_weights(network):
    tokens = torch.randint(0, 60, (2, 10))
    values = torch.rand(2, 10)
    mask = torch.ones(2, 10, dtype=torch.bool)
    mask[1, 7:] = False
    with torch.no_grad():
        out = network(tokens, values, None, mask, return_attention=True)
    assert len(out.attentions) == network.config.num_layers
    weights = out.attentions[0]
    assert weights.shape == (2, network.config.heads, 10, 10)
    torch.testing.assert_close(weights.sum(-1), torch.ones(2, network.config.heads, 10))
    assert weights[1, :, :, 7:].abs().max() == 0  # padded keys receive no attention


def test_load_balance_loss_by_hand():
    probabilities = torch.tensor([[0.7, 0.2, 0.1], [0.1, 0.3, 0.6]])
    top = torch.tensor([[0, 1], [2, 1]])
    # counts (1, 2, 1); f = counts * 3 / (2 * 2); P = mean probabilities
    expected_loss = sum(c * 3 / 4 * p for c, p in zip([1, 2, 1], [0.4, 0.25, 0.35], strict=True))
    assert load_balance_loss(probabilities, top).item() == pytest.approx(expected_loss)
    masked = load_balance_loss(probabilities, top, torch.tensor([True, False]))
    assert masked.item() == pytest.approx((1 * 3 / 2 * 0.7) + (1 * 3 / 2 * 0.2))


def test_config_validation_and_round_trip(tmp_path):
    config = OmniCellConfig(d_model=32, heads=4, dim=8, num_gene=10, hidden_dim=None, multiple_of=16)
    assert config.hidden_dim == 96  # 2/3 * 4 * 32 = 85 -> next multiple of 16
    config.to_json(tmp_path / "c.json")
    assert OmniCellConfig.from_json(tmp_path / "c.json") == config
    with pytest.raises(ValueError, match="divisible"):
        OmniCellConfig(d_model=30, heads=4)
    with pytest.raises(ValueError, match="head width"):
        OmniCellConfig(d_model=32, heads=4, dim=4)
    with pytest.raises(ValueError, match="topk"):
        OmniCellConfig(num_routing=3, topk=4)


def test_bfloat16_cast_keeps_rotary_frequencies_exact(tiny_dir, expected):
    import copy

    net = OmniCell(OmniCellConfig.from_json(tiny_dir / "LMConfig.json")).eval()
    load_state_dict(net, read_official(tiny_dir / "backbone.pth"))
    reference = net.rotary.inv_freq.clone()
    low = copy.deepcopy(net).to(torch.bfloat16)
    assert low.rotary.inv_freq.dtype == torch.float32 and torch.equal(low.rotary.inv_freq, reference)
    with torch.no_grad():
        hidden = low(
            torch.tensor(expected["sp_tokens"]),
            torch.tensor(expected["sp_values"]),
            torch.tensor(expected["sp_positions"]),
        ).hidden
    # bf16 arithmetic, but the geometry is right: close to the float32 reference
    assert (hidden.float() - torch.tensor(expected["sp_hidden"])).abs().mean() < 0.05
