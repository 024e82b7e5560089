"""Parallel residuals, GPT-J form (PR #1493, taken from #1412/#1204; frontier spec §3.3, §3.8, trap 14).

In a parallel block attention and MLP read the same mixed input and both outputs add into the one
residual stream, instead of the MLP reading the stream after attention:

    x_in = m0 * x + m1 * x0
    out  = x_in + attn_scale * attn(s * RMSNorm(x_in)) + mlp_scale * mlp(s * RMSNorm(x_in))

(s the layer's LN scale). There is no second lane and no merge scalar. The parameters are those of
the sequential :class:`~golf.model.block.Block`, so turning it on changes no count.
Selected by ``arch.residual.parallel.layers`` (``from:7``: blocks 7..10 of 11), resolved in the plan.
"""

from __future__ import annotations

from torch import Tensor

from golf.model.block import Block
from golf.model.plan import LayerPlan


class ParallelBlock(Block):
    def forward(self, x: Tensor, x0: Tensor, ctx: dict, value_input: Tensor | None = None) -> Tensor:
        mix = self.resid_mix.to(x.dtype)
        x = mix[0] * x + mix[1] * x0
        z = self._norm(x)  # both branches' input (the norms are weightless and identical)
        a = self.attn(z, ctx, value_input)
        m = self.mlp(z)
        return x + self._gain(self._attn_gains, x.dtype) * a + self._gain(self._mlp_gains, x.dtype) * m


def block_class(layer: LayerPlan) -> type[Block]:
    """The block form of ``layer``: parallel where the plan says so, else sequential."""
    return ParallelBlock if layer.parallel else Block
