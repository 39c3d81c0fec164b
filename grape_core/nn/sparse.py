r"""Edge-list products with learned edge weights, as CSR sparse products (the CPU path).

Both model parts that touch every edge in a training step, the propagation
(:math:`\mathrm{out}_v = \sum_{e: u \to v} w_e\, x_u`) and the metric learner's edge scores
(:math:`s_e = \langle q_u, q_v \rangle`), are written here as one sparse product each, with
their gradients as sparse products too. Gathering a row per edge and scattering it back is
what autograd would otherwise do, and on a CPU the backward of an edge gather (an
accumulating index write, one edge at a time) cost half of a training step.

:class:`EdgeLayout` holds the edge list compressed by destination (``A``) and by source
(``A^T``); it depends only on which edges exist, so a model builds it once per choice of
learned-only edges. Values are permuted into either order at each call.

Shapes: ``weight (n_edges,)``, ``x (n_cols, batch)`` -> ``(n_rows, batch)``;
``u (n, d)`` -> ``(n_edges,)``.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import torch
from torch import Tensor


@dataclass(frozen=True)
class EdgeLayout:
    """An edge list ``col[e] -> row[e]`` in CSR order by row and by column."""

    n_edges: int
    n_rows: int
    n_cols: int
    by_row: Tensor
    """Edge order of ``A`` (sorted by row, then column)."""
    row_ptr: Tensor
    row_cols: Tensor
    by_col: Tensor
    """Edge order of ``A^T`` (sorted by column, then row)."""
    col_ptr: Tensor
    col_rows: Tensor

    @classmethod
    def build(cls, row: Tensor, col: Tensor, n_rows: int, n_cols: int) -> "EdgeLayout":
        by_row, row_ptr, row_cols = _compress(row, col, n_rows, n_cols)
        by_col, col_ptr, col_rows = _compress(col, row, n_cols, n_rows)
        return cls(row.numel(), n_rows, n_cols, by_row, row_ptr, row_cols, by_col, col_ptr, col_rows)

    def matrix(self, values: Tensor) -> Tensor:
        """``A`` ``(n_rows, n_cols)`` with the edges' ``values``."""
        return _csr(self.row_ptr, self.row_cols, values[self.by_row], (self.n_rows, self.n_cols))

    def transposed(self, values: Tensor) -> Tensor:
        """``A^T`` ``(n_cols, n_rows)`` with the edges' ``values``."""
        return _csr(self.col_ptr, self.col_rows, values[self.by_col], (self.n_cols, self.n_rows))

    def sampled_dot(self, left: Tensor, right: Tensor) -> Tensor:
        """``(n_edges,)``: ``<left[row_e], right[col_e]>`` for every edge, in edge order, as
        one sampled product (no ``n_edges x width`` gather)."""
        pattern = _csr(self.row_ptr, self.row_cols, left.new_ones(self.n_edges),
                       (self.n_rows, self.n_cols))
        values = torch.sparse.sampled_addmm(pattern, left.contiguous(), right.T.contiguous(),
                                            beta=0.0).values()
        return torch.empty_like(values).index_copy_(0, self.by_row, values)


def _compress(major: Tensor, minor: Tensor, n_major: int, n_minor: int) -> tuple[Tensor, Tensor, Tensor]:
    order = torch.argsort(major * n_minor + minor)
    ptr = torch.zeros(n_major + 1, dtype=torch.long, device=major.device)
    ptr[1:] = torch.bincount(major, minlength=n_major).cumsum(0)
    return order, ptr, minor[order]


def _csr(ptr: Tensor, index: Tensor, values: Tensor, size: tuple[int, int]) -> Tensor:
    with warnings.catch_warnings():  # "CSR support is in beta": its products are tested here
        warnings.filterwarnings("ignore", message="Sparse CSR tensor support")
        return torch.sparse_csr_tensor(ptr, index, values, size, check_invariants=False)


class _WeightedSum(torch.autograd.Function):
    """``A(weight) @ x``: every edge adds ``weight[e] * x[col[e]]`` to ``row[e]``."""

    @staticmethod
    def forward(ctx, weight: Tensor, x: Tensor, layout: EdgeLayout) -> Tensor:
        ctx.layout = layout
        ctx.save_for_backward(weight, x)
        return torch.sparse.mm(layout.matrix(weight), x)

    @staticmethod
    def backward(ctx, grad: Tensor):
        weight, x = ctx.saved_tensors
        layout: EdgeLayout = ctx.layout
        grad_weight = grad_x = None
        if ctx.needs_input_grad[0]:  # d/dw_e = <grad[row_e], x[col_e]>
            grad_weight = layout.sampled_dot(grad, x)
        if ctx.needs_input_grad[1]:
            grad_x = torch.sparse.mm(layout.transposed(weight), grad.contiguous())
        return grad_weight, grad_x, None


class _EdgeDot(torch.autograd.Function):
    """``<u[row_e], u[col_e]>`` for every edge of a square layout."""

    @staticmethod
    def forward(ctx, u: Tensor, layout: EdgeLayout) -> Tensor:
        ctx.layout = layout
        ctx.save_for_backward(u)
        return layout.sampled_dot(u, u)

    @staticmethod
    def backward(ctx, grad: Tensor):
        (u,) = ctx.saved_tensors
        layout: EdgeLayout = ctx.layout
        # row r gets sum_e grad_e u[col_e] over its edges, column c sum_e grad_e u[row_e]
        return (torch.sparse.mm(layout.matrix(grad), u)
                + torch.sparse.mm(layout.transposed(grad), u)), None


def weighted_sum(weight: Tensor, x: Tensor, layout: EdgeLayout) -> Tensor:
    """``(n_rows, batch)``: ``sum_e weight[e] * x[col[e]]`` at each ``row[e]``, with
    gradients for ``weight`` and ``x``."""
    return _WeightedSum.apply(weight, x.contiguous(), layout)


def edge_dot(u: Tensor, layout: EdgeLayout) -> Tensor:
    """``(n_edges,)``: the dot product of each edge's two end rows of ``u``."""
    return _EdgeDot.apply(u.contiguous(), layout)
