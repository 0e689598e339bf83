"""Data sets as the rest of the plugin sees them: domains, class names, and images addressed by
(domain, class index, image index). The synthetic world is the offline default."""

from __future__ import annotations

from typing import Protocol, Sequence

import numpy as np

from feddcg.config import ConfigError, ExperimentConfig
from feddcg.data import synthetic_world as world


class FederatedDataset(Protocol):
    name: str

    @property
    def domains(self) -> tuple[str, ...]: ...

    @property
    def class_names(self) -> list[str]: ...

    def images(self, domain: str, class_indices: Sequence[int], image_indices: Sequence[int]) -> np.ndarray:
        """uint8 [N, H, W, 3] at the backbone's input size."""

    def identity(self) -> dict:
        """Everything that determines the pixels (for feature-cache keys)."""


class SyntheticWorldDataset:
    name = "synthetic_world"

    def __init__(self, seed: int, image_size: int, acquisition: world.Acquisition):
        self.seed, self.image_size, self.acquisition = seed, image_size, acquisition
        self._names = world.class_names()

    @property
    def domains(self) -> tuple[str, ...]:
        return world.STYLES

    @property
    def class_names(self) -> list[str]:
        return self._names

    def images(self, domain, class_indices, image_indices):
        return world.render_batch(domain, class_indices, image_indices, seed=self.seed, image_size=self.image_size,
                                  acquisition=self.acquisition)

    def identity(self) -> dict:
        a = self.acquisition
        return {"dataset": self.name, "seed": self.seed, "image_size": self.image_size,
                "acquisition": [a.kind, a.colour, a.strength], "renderer": world.RENDERER_VERSION}


def open_dataset(cfg: ExperimentConfig) -> FederatedDataset:
    d = cfg.data
    if d.dataset != "synthetic_world":
        raise ConfigError(f"{cfg.source}: data.dataset {d.dataset!r} is not available (available: synthetic_world)")
    try:
        acquisition = world.Acquisition(d.acquisition.kind, d.acquisition.colour, d.acquisition.strength)
    except ValueError as err:
        raise ConfigError(f"{cfg.source}: data.acquisition: {err}") from err
    dataset = SyntheticWorldDataset(cfg.seed, d.image_size, acquisition)
    for domain in (*d.training_domains, d.held_out_domain):
        if domain not in dataset.domains:
            raise ConfigError(f"{cfg.source}: domain {domain!r} is not a domain of {d.dataset} "
                              f"(domains: {', '.join(dataset.domains)})")
    return dataset
