"""Muon: momentum, Nesterov and Newton-Schulz orthogonalisation of matrix updates.

From Keller Jordan's Muon (modded-nanogpt), as the official Parameter Golf baseline runs it (spec §1.6):
``b <- mu*b + g``; ``u = g + mu*b``; ``X = bf16(u) / (||u||_F + 1e-7)``, transposed when rows > cols;
five quintic steps ``A = X X^T; B = b_*A + c_*A^2; X = a_*X + B X`` with (a_, b_, c_) =
(3.4445, -4.7750, 2.0315); ``u <- X * sqrt(max(1, rows/cols))``; ``p <- p - lr*u``. Decoupled weight
decay ``p <- p*(1 - lr*wd)`` runs before (#295, #344, #1573) or after (#507, #187) the update (§2.17).
MuonEq-R (PR #1394 lineage, run by #1493; frontier spec §4.2): with ``row_normalize`` each row of the
Nesterov update (not the gradient, not the buffer) is divided by its L2 norm over the input dimension,
in fp32, ``u_r <- u_r / max(||u_r||, 1e-7)``, before Newton-Schulz.
A 3-D parameter (a bank of matrices, PR #399) is orthogonalised slice by slice.

Distributed form (world > 1): matrix i is orthogonalised on rank ``i mod world``; each rank writes its
updates into a flat buffer (zeros elsewhere), one ``all_reduce(SUM)`` shares them and every rank
applies all of them. Gradients must already be averaged (DDP). Every rank keeps the momentum of every
matrix (a cheap elementwise update), so optimizer state is identical on all ranks and a checkpoint
from rank 0 resumes any world size. Matrices of equal (oriented) shape are orthogonalised together as
one batch, which only changes how many kernels run, not the math.

The iteration runs in bf16 on CUDA, as the records; on CPU it runs in float32 by default
(``muon.ns_dtype``), because CPUs without bf16 units run bf16 matmuls tens of times slower. On CUDA it
can be compiled (``muon.ns_compile``, off by default: batched, the eager iteration is as fast).

Interacts with: ``golf.optim.builder`` (sets ``lr`` and ``momentum`` on each group every step) and the
routing table (which parameters come here).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence

import torch
import torch.distributed as dist
from torch import Tensor

NS_EPS = 1e-7


def newton_schulz(u: Tensor, steps: int, coefficients: Sequence[float], dtype: torch.dtype = torch.bfloat16) -> Tensor:
    """Orthogonalise each matrix of ``u`` ([..., rows, cols]) in ``dtype`` (bf16 as the records);
    returns a tensor of that dtype and u's shape.

    Each matrix is scaled to unit Frobenius norm, then its singular values are pushed towards 1 by the
    quintic ``s <- a*s + b*s^3 + c*s^5`` applied ``steps`` times (the singular vectors are unchanged).
    """
    a, b, c = coefficients
    x = u.to(dtype)
    transposed = x.size(-2) > x.size(-1)
    if transposed:
        x = x.mT  # [..., cols, rows]: the Gram matrix below is the smaller one
    x = x / (x.norm(dim=(-2, -1), keepdim=True) + NS_EPS)
    for _ in range(steps):
        gram = x @ x.mT
        poly = b * gram + (c * gram) @ gram
        x = a * x + poly @ x
    return x.mT if transposed else x


ROW_EPS = 1e-7


def row_normalize(u: Tensor) -> Tensor:
    """MuonEq-R: every row of ``u`` ([..., rows, cols]) scaled to unit L2 norm (fp32; floor 1e-7)."""
    u = u.float()
    return u / u.norm(dim=-1, keepdim=True).clamp_min(ROW_EPS)


def _as_matrices(t: Tensor) -> Tensor:
    """[..., rows, cols] -> [n, rows, cols] (a view for contiguous tensors)."""
    return t.reshape(-1, t.size(-2), t.size(-1))


class Muon(torch.optim.Optimizer):
    """Muon over param groups with keys ``params, lr, base_lr, weight_decay`` (set by the builder).

    ``momentum`` is one value for all groups, set through :meth:`set_momentum` before each step.
    ``world_size``/``rank`` choose which matrices this process orthogonalises; with world_size > 1 a
    default ``torch.distributed`` process group must be initialised.
    """

    def __init__(
        self,
        param_groups: list[dict],
        *,
        momentum: float,
        ns_steps: int,
        ns_coefficients: Sequence[float],
        weight_decay_before: bool,
        world_size: int = 1,
        rank: int = 0,
        ns_dtype: str = "bfloat16",
        row_normalize: bool = False,
        ns_compile: bool | None = False,
    ):
        defaults = dict(lr=0.0, base_lr=0.0, weight_decay=0.0, momentum=momentum)
        super().__init__(param_groups, defaults)
        for p in self._params():
            if p.ndim < 2:
                raise ValueError(f"Muon needs matrices; got a parameter of shape {tuple(p.shape)}")
        self.ns_steps = ns_steps
        self.ns_coefficients = tuple(float(v) for v in ns_coefficients)
        self.weight_decay_before = weight_decay_before
        self.row_normalize = row_normalize
        self.world_size = world_size
        self.rank = rank
        params = self._params()
        if ns_dtype == "auto":
            ns_dtype = "bfloat16" if params and params[0].device.type == "cuda" else "float32"
        self.ns_dtype = getattr(torch, ns_dtype)
        if ns_compile is None:
            ns_compile = bool(params) and params[0].device.type == "cuda"
        # compiled once per bucket shape (the shapes are fixed for a model), fused elementwise work
        self._newton_schulz = torch.compile(newton_schulz, dynamic=False) if ns_compile else newton_schulz
        offsets, total = [], 0
        for p in params:
            offsets.append(total)
            total += p.numel()
        self._offsets = offsets
        self._owned = [i for i in range(len(params)) if i % world_size == rank]
        self._flat = torch.zeros(total, dtype=self.ns_dtype, device=params[0].device) if params else None

    def _params(self) -> list[Tensor]:
        return [p for g in self.param_groups for p in g["params"]]

    def set_momentum(self, momentum: float) -> None:
        for g in self.param_groups:
            g["momentum"] = momentum

    @torch.no_grad()
    def step(self, closure=None):
        if closure is not None:
            raise ValueError("Muon.step takes no closure")
        params = self._params()
        if not params:
            return None
        momentum = self.param_groups[0]["momentum"]
        with_grad = [p for p in params if p.grad is not None]
        bufs = []
        for p in with_grad:
            state = self.state[p]
            if "momentum_buffer" not in state:
                state["momentum_buffer"] = torch.zeros_like(p.grad)
            bufs.append(state["momentum_buffer"])
        if bufs:
            torch._foreach_mul_(bufs, momentum)
            torch._foreach_add_(bufs, [p.grad for p in with_grad])

        flat = self._flat
        if self.world_size > 1 or len(with_grad) < len(params):
            flat.zero_()  # regions this rank does not fill must contribute nothing to the sum
        # bucket this rank's matrices by oriented shape (rows <= cols) and orthogonalise each bucket at once
        buckets: dict[tuple[int, int], list[tuple[int, Tensor]]] = defaultdict(list)
        for i in self._owned:
            p = params[i]
            if p.grad is None:
                continue
            buf = self.state[p]["momentum_buffer"]
            u = _as_matrices(p.grad.add(buf, alpha=momentum))  # Nesterov: g + mu*b, as [n, rows, cols]
            if self.row_normalize:
                u = row_normalize(u)
            if u.size(-2) > u.size(-1):
                u = u.mT  # [n, cols, rows]
            buckets[(u.size(-2), u.size(-1))].append((i, u.to(self.ns_dtype)))
        for members in buckets.values():
            # [sum of n, r, c] for all matrices of this oriented shape
            stacked = torch.cat([u for _, u in members]) if len(members) > 1 else members[0][1]
            ortho = self._newton_schulz(stacked, self.ns_steps, self.ns_coefficients, self.ns_dtype)
            start = 0
            for i, u in members:
                p = params[i]
                n = u.size(0)
                x = ortho[start:start + n]
                start += n
                rows, cols = p.size(-2), p.size(-1)
                out = _as_matrices(flat[self._offsets[i]:self._offsets[i] + p.numel()].view(p.shape))
                out.copy_(x.mT if rows > cols else x)
                scale = max(1.0, rows / cols) ** 0.5
                if scale != 1.0:
                    out.mul_(scale)
        if self.world_size > 1:
            dist.all_reduce(flat, op=dist.ReduceOp.SUM)

        index = 0
        for group in self.param_groups:
            group_params = group["params"]
            updates = [
                flat[self._offsets[index + j]:self._offsets[index + j] + p.numel()].view(p.shape).to(p.dtype)
                for j, p in enumerate(group_params)
            ]
            index += len(group_params)
            lr, decay = group["lr"], 1.0 - group["lr"] * group["weight_decay"]
            if decay != 1.0 and self.weight_decay_before:
                torch._foreach_mul_(group_params, decay)
            torch._foreach_add_(group_params, updates, alpha=-lr)
            if decay != 1.0 and not self.weight_decay_before:
                torch._foreach_mul_(group_params, decay)
        return None
