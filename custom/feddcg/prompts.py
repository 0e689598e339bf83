"""FedDCG's trainable parameters: the class-generalization networks f_theta_m (Eq. 1), the global prompt P_G, the
domain prompts P_D^m and the domain keys behind Eq. 7's domain similarity. Nothing here touches CLIP's weights.

State-dict layout (the unit of federation, see `feddcg.aggregation`):
    domains.<m>.generator.*   f_theta_m                    stage A, averaged within domain m
    domains.<m>.prompt        P_D^m  [n_domain_ctx, width] stage B, Eq. 5 then Eq. 6 within domain m
    domains.<m>.key           k_m    [embed_dim]           stage B, like P_D^m (only with domain_similarity=key)
    global_prompt             P_G    [n_global_ctx, width] stage B, FedAvg over all sites
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn


@dataclass(frozen=True)
class PromptSizes:
    """Shapes of the prompt parameters. token_width / embed_dim come from the backbone (512 / 512 for ViT-B/16)."""

    token_width: int
    embed_dim: int
    n_generator_ctx: int = 4
    n_domain_ctx: int = 4
    n_global_ctx: int = 4
    heads: int = 4
    ff_mult: int = 4


class GEGLU(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        value, gate = x.chunk(2, dim=-1)
        return value * F.gelu(gate)


class PromptGenerator(nn.Module):
    """f_theta(T) = h_phi(CrossAttention(Q, K_T, V_T)), Eq. 1.

    Learnable queries Q [n_ctx, width] attend over the frozen text embeddings T [n_cls, embed_dim] of the task's class
    names (keys/values K_T = T W_K, V_T = T W_V); h_phi is a GEGLU feed-forward block with a residual. Following
    FedTPG there is no residual around the attention: the context is a function of the class set.
    """

    def __init__(self, sizes: PromptSizes):
        super().__init__()
        w = sizes.token_width
        self.query = nn.Parameter(torch.randn(sizes.n_generator_ctx, w) * 0.02)
        self.norm_query = nn.LayerNorm(w)
        self.norm_names = nn.LayerNorm(sizes.embed_dim)
        self.attention = nn.MultiheadAttention(w, sizes.heads, kdim=sizes.embed_dim, vdim=sizes.embed_dim,
                                               batch_first=True)
        inner = sizes.ff_mult * w
        self.refine = nn.Sequential(nn.LayerNorm(w), nn.Linear(w, 2 * inner), GEGLU(), nn.Linear(inner, w))

    def forward(self, name_embeddings: torch.Tensor) -> torch.Tensor:
        """name_embeddings [n_cls, embed_dim] (L2-normalized) -> context [n_ctx, width]."""
        q = self.norm_query(self.query).unsqueeze(0)
        kv = self.norm_names(name_embeddings.to(q.dtype)).unsqueeze(0)
        attended, _ = self.attention(q, kv, kv, need_weights=False)
        attended = attended.squeeze(0)
        return attended + self.refine(attended)


class DomainBranch(nn.Module):
    """Everything that belongs to one training domain m: f_theta_m, P_D^m and its key k_m."""

    def __init__(self, sizes: PromptSizes, prompt_init: torch.Tensor):
        super().__init__()
        self.generator = PromptGenerator(sizes)
        self.prompt = nn.Parameter(prompt_init.clone())
        self.key = nn.Parameter(F.normalize(torch.randn(sizes.embed_dim), dim=0))

    def context(self, name_embeddings: torch.Tensor) -> torch.Tensor:
        """[n_domain_ctx + n_generator_ctx, width]: the domain prompt followed by the generated class context."""
        return torch.cat([self.prompt, self.generator(name_embeddings)], dim=0)


class FedDCGPrompts(nn.Module):
    """All of FedDCG's trainable parameters for M training domains."""

    def __init__(self, sizes: PromptSizes, num_domains: int, domain_init: torch.Tensor, global_init: torch.Tensor):
        super().__init__()
        if domain_init.shape != (sizes.n_domain_ctx, sizes.token_width):
            raise ValueError(f"domain prompt init has shape {tuple(domain_init.shape)}, "
                             f"expected ({sizes.n_domain_ctx}, {sizes.token_width})")
        if global_init.shape != (sizes.n_global_ctx, sizes.token_width):
            raise ValueError(f"global prompt init has shape {tuple(global_init.shape)}, "
                             f"expected ({sizes.n_global_ctx}, {sizes.token_width})")
        self.sizes = sizes
        self.domains = nn.ModuleList(DomainBranch(sizes, domain_init) for _ in range(num_domains))
        self.global_prompt = nn.Parameter(global_init.clone())

    @property
    def num_domains(self) -> int:
        return len(self.domains)

    @property
    def n_domain_tokens(self) -> int:
        return self.sizes.n_domain_ctx + self.sizes.n_generator_ctx


def initial_context(backbone, n_ctx: int, init: str, generator: torch.Generator | None = None) -> torch.Tensor:
    """Context init: "random" (N(0, 0.02) as CoOp) or a phrase whose token embeddings fill the first positions
    ("a photo of a"); a phrase shorter than n_ctx is padded with random vectors, a longer one is an error."""
    width = backbone.token_width
    randn = torch.randn(n_ctx, width, generator=generator) * 0.02
    if init == "random":
        return randn
    words = backbone.phrase_embedding(init).cpu()
    if words.shape[0] > n_ctx:
        raise ValueError(f"prompt init phrase {init!r} has {words.shape[0]} tokens, more than n_ctx={n_ctx}")
    return torch.cat([words, randn[words.shape[0]:]], dim=0)
