"""The CPU's sparse edge products: the same values and gradients as a dense reference (the
whole model against the per-edge form: ``tests/nn/test_grape.py``)."""

from __future__ import annotations

import torch

from grape_core.nn.sparse import EdgeLayout, edge_dot, weighted_sum


def _edges(n_rows: int, n_cols: int, n_edges: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    row = torch.randint(0, n_rows, (n_edges,), generator=gen)
    col = torch.randint(0, n_cols, (n_edges,), generator=gen)
    # a repeated edge, and rows and columns with no edge at all
    row, col = torch.cat([row, row[:1]]), torch.cat([col, col[:1]])
    return row, col


def test_weighted_sum_matches_a_dense_product_and_its_gradients():
    row, col = _edges(30, 50, 200, seed=0)
    gen = torch.Generator().manual_seed(1)
    weight = torch.randn(row.numel(), generator=gen, requires_grad=True)
    x = torch.randn(50, 4, generator=gen, requires_grad=True)
    out = weighted_sum(weight, x, EdgeLayout.build(row, col, 30, 50))
    dense = torch.zeros(30, 50).index_put((row, col), weight, accumulate=True)
    expected = dense @ x
    torch.testing.assert_close(out, expected)
    probe = torch.randn(30, 4, generator=gen)
    got = torch.autograd.grad((out * probe).sum(), [weight, x])
    want = torch.autograd.grad((expected * probe).sum(), [weight, x])
    for g, w in zip(got, want):
        torch.testing.assert_close(g, w)


def test_edge_dot_matches_gathered_rows_and_their_gradients():
    row, col = _edges(40, 40, 300, seed=2)
    gen = torch.Generator().manual_seed(3)
    u = torch.randn(40, 6, generator=gen, requires_grad=True)
    out = edge_dot(u, EdgeLayout.build(row, col, 40, 40))
    expected = (u[row] * u[col]).sum(1)
    torch.testing.assert_close(out, expected)
    probe = torch.randn(row.numel(), generator=gen)
    got = torch.autograd.grad((out * probe).sum(), u)[0]
    want = torch.autograd.grad((expected * probe).sum(), u)[0]
    torch.testing.assert_close(got, want)
