"""Server-side rules of FedDCG as pure functions on state dicts ({name: tensor}); no NVFlare, no I/O.

Callers pass client results in a fixed order (sorted by site name) so that sums, and therefore runs, are
reproducible whatever order results arrived in. Arithmetic is done in float64 and cast back to the parameter dtype.
"""

from __future__ import annotations

import math
from typing import Mapping, Sequence

import torch

State = Mapping[str, torch.Tensor]


class InvalidUpdate(ValueError):
    """A client update that must not be aggregated (wrong keys or shapes, non-finite values)."""


def validate_update(update: State, reference: State) -> None:
    """Raise InvalidUpdate unless `update` has exactly the reference's keys and shapes and only finite values."""
    missing, extra = set(reference) - set(update), set(update) - set(reference)
    if missing or extra:
        raise InvalidUpdate(f"keys differ from the model: missing {sorted(missing)}, unexpected {sorted(extra)}")
    for name, value in update.items():
        if tuple(value.shape) != tuple(reference[name].shape):
            raise InvalidUpdate(f"{name}: shape {tuple(value.shape)}, expected {tuple(reference[name].shape)}")
        if not torch.isfinite(value).all():
            raise InvalidUpdate(f"{name}: contains NaN or Inf")


def _weighted_sum(states: Sequence[State], weights: Sequence[float]) -> dict[str, torch.Tensor]:
    if not states:
        raise ValueError("nothing to aggregate")
    if len(states) != len(weights):
        raise ValueError(f"{len(states)} states but {len(weights)} weights")
    total = float(sum(weights))
    if total <= 0:
        raise ValueError(f"aggregation weights must have a positive sum, got {list(weights)}")
    out = {}
    for name in states[0]:
        acc = torch.zeros_like(states[0][name], dtype=torch.float64)
        for state, weight in zip(states, weights):
            acc += state[name].to(torch.float64) * (weight / total)
        out[name] = acc
    return out


def weighted_average(states: Sequence[State], weights: Sequence[float]) -> dict[str, torch.Tensor]:
    """sum_i w_i S_i / sum_i w_i, per tensor. Stage A: f_theta_m averaged over domain-m sites only."""
    averaged = _weighted_sum(states, weights)
    return {name: value.to(states[0][name].dtype) for name, value in averaged.items()}


def fedavg_update(current: State, deltas: Sequence[State], num_samples: Sequence[float]) -> dict[str, torch.Tensor]:
    """FedAvg on updates: V + sum_i n_i dV_i / sum_i n_i. P_G over all sites."""
    mean_delta = _weighted_sum(deltas, num_samples)
    return {name: (current[name].to(torch.float64) + mean_delta[name]).to(current[name].dtype) for name in current}


def domain_wise_update(current: State, deltas: Sequence[State], dataset_sizes: Sequence[float]) -> dict[str, torch.Tensor]:
    """Eq. 5: V_D^{s+1} = V_D^s + sum_i |D_i| dV_D,i / sum_i |D_i|, over the sites of ONE domain.

    The same arithmetic as FedAvg; what makes it Eq. 5 is the grouping: the caller passes only the deltas of the
    domain's own sites, so domain prompts never mix across domains.
    """
    return fedavg_update(current, deltas, dataset_sizes)


def beta_weights(count: int, a: float, b: float) -> list[float]:
    """alpha_j of Eq. 6 for a history of `count` iterates, oldest first.

    alpha_j = pdf_Beta(a, b)(t_j) at the iterate's relative age t_j = (j + 0.5) / count in (0, 1), so the newest
    iterate sits near t = 1 and the oldest near t = 0. a > b favours recent iterates (a momentum average);
    a = b = 1 is a plain moving average; a = b < 1 keeps both ends (the "beta moving average" of CLIP fine-tuning).
    """
    if count <= 0:
        raise ValueError("the history is empty")
    if a <= 0 or b <= 0:
        raise ValueError(f"Beta parameters must be positive, got a={a}, b={b}")
    log_norm = math.lgamma(a) + math.lgamma(b) - math.lgamma(a + b)
    weights = []
    for j in range(count):
        t = (j + 0.5) / count
        weights.append(math.exp((a - 1) * math.log(t) + (b - 1) * math.log(1 - t) - log_norm))
    return weights


def beta_momentum_average(history: Sequence[State], a: float, b: float) -> dict[str, torch.Tensor]:
    """Eq. 6: V~^{s+1} = sum_j alpha_j V^j / sum_j alpha_j over the bounded history V^{s+2-K} .. V^{s+1}.

    The paper writes the newest iterate as an extra term alpha_s V^{s+1}; taken literally the result is not a
    convex combination (its scale grows with alpha_s). We read it as the newest iterate being part of the normalized
    average, with its weight alpha_s from the same Beta density: for one iterate the result is the iterate itself.
    """
    return weighted_average(history, beta_weights(len(history), a, b))


def append_bounded(history: Sequence[State], state: State, max_length: int) -> list[State]:
    """The history with `state` appended, keeping only the newest `max_length` iterates (bounded memory)."""
    if max_length < 1:
        raise ValueError(f"history length must be >= 1, got {max_length}")
    return [*history, dict(state)][-max_length:]


def subtract(a: State, b: State) -> dict[str, torch.Tensor]:
    """a - b per tensor (a client's update as a difference from the weights it received)."""
    return {name: a[name] - b[name] for name in a}


def select(state: State, prefix: str) -> dict[str, torch.Tensor]:
    """The entries under `prefix`, prefix stripped ("domains.1." -> generator.query, prompt, ...)."""
    return {name[len(prefix):]: value for name, value in state.items() if name.startswith(prefix)}


def prefixed(state: State, prefix: str) -> dict[str, torch.Tensor]:
    return {prefix + name: value for name, value in state.items()}
