"""Who holds what: the base/new class split, each site's domain and classes, and the evaluation shards.

Everything is a deterministic function of the config, so the server and every site compute the same plan
independently and no data description ever travels.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from feddcg.config import ConfigError, ExperimentConfig


@dataclass(frozen=True)
class ClassSplit:
    """Dataset class indices seen in training (base) and never seen in training (new)."""

    base: tuple[int, ...]
    new: tuple[int, ...]


@dataclass(frozen=True)
class SitePlan:
    site: str
    domain_index: int  # position in data.training_domains (= which generator / domain prompt the site trains)
    domain: str
    shard: int  # position among the domain's sites: sites of one domain get disjoint images
    classes: tuple[int, ...]  # dataset class indices, all base classes


@dataclass(frozen=True)
class EvalItem:
    domain: str
    split: str  # base | new
    class_index: int
    image_index: int


def class_split(cfg: ExperimentConfig, num_dataset_classes: int) -> ClassSplit:
    """A seeded choice of base and new classes among the data set's classes."""
    d = cfg.data
    if d.base_classes + d.new_classes > num_dataset_classes:
        raise ConfigError(f"{cfg.source}: data.base_classes + data.new_classes = {d.base_classes + d.new_classes} "
                          f"exceeds the {num_dataset_classes} classes of {d.dataset}")
    order = np.random.default_rng([cfg.seed, 101]).permutation(num_dataset_classes)
    return ClassSplit(base=tuple(sorted(order[:d.base_classes].tolist())),
                      new=tuple(sorted(order[d.base_classes:d.base_classes + d.new_classes].tolist())))


def plan_sites(cfg: ExperimentConfig, split: ClassSplit) -> list[SitePlan]:
    """site-1..site-N in order: the first N/M sites belong to the first training domain, and so on.

    Within a domain, a seeded permutation of the base classes is dealt out in consecutive chunks of
    classes_per_site (wrapping around), so the domain's sites together cover the base classes as evenly as possible.
    """
    d = cfg.data
    per_domain = d.num_sites // len(d.training_domains)
    plans = []
    for domain_index, domain in enumerate(d.training_domains):
        order = np.random.default_rng([cfg.seed, 202, domain_index]).permutation(len(split.base))
        for shard in range(per_domain):
            start = shard * d.classes_per_site
            picks = [split.base[order[(start + k) % len(order)]] for k in range(d.classes_per_site)]
            site_number = domain_index * per_domain + shard + 1
            plans.append(SitePlan(f"site-{site_number}", domain_index, domain, shard, tuple(sorted(picks))))
    return plans


def site_plan(cfg: ExperimentConfig, split: ClassSplit, site: str) -> SitePlan:
    for plan in plan_sites(cfg, split):
        if plan.site == site:
            return plan
    raise ConfigError(f"{cfg.source}: site {site!r} is not in this federation (data.num_sites = "
                      f"{cfg.data.num_sites}: site-1 .. site-{cfg.data.num_sites})")


def train_image_indices(cfg: ExperimentConfig, plan: SitePlan) -> list[int]:
    """Per-class image indices of a site: disjoint across the sites of a domain; sampling_rate keeps a prefix."""
    shots = cfg.data.shots_per_class
    kept = max(1, int(round(shots * cfg.data.sampling_rate)))
    return list(range(plan.shard * shots, plan.shard * shots + kept))


TEST_INDEX_OFFSET = 1_000_000  # test images never share an index with training images


def eval_items(cfg: ExperimentConfig, split: ClassSplit) -> list[EvalItem]:
    """The whole test set: every domain (training and held-out) x {base, new} classes x test images per class."""
    d = cfg.data
    items = []
    for domain in (*d.training_domains, d.held_out_domain):
        for split_name, classes in (("base", split.base), ("new", split.new)):
            for c in classes:
                for k in range(d.test_images_per_class):
                    items.append(EvalItem(domain, split_name, c, TEST_INDEX_OFFSET + k))
    return items


def eval_shard(cfg: ExperimentConfig, split: ClassSplit, site: str) -> list[EvalItem]:
    """The site's share of the test set (round-robin), so evaluation work is spread over all sites."""
    sites = cfg.site_names
    position = sites.index(site)
    return eval_items(cfg, split)[position::len(sites)]
