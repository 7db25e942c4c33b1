"""Cases for the fused rotary attention kernel under Triton's CPU interpreter (run by test_triton_attention.py).

``TRITON_INTERPRET=1`` must be set before triton itself is first imported (triton.language's own
jitted helpers are defined then), so these cases run in a child pytest process started with it;
this file is not collected by the main run (no ``test_`` prefix).
"""

from __future__ import annotations

import os

import numpy as np
import pytest
import torch

pytest.importorskip("triton", reason="the 'kernels' extra (triton) is not installed")


if os.environ.get("TRITON_INTERPRET") != "1":
    pytest.skip("run through tests/model/test_triton_attention.py (needs TRITON_INTERPRET=1)", allow_module_level=True)

import omnicell as oc
from _helpers import align_signs
from omnicell.nn import RotaryEmbedding2D
from omnicell.nn import _triton_attention as kernel


def test_the_kernel_is_interpreted():
    assert os.environ.get("TRITON_INTERPRET") == "1"
    assert kernel.interpreted()


def _reference(q, k, v, lengths, positions, rotary):
    """Eager attention per sequence, rotary applied as the model does (rotate in float32, round)."""
    outputs, start = [], 0
    for length in lengths:
        part = [t[start : start + length].transpose(0, 1)[None] for t in (q, k, v)]
        if positions is not None:
            cos, sin = rotary.angles(positions[None, start : start + length])
            part[0], part[1] = (RotaryEmbedding2D.rotate(t, cos, sin) for t in part[:2])
        query, key, value = (t.double() for t in part)
        weights = torch.softmax(query @ key.transpose(-1, -2) * query.shape[-1] ** -0.5, dim=-1)
        outputs.append((weights @ value)[0].transpose(0, 1))
        start += length
    return torch.cat(outputs)


@pytest.mark.parametrize(
    ("dtype", "head_dim", "rotate", "atol"),
    [
        (torch.float32, 8, True, 1e-5),
        (torch.float32, 64, True, 1e-5),
        (torch.float32, 16, False, 1e-5),
        # float16 rounds to ~5e-4 near 1: the bound is its resolution, not the kernel's
        (torch.float16, 64, True, 2e-3),
    ],
)
def test_kernel_matches_eager_reference(dtype, head_dim, rotate, atol):
    generator = torch.Generator().manual_seed(head_dim)
    lengths = [5, 40, 1, 17]  # one sequence longer than a tile, one of a single token
    n_tokens, heads = sum(lengths), 2
    q, k, v = (torch.randn(n_tokens, heads, head_dim, generator=generator).to(dtype) for _ in range(3))
    # raw coordinates in the hundreds, as in spatial data: large angles
    positions = torch.rand(n_tokens, 2, generator=generator) * 500 if rotate else None
    rotary = RotaryEmbedding2D(head_dim, 10000.0)
    cu_seqlens = torch.tensor([0, *np.cumsum(lengths)], dtype=torch.int32)
    out = kernel.rotary_attention(q, k, v, cu_seqlens, max(lengths), positions, rotary.inv_freq)
    assert out.dtype == dtype and out.shape == q.shape
    expected = _reference(q, k, v, lengths, positions, rotary)
    torch.testing.assert_close(out.double(), expected, atol=atol, rtol=0)
    if rotate:  # the rotation really happened: without it the result is far off
        plain = _reference(q, k, v, lengths, None, rotary)
        assert (out.double() - plain).abs().max() > 100 * atol


def test_network_forward_with_triton_backend(tiny_dir, expected):
    """Padded batch through the triton backend (packed inside) equals the SDPA backend."""
    from omnicell.nn import OmniCell, OmniCellConfig, load_state_dict, read_official

    network = OmniCell(OmniCellConfig.from_json(tiny_dir / "LMConfig.json"), attention_backend="triton").eval()
    load_state_dict(network, read_official(tiny_dir / "backbone.pth"))
    tokens = torch.tensor(expected["sp_tokens"][:6])
    values = torch.tensor(expected["sp_values"][:6])
    positions = torch.tensor(expected["sp_positions"][:6])
    mask = torch.ones(tokens.shape, dtype=torch.bool)
    mask[2, 20:] = False
    with torch.no_grad():
        fused = network(tokens, values, positions, mask).hidden
        network.set_attention_backend("sdpa")
        reference = network(tokens, values, positions, mask).hidden
    torch.testing.assert_close(fused[mask], reference[mask], atol=1e-4, rtol=0)
    np.testing.assert_allclose(fused[~mask].numpy(), 0.0)


def test_training_with_triton_backend_falls_back_to_sdpa(tiny_dir, expected):
    """With gradients the backend runs SDPA: gradients exist and equal those of the SDPA backend."""
    from omnicell.nn import OmniCell, OmniCellConfig, load_state_dict, read_official

    grads = []
    for backend in ("triton", "sdpa"):
        network = OmniCell(OmniCellConfig.from_json(tiny_dir / "LMConfig.json"), attention_backend=backend)
        load_state_dict(network, read_official(tiny_dir / "backbone.pth"))
        out = network(torch.tensor(expected["sp_tokens"][:2]), torch.tensor(expected["sp_values"][:2]),
                      torch.tensor(expected["sp_positions"][:2]))  # fmt: skip
        out.hidden.square().mean().backward()
        grads.append(network.layers[0].self_attn.q_proj.weight.grad)
    torch.testing.assert_close(grads[0], grads[1], atol=1e-7, rtol=0)


@pytest.mark.parametrize("spatial", [False, True])
def test_conformance_fixtures_with_triton_backend(tiny_adata, tiny_model, expected, spatial):
    """``attention_backend="triton"`` reproduces the official embeddings within their tolerances."""
    model = tiny_model
    model.network.set_attention_backend("triton")
    try:
        genes = expected["selected_genes"]
        oc.pp.tokenize(tiny_adata, model, genes=genes, spatial=spatial, n_neighbors=3)
        with pytest.warns(UserWarning, match="express none"):
            oc.tl.embed_cells(tiny_adata, model, store_window=spatial, batch_size=24)
    finally:
        model.network.set_attention_backend("auto")
    assert tiny_adata.uns["omnicell"]["embed_cells"]["attention_backend"] == "triton"
    if spatial:
        reference = expected["sp_cell_embedding"]
        window = tiny_adata.obsm["X_omnicell_window"]
        np.testing.assert_allclose(align_signs(window, reference), reference, atol=1e-3)
    else:
        reference = expected["sc_cell_embedding"]
        embedding = tiny_adata.obsm["X_omnicell"]
        np.testing.assert_allclose(align_signs(embedding, reference), reference, atol=1e-4)
