"""One participant of the federation, free of any framework: what a site knows, computes and sends back.

The NVFlare executor wraps a `Site`; so will an in-process runner. A site derives its domain, classes and data
from the config and its name, encodes its images once (features cached in `cache_dir`), and answers two requests:
`train` (a stage of FedDCG on the received parameters; returns only the difference of the parameters it trained)
and `evaluate` (the global model on its share of the test set; returns only correct/total counts).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Mapping

import torch

from feddcg.aggregation import InvalidUpdate, subtract, validate_update
from feddcg.backbone import BackboneSpec, FrozenCLIP, load_backbone, resolve_device
from feddcg.config import ExperimentConfig
from feddcg.data.datasets import open_dataset
from feddcg.data.feature_cache import cached_features
from feddcg.data.partition import class_split, eval_shard, site_plan, train_image_indices
from feddcg.evaluation import count_key
from feddcg.methods.common import LocalResult
from feddcg.methods.feddcg import (ClassTask, build_prompts, predict, prompt_sizes, stage_payload_names, train_stage_a,
                                   train_stage_b)

_BACKBONES: dict[tuple, FrozenCLIP] = {}  # one frozen CLIP per process, shared by the sites it hosts


def shared_backbone(cfg: ExperimentConfig) -> FrozenCLIP:
    spec = BackboneSpec(cfg.backbone.model, cfg.backbone.pretrained)
    device = resolve_device(cfg.backbone.device)
    key = (spec, str(device))
    if key not in _BACKBONES:
        _BACKBONES[key] = load_backbone(spec, device)
    return _BACKBONES[key]


@dataclass
class TrainOutcome:
    update: dict[str, torch.Tensor]  # trained parameters minus the received ones
    num_samples: int  # |D_i|, the weight of this site in Eqs. 5 and FedAvg
    domain_index: int
    result: LocalResult


class Site:
    def __init__(self, cfg: ExperimentConfig, name: str, cache_dir: str | Path | None = None):
        self.cfg, self.name = cfg, name
        self.cache_dir = Path(cache_dir) if cache_dir is not None else None
        self.feature_cache_hits = 0

    @cached_property
    def backbone(self) -> FrozenCLIP:
        return shared_backbone(self.cfg)

    @cached_property
    def dataset(self):
        return open_dataset(self.cfg)

    @cached_property
    def split(self):
        return class_split(self.cfg, len(self.dataset.class_names))

    @cached_property
    def plan(self):
        return site_plan(self.cfg, self.split, self.name)

    def _features(self, domain, class_indices, image_indices) -> torch.Tensor:
        feats, hit = cached_features(self.cache_dir, self.backbone, self.dataset, domain, class_indices, image_indices)
        self.feature_cache_hits += int(hit)
        return feats

    @cached_property
    def train_data(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(features [N, D], labels [N] as positions in plan.classes)."""
        indices = train_image_indices(self.cfg, self.plan)
        cls = [c for c in self.plan.classes for _ in indices]
        img = [i for _ in self.plan.classes for i in indices]
        labels = torch.arange(len(self.plan.classes)).repeat_interleave(len(indices))
        return self._features(self.plan.domain, cls, img), labels

    @cached_property
    def train_task(self) -> ClassTask:
        names = [self.dataset.class_names[c] for c in self.plan.classes]
        return ClassTask.build(self.backbone, prompt_sizes(self.cfg, self.backbone), names)

    def _prompts_with(self, received: Mapping[str, torch.Tensor], stage: str | None = None):
        """A fresh model holding the received parameters; with a stage, also (sent, trained) names of its payload.

        The received names must be exactly what the server sends for the stage (everything when evaluating)."""
        prompts = build_prompts(self.cfg, self.backbone).to(self.backbone.device)
        state = prompts.state_dict()
        sent, trained = (stage_payload_names(state, prompts.num_domains, stage, self.plan.domain_index)
                         if stage else (list(state), []))
        try:
            validate_update(received, {k: state[k] for k in sent})
        except InvalidUpdate as err:
            raise InvalidUpdate(f"{self.name}: the server's parameters do not fit this model: {err}") from err
        prompts.load_state_dict({k: v.to(self.backbone.device) for k, v in received.items()}, strict=False)
        return prompts, trained

    def train(self, stage: str, round_index: int, received: Mapping[str, torch.Tensor]) -> TrainOutcome:
        m = self.plan.domain_index
        prompts, trained = self._prompts_with(received, stage)
        before = {k: v.detach().clone() for k, v in prompts.state_dict().items() if k in trained}
        features, labels = self.train_data
        generator = torch.Generator().manual_seed(hash_seed(self.cfg.seed, self.name, round_index))
        step = train_stage_a if stage == "A" else train_stage_b
        result = step(self.cfg, self.backbone, prompts, m, self.train_task, features, labels, round_index, generator)
        after = {k: v.detach() for k, v in prompts.state_dict().items() if k in before}
        update = {k: v.cpu() for k, v in subtract(after, before).items()}
        return TrainOutcome(update=update, num_samples=len(labels), domain_index=m, result=result)

    def evaluate(self, global_state: Mapping[str, torch.Tensor]) -> dict[str, tuple[int, int]]:
        """Counts of correct predictions per (domain, split, method) on this site's shard of the test set.

        Class texts depend on the split, not on the domain: each split's prompts are encoded once and all its test
        images, whatever their domain, are classified in one pass."""
        prompts, _ = self._prompts_with(global_state)
        names = self.dataset.class_names
        shard = eval_shard(self.cfg, self.split, self.name)
        counts: dict[str, tuple[int, int]] = {}
        for split_name, classes in (("base", self.split.base), ("new", self.split.new)):
            position = {c: k for k, c in enumerate(classes)}
            domains = sorted({i.domain for i in shard if i.split == split_name})
            groups = {d: [i for i in shard if i.split == split_name and i.domain == d] for d in domains}
            if not domains:
                continue
            features = torch.cat([self._features(d, [i.class_index for i in groups[d]],
                                                 [i.image_index for i in groups[d]]) for d in domains])
            labels = torch.tensor([position[i.class_index] for d in domains for i in groups[d]])
            domain_ids = torch.tensor([k for k, d in enumerate(domains) for _ in groups[d]])
            task = ClassTask.build(self.backbone, prompts.sizes, [names[c] for c in classes])
            for method, pred in predict(self.cfg, self.backbone, prompts, task, features).items():
                hit = pred == labels
                for k, d in enumerate(domains):
                    mask = domain_ids == k
                    counts[count_key(d, split_name, method)] = (int(hit[mask].sum()), int(mask.sum()))
        return counts


def hash_seed(seed: int, site: str, round_index: int) -> int:
    """A per-site, per-round seed that does not depend on Python's randomized str hash."""
    value = seed * 1_000_003 + round_index * 7919
    for ch in site:
        value = (value * 131 + ord(ch)) % (2**63 - 1)
    return value
