"""A two-block language model with the baseline's parameter names and init (spec §1.5), trained a few
hundred steps on a first-order Markov source: a small "trained model" for the size estimator."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class Attention(nn.Module):
    def __init__(self, d: int, heads: int):
        super().__init__()
        self.heads = heads
        self.c_q = nn.Linear(d, d, bias=False)
        self.c_k = nn.Linear(d, d // 2, bias=False)
        self.c_v = nn.Linear(d, d // 2, bias=False)
        self.proj = nn.Linear(d, d, bias=False)
        nn.init.zeros_(self.proj.weight)
        self.q_gain = nn.Parameter(torch.full((heads,), 1.5))

    def forward(self, x):
        b, t, d = x.shape
        hd = d // self.heads
        q = self.c_q(x).view(b, t, self.heads, hd).transpose(1, 2)  # [B, H, T, hd]
        k = self.c_k(x).view(b, t, self.heads // 2, hd).transpose(1, 2).repeat_interleave(2, 1)
        v = self.c_v(x).view(b, t, self.heads // 2, hd).transpose(1, 2).repeat_interleave(2, 1)
        q = F.rms_norm(q, (hd,)) * self.q_gain[None, :, None, None]
        y = F.scaled_dot_product_attention(q, F.rms_norm(k, (hd,)), v, is_causal=True)
        return self.proj(y.transpose(1, 2).reshape(b, t, d))


class Mlp(nn.Module):
    def __init__(self, d: int):
        super().__init__()
        self.fc = nn.Linear(d, 2 * d, bias=False)
        self.proj = nn.Linear(2 * d, d, bias=False)
        nn.init.zeros_(self.proj.weight)

    def forward(self, x):
        return self.proj(torch.relu(self.fc(x)).square())


class Block(nn.Module):
    def __init__(self, d: int, heads: int):
        super().__init__()
        self.attn, self.mlp = Attention(d, heads), Mlp(d)
        self.attn_scale = nn.Parameter(torch.ones(d))
        self.mlp_scale = nn.Parameter(torch.ones(d))
        self.resid_mix = nn.Parameter(torch.stack([torch.ones(d), torch.zeros(d)]))

    def forward(self, x, x0):
        x = self.resid_mix[0] * x + self.resid_mix[1] * x0
        x = x + self.attn_scale * self.attn(F.rms_norm(x, (x.size(-1),)))
        return x + self.mlp_scale * self.mlp(F.rms_norm(x, (x.size(-1),)))


class TinyLM(nn.Module):
    def __init__(self, vocab: int = 64, d: int = 64, layers: int = 2, heads: int = 4):
        super().__init__()
        self.tok_emb = nn.Embedding(vocab, d)
        nn.init.normal_(self.tok_emb.weight, std=0.005)
        self.blocks = nn.ModuleList(Block(d, heads) for _ in range(layers))

    def forward(self, ids):
        x = x0 = F.rms_norm(self.tok_emb(ids), (self.tok_emb.weight.size(1),))
        for block in self.blocks:
            x = block(x, x0)
        logits = F.rms_norm(x, (x.size(-1),)) @ self.tok_emb.weight.T  # tied head
        return 30 * torch.tanh(logits / 30)


def train_tiny_lm(steps: int = 300, lr: float = 3e-3, seed: int = 0) -> tuple[TinyLM, dict[str, torch.Tensor]]:
    """The trained model and a copy of its state dict at init."""
    torch.manual_seed(seed)
    g = torch.Generator().manual_seed(seed)
    model = TinyLM()
    vocab = model.tok_emb.weight.shape[0]
    init = {k: v.clone() for k, v in model.state_dict().items()}
    transitions = torch.softmax(torch.randn(vocab, vocab, generator=g) * 3, dim=1)
    opt = torch.optim.Adam(model.parameters(), lr=lr, betas=(0.9, 0.95))
    for _ in range(steps):
        ids = torch.empty(16, 33, dtype=torch.long)
        ids[:, 0] = torch.randint(vocab, (16,), generator=g)
        for t in range(32):
            ids[:, t + 1] = torch.multinomial(transitions[ids[:, t]], 1, generator=g).squeeze(1)
        loss = F.cross_entropy(model(ids[:, :-1]).reshape(-1, vocab), ids[:, 1:].reshape(-1))
        opt.zero_grad()
        loss.backward()
        opt.step()
    return model, init
