"""Eq. 7, domain-guided aggregation inference, and the two alternatives of the paper's Table 2.

    P(y = j | x) = sum_m w_m sim(I(x), Z_mj) + w_g sim(I(x), Z_gj)

Scores are cosine similarities (the paper's sim). Domain weights w_m sum to one and are scaled by (1 - w_g), so the
mixture is a convex combination for every choice of mixer:
    domain_guided  w_m = softmax_m(sim(I(x), k_m) / tau)   the sample's similarity to each training domain
    average        w_m = 1 / M                            (Table 2, M1)
    uncertainty    w_m = softmax_m(-H(p_m(.|x)))          branches that are sure of themselves count more (M2)
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

MIXERS = ("domain_guided", "average", "uncertainty")
DOMAIN_SIMILARITIES = ("key", "prompt_fit")


def key_similarity_weights(image_features: torch.Tensor, keys: torch.Tensor, temperature: float) -> torch.Tensor:
    """[N, M] = softmax over domains of cos(I(x), k_m) / tau: the learned-key reading of w_m (default)."""
    sims = F.normalize(image_features, dim=-1) @ F.normalize(keys, dim=-1).T
    return torch.softmax(sims / temperature, dim=-1)


def prompt_fit_weights(domain_scores: torch.Tensor, temperature: float) -> torch.Tensor:
    """[N, M] = softmax over domains of max_j sim(I(x), Z_mj) / tau: how well domain m's prompts explain x."""
    best = domain_scores.max(dim=-1).values  # [M, N]
    return torch.softmax(best.T / temperature, dim=-1)


def uncertainty_weights(domain_scores: torch.Tensor, logit_scale: float) -> torch.Tensor:
    """[N, M] = softmax over domains of the negative entropy of each branch's class posterior."""
    probs = torch.softmax(domain_scores * logit_scale, dim=-1)  # [M, N, C]
    entropy = -(probs * torch.log(probs.clamp_min(1e-12))).sum(dim=-1)  # [M, N]
    return torch.softmax(-entropy.T, dim=-1)


def average_weights(num_samples: int, num_domains: int) -> torch.Tensor:
    return torch.full((num_samples, num_domains), 1.0 / num_domains)


def domain_guided_scores(domain_scores: torch.Tensor, global_scores: torch.Tensor, domain_weights: torch.Tensor,
                         global_weight: float) -> torch.Tensor:
    """Eq. 7: [N, C] = (1 - w_g) sum_m w_m(x) S_m(x, .) + w_g S_g(x, .).

    domain_scores [M, N, C] = sim(I(x), Z_mj); global_scores [N, C] = sim(I(x), Z_gj); domain_weights [N, M], rows
    summing to one; global_weight w_g in [0, 1].
    """
    if not 0.0 <= global_weight <= 1.0:
        raise ValueError(f"global_weight must be in [0, 1], got {global_weight}")
    if domain_weights.shape != (domain_scores.shape[1], domain_scores.shape[0]):
        raise ValueError(f"domain_weights {tuple(domain_weights.shape)} do not match scores "
                         f"{tuple(domain_scores.shape)} (want [N, M])")
    mixed = torch.einsum("nm,mnc->nc", domain_weights.to(domain_scores.dtype), domain_scores)
    return (1.0 - global_weight) * mixed + global_weight * global_scores


def mixer_weights(mixer: str, *, image_features: torch.Tensor, domain_scores: torch.Tensor, keys: torch.Tensor,
                  similarity: str, temperature: float, logit_scale: float) -> torch.Tensor:
    """The [N, M] domain weights of the named mixer (config: inference.mixer)."""
    if mixer == "average":
        return average_weights(domain_scores.shape[1], domain_scores.shape[0]).to(domain_scores.device)
    if mixer == "uncertainty":
        return uncertainty_weights(domain_scores, logit_scale)
    if mixer == "domain_guided":
        if similarity == "key":
            return key_similarity_weights(image_features, keys, temperature)
        if similarity == "prompt_fit":
            return prompt_fit_weights(domain_scores, temperature)
        raise ValueError(f"inference.domain_similarity must be one of {DOMAIN_SIMILARITIES}, got {similarity!r}")
    raise ValueError(f"inference.mixer must be one of {MIXERS}, got {mixer!r}")
