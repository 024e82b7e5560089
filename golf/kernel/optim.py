"""The optimizer set a run steps (Muon + AdamW over a per-parameter group table) and its schedules.

**Muon** (Keller Jordan's, modded-nanogpt), as the official Parameter Golf baseline runs it (spec §1.6):
``b <- mu*b + g``; ``u = g + mu*b`` (Nesterov); ``X = u / (||u||_F + 1e-7)`` in the iteration dtype,
transposed when rows > cols; ``steps`` quintic steps ``A = X X^T; X = a*X + (b*A + (c*A) A) X`` with
(a, b, c) = (3.4445, -4.7750, 2.0315), or Polar Express (arXiv:2505.16932; PR #1787, run by #1855,
frontier-1855 spec §4.2): a tuple per iteration, no 1.01 safety factor on the norm (golf never had one);
``u <- X * sqrt(max(1, rows/cols))``; ``p <- p - lr*u``.
Decoupled weight decay ``p <- p*(1 - lr*wd)`` runs before (#295, #344, #1573) or after (#507, #187)
the update (spec §2.17). The momentum buffer is fp32, or bf16 as #1855 keeps it (frontier-1855 spec
§4.2: ``b <- mu*b + g`` rounded to bf16; the Nesterov vector ``g + mu*b`` is fp32). MuonEq-R (PR #1394
lineage, run by #1493; frontier spec §4.2) divides each row of the Nesterov update by its fp32 L2 norm
(floor 1e-7) before Newton-Schulz. A 3-D parameter (a bank of matrices, PR #399) is orthogonalised
slice by slice. The iteration runs in bf16 on CUDA, as the
records, and in fp32 on CPU by default (CPUs without bf16 units run bf16 matmuls tens of times slower).

Distributed (world > 1): matrix i is orthogonalised on rank ``i mod world``, which writes it into a
flat buffer (zeros elsewhere); one ``all_reduce(SUM)`` shares the updates and every rank applies all of
them. Gradients are already averaged (DDP). Every rank keeps every momentum buffer, so the state is the
same on all ranks and resumes at any world size. Matrices of one oriented shape are orthogonalised as
one batch (fewer kernels, the same math).

**The set**: one torch param group per (group, lr_mul, wd_mul) of the table, in order of first
appearance; ``muon`` groups go to Muon, adam group names to ``torch.optim.AdamW`` (fused on CUDA, as
the official script; with wd 0 it is Adam), ``frozen`` parameters to no optimizer. Each step: clip the
global gradient norm over every parameter, frozen ones included (#507), if configured; set each group's
lr to ``base_lr * lr_mul`` and Muon's momentum for the step; step. Hyperparameters come from the
config also after a checkpoint is loaded. With ``grad_clip_scope=local`` (#1855, frontier-1855 spec
§4.5) the run has no DDP: the set starts every rank from rank 0's weights (as DDP would), each rank
clips its own gradient and the set then averages the clipped gradients over the ranks
(``mean_r clip(g_r)``, not ``clip(mean_r g_r)``).

**Schedules** (official baseline, spec §1.7): no lr warmup; the multiplier is 1 until the warmdown, then
falls linearly to 0. Wall-clock: ``step_s = elapsed / step``, ``warmdown_s = warmdown_iters * step_s``,
``rem = max(cap - elapsed, 0)``, multiplier ``rem / warmdown_s`` once ``rem <= warmdown_s`` (without a
cap it counts iterations). ``wallclock_fraction`` (#1493, frontier spec §4.4): ``frac = elapsed / cap``
(``step / iterations`` without a cap), 1 while ``frac < 1 - warmdown_frac``, then
``max((1 - frac) / warmdown_frac, min_lr_mul)``. Muon's momentum rises linearly over its warmup.

The table (parameter name -> [group, lr_mul, wd_mul]) is resolved by the lab from role rules
(:func:`golf.optim.groups.groups_table`). :func:`build_optimizer` closes over its config so the
generator folds every setting into the step.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
import torch.distributed as dist

if TYPE_CHECKING:
    from golf.optim.config import MuonConfig, OptimizerConfig, ScheduleConfig


def newton_schulz(u, coefficients, dtype=torch.bfloat16, /):
    """Orthogonalise each matrix of ``u`` ([..., rows, cols]) with one quintic step per (a, b, c) of
    ``coefficients``; the result has ``dtype`` and u's shape."""
    x = u.to(dtype)
    t = x.size(-2) > x.size(-1)
    if t:
        x = x.mT  # [..., cols, rows]: the Gram matrix below is the smaller one
    x = x / (x.norm(dim=(-2, -1), keepdim=True) + 1e-7)
    for a, b, c in coefficients:
        g = x @ x.mT
        x = a * x + (b * g + (c * g) @ g) @ x
    return x.mT if t else x


def muon_row_normalize(u, /):
    """MuonEq-R: every row of ``u`` ([..., rows, cols]) scaled to unit L2 norm, in fp32 (floor 1e-7)."""
    u = u.float()
    return u / u.norm(dim=-1, keepdim=True).clamp_min(1e-7)


def muon_momentum(m: MuonConfig, step, /):
    """Muon's momentum at ``step``: linear from the warmup's start to ``momentum`` over its steps."""
    w = m.momentum_warmup
    if w is None:
        return m.momentum
    f = min(step / w.steps, 1.0)
    return (1.0 - f) * w.start + f * m.momentum


def lr_multiplier(cfg: ScheduleConfig, step, elapsed_s, iterations, max_wallclock_s, /):
    """The lr multiplier of optimizer step ``step`` (0-based), ``elapsed_s`` seconds of training in."""
    if cfg.kind == "wallclock_fraction":
        f = elapsed_s / max_wallclock_s if max_wallclock_s else step / iterations
        return 1.0 if f < 1.0 - cfg.warmdown_frac else max((1.0 - f) / cfg.warmdown_frac, cfg.min_lr_mul)
    if cfg.warmdown_iters <= 0:
        return 1.0
    if cfg.kind == "iterations" or not max_wallclock_s:
        if step >= iterations:
            return 0.0
        start = max(iterations - cfg.warmdown_iters, 0)
        return max((iterations - step) / cfg.warmdown_iters, cfg.min_lr_mul) if step >= start else 1.0
    warmdown_s = cfg.warmdown_iters * (elapsed_s / max(step, 1))
    rem = max(max_wallclock_s - elapsed_s, 0.0)
    return max(rem / max(warmdown_s, 1e-12), cfg.min_lr_mul) if rem <= warmdown_s else 1.0


def average_gradients(params, world_size, /):
    """Each gradient of ``params`` replaced by its mean over the ranks: one all-reduce per dtype."""
    gs = [p.grad for p in params if p.grad is not None]
    for dt in dict.fromkeys(g.dtype for g in gs):  # an order every rank agrees on
        b = [g for g in gs if g.dtype == dt]
        f = torch.cat([g.reshape(-1) for g in b])
        dist.all_reduce(f)
        torch._foreach_copy_(b, [x.view_as(g) for x, g in zip(f.div_(world_size).split([g.numel() for g in b]), b)])


def build_muon(groups, m: MuonConfig, world_size=1, rank=0, /):
    """Muon over param groups ``{params, lr, base_lr, weight_decay}``; its ``mu`` is the momentum of the
    next step (set by the set before each). With world_size > 1 a default process group must exist."""

    class Muon(torch.optim.Optimizer):
        @torch.no_grad()
        def step(self, /):
            mu, st = self.mu, self.state
            gp = [p for p in ps if p.grad is not None]
            for p in gp:
                if not st[p]:
                    st[p]["momentum_buffer"] = torch.zeros_like(p.grad)
                if m.momentum_dtype == "bfloat16":  # also after load_state_dict, which casts to the param's dtype
                    st[p]["momentum_buffer"] = st[p]["momentum_buffer"].bfloat16()
            bufs = [st[p]["momentum_buffer"] for p in gp]
            torch._foreach_mul_(bufs, mu)
            torch._foreach_add_(bufs, [p.grad for p in gp])
            flat.zero_()  # regions this rank does not fill add nothing
            buckets = {}  # oriented shape (rows <= cols) -> [([n, r, c] update, its region, shape scale)]
            for p, v in list(zip(ps, views))[rank::world_size]:
                if p.grad is not None:
                    u = p.grad.add(st[p]["momentum_buffer"], alpha=mu).view(v.shape)  # Nesterov
                    if m.row_normalize:
                        u = muon_row_normalize(u)
                    r, c = v.shape[1:]
                    if r > c:
                        u, v = u.mT, v.mT
                    buckets.setdefault(u.shape[1:], []).append((u.to(dt), v, r / c))
            for b in buckets.values():
                us, vs, ratios = zip(*b)
                # (a lone matrix goes in as it is: a transposed view multiplies differently from a copy)
                # one (a, b, c) per Newton-Schulz step (more steps than per-step tuples run the list once)
                x = ns(torch.cat(us) if len(us) > 1 else us[0], [m.ns_coefficients] * m.ns_steps
                       if m.ns_coefficients_per_step is None else m.ns_coefficients_per_step[:m.ns_steps], dt)
                for v, ratio, y in zip(vs, ratios, x.split([len(u) for u in us])):
                    v.copy_(y)
                    if ratio > 1:
                        v.mul_(ratio**0.5)  # sqrt(max(1, rows/cols))
            if world_size > 1:
                dist.all_reduce(flat)
            it = iter(views)
            for g in self.param_groups:
                gps, lr = g["params"], g["lr"]
                ups = [next(it).view_as(p).to(p.dtype) for p in gps]
                # decoupled decay (an exact no-op for a group without decay)
                if m.weight_decay and m.weight_decay_timing == "before":
                    torch._foreach_mul_(gps, 1 - lr * g["weight_decay"])
                torch._foreach_add_(gps, ups, alpha=-lr)
                if m.weight_decay and m.weight_decay_timing == "after":
                    torch._foreach_mul_(gps, 1 - lr * g["weight_decay"])

    ps = [p for g in groups for p in g["params"]]
    cuda = ps[0].is_cuda
    dt = torch.bfloat16 if m.ns_dtype == "bfloat16" or m.ns_dtype == "auto" and cuda else torch.float32
    # compiled once per bucket shape when asked (ns_compile None = on CUDA)
    ns = torch.compile(newton_schulz, dynamic=False) if m.ns_compile or m.ns_compile is None and cuda \
        else newton_schulz
    n = [p.numel() for p in ps]
    flat = torch.zeros(sum(n), dtype=dt, device=ps[0].device)
    # each parameter's region of the flat buffer as [n, rows, cols]
    views = [v.view(-1, *p.shape[-2:]) for v, p in zip(flat.split(n), ps)]
    o = Muon(groups, {})
    o.mu = m.momentum
    return o


def build_optimizer(model, cfg: OptimizerConfig, groups, world_size=1, rank=0, /):
    """Muon and AdamW over ``model``'s parameters as ``groups`` (name -> [group, lr_mul, wd_mul]) says.

    ``model`` is the bare module (not a DDP or compiled wrapper). Returns the set: ``step(step, lr_mul)``,
    ``zero_grad(set_to_none=True)``, ``state_dict()``, ``load_state_dict(state)``; ``muon``/``adam`` are
    the torch optimizers (None when no parameter goes there)."""
    m = cfg.muon
    keyed = {}  # (group, lr_mul, wd_mul) -> parameters, in order of first appearance
    for n, p in model.named_parameters():
        keyed.setdefault(tuple(groups[n]), []).append(p)
    mg, ag = [], []
    for (g, lm, wm), ps in keyed.items():
        if g == "muon":
            mg.append(dict(params=ps, lr=m.lr * lm, base_lr=m.lr * lm, weight_decay=m.weight_decay * wm))
        elif g != "frozen":
            a = cfg.adam_groups[g]
            ag.append(dict(params=ps, lr=a.lr * lm, base_lr=a.lr * lm, betas=a.betas, eps=a.eps,
                           weight_decay=a.weight_decay * wm))
    every = list(model.parameters())
    if cfg.grad_clip_scope == "local" and world_size > 1:  # no DDP: every rank starts from rank 0's weights
        for p in every:
            dist.broadcast(p.data, 0)
    mo = build_muon(mg, m, world_size, rank) if mg else None
    ao = torch.optim.AdamW(ag, fused=every[0].is_cuda or None) if ag else None
    opts = [o for o in (mo, ao) if o]

    class OptimizerSet:
        muon, adam, zero_grad = mo, ao, model.zero_grad

        def step(self, step, lr_mul):
            if cfg.grad_clip_norm > 0:
                torch.nn.utils.clip_grad_norm_(every, cfg.grad_clip_norm)
            if cfg.grad_clip_scope == "local" and world_size > 1:  # the gradients are this rank's own
                average_gradients(every, world_size)
            for o in opts:
                for g in o.param_groups:
                    g["lr"] = g["base_lr"] * lr_mul
            if mo:
                mo.mu = muon_momentum(m, step)
            for o in opts:
                o.step()

        def state_dict(self, /):
            return [o.state_dict() for o in opts]

        def load_state_dict(self, state, /):
            """Moments and momentum buffers; the param groups (hyperparameters) stay the config's."""
            for o, s in zip(opts, state):
                o.load_state_dict({**s, "param_groups": o.state_dict()["param_groups"]})

    return OptimizerSet()
