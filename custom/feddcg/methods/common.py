"""What every prompt-learning method shares on a site: the round's learning rate and the local SGD loop."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Sequence

import torch

from feddcg.config import ExperimentConfig


def round_lr(cfg: ExperimentConfig, round_index: int) -> float:
    """The learning rate of a round: cosine annealing over all rounds (as the paper), or constant."""
    t = cfg.training
    if t.lr_schedule == "constant":
        return t.lr
    return 0.5 * t.lr * (1 + math.cos(math.pi * round_index / t.rounds))


@dataclass
class LocalResult:
    loss: float
    accuracy: float  # training accuracy of the site's classifier during the round, percent
    steps: int


def sgd_epochs(cfg: ExperimentConfig, params: list[torch.nn.Parameter], lr: float, features: torch.Tensor,
               labels: torch.Tensor, step_fn: Callable[[torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]],
               generator: torch.Generator) -> LocalResult:
    """training.local_epochs of SGD over (features, labels); step_fn(x, y) returns (loss, logits for accuracy).
    A fresh optimizer each round: NVFlare runs each round's task in a new process (no momentum carried over)."""
    t = cfg.training
    optimizer = torch.optim.SGD(params, lr=lr, momentum=t.momentum, weight_decay=t.weight_decay)
    total_loss, correct, seen, steps = 0.0, 0, 0, 0
    for _ in range(t.local_epochs):
        order = torch.randperm(len(labels), generator=generator)
        for start in range(0, len(order), t.batch_size):
            batch = order[start:start + t.batch_size]
            x, y = features[batch].to(params[0].device), labels[batch].to(params[0].device)
            loss, logits = step_fn(x, y)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            total_loss += loss.item() * len(batch)
            correct += int((logits.argmax(dim=1) == y).sum())
            seen += len(batch)
            steps += 1
    return LocalResult(total_loss / max(seen, 1), 100.0 * correct / max(seen, 1), steps)


def only_trainable(module: torch.nn.Module, names: Sequence[str]) -> list[torch.nn.Parameter]:
    """Freeze every parameter of the module except `names`; return those, in module order."""
    chosen = []
    for name, param in module.named_parameters():
        param.requires_grad_(name in names)
        if name in names:
            chosen.append(param)
    return chosen
