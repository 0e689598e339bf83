"""The experiment configuration: one YAML file in app_configs/ is the single source of truth.

`load_config(path)` fills defaults, rejects unknown keys and bad values with errors that name the file and the key,
and returns frozen dataclasses. Job folders carry the resolved config (`jobs/<name>/app/config/experiment.yaml`),
written by `feddcg.flare.jobgen`, so the server and every site read the same settings.
"""

from __future__ import annotations

import dataclasses
import difflib
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from feddcg.inference import DOMAIN_SIMILARITIES, MIXERS


class ConfigError(ValueError):
    """A setting is missing, unknown or out of range; the message names the file and the key."""


@dataclass(frozen=True)
class BackboneConfig:
    model: str = "bundled"  # "bundled", an open_clip name (ViT-B-16) or local-dir:/folder
    pretrained: str | None = None  # open_clip tag ("openai") or a weights file; ignored for bundled/local-dir
    device: str = "auto"  # auto | cpu | cuda | cuda:N


@dataclass(frozen=True)
class AcquisitionConfig:
    kind: str = "none"  # none | frame | cast | logo (see feddcg.data.synthetic_world.Acquisition)
    colour: str = "green"
    strength: float = 1.0


@dataclass(frozen=True)
class DataConfig:
    dataset: str = "synthetic_world"
    training_domains: tuple[str, ...] = ("photo", "clipart", "painting")
    held_out_domain: str = "sketch"
    num_sites: int = 18  # site-1..site-N, split evenly over the training domains in order
    base_classes: int = 60
    new_classes: int = 60
    classes_per_site: int = 10
    shots_per_class: int = 16
    sampling_rate: float = 1.0  # fraction of each site's training images used (the paper's low-sampling setting)
    test_images_per_class: int = 10
    image_size: int = 32  # synthetic_world rendering size
    acquisition: AcquisitionConfig = AcquisitionConfig()


@dataclass(frozen=True)
class PromptConfig:
    n_generator_ctx: int = 4
    n_domain_ctx: int = 4
    n_global_ctx: int = 4
    heads: int = 4
    ff_mult: int = 4
    domain_init: str = "a photo of a"  # a phrase, or "random"
    global_init: str = "a photo of a"


@dataclass(frozen=True)
class TrainingConfig:
    rounds: int = 250
    stage_pattern: str = "AB"  # repeated over the rounds: A = class-specific grouping, B = domain decoupling
    local_epochs: int = 1
    batch_size: int = 128
    lr: float = 0.001
    momentum: float = 0.9
    weight_decay: float = 1e-5
    lr_schedule: str = "cosine"  # cosine | constant, over rounds
    key_loss_weight: float = 1.0


@dataclass(frozen=True)
class AggregationConfig:
    beta_a: float = 2.0  # Eq. 6 Beta(a, b) over the history's relative age; a > b favours recent iterates
    beta_b: float = 1.0
    beta_history: int = 5  # iterates of P_D kept per domain (bounded memory)
    min_sites_per_domain: int = 1  # a round's update of domain m needs at least this many of its sites
    train_timeout: float = 0.0  # seconds a round waits for sites; 0 waits forever (NVFlare's default)


@dataclass(frozen=True)
class InferenceConfig:
    mixer: str = "domain_guided"  # domain_guided | average | uncertainty (Table 2)
    domain_similarity: str = "key"  # key | prompt_fit: how w_m is computed for domain_guided
    temperature: float = 0.05
    global_weight: float = 0.5
    zero_shot_template: str = "a photo of a {}."


@dataclass(frozen=True)
class EvaluationConfig:
    every_n_rounds: int = 0  # also evaluate the global model during training (0: only at the end)


@dataclass(frozen=True)
class ExperimentConfig:
    name: str = "feddcg"
    method: str = "feddcg"
    seed: int = 0
    backbone: BackboneConfig = BackboneConfig()
    data: DataConfig = DataConfig()
    prompts: PromptConfig = PromptConfig()
    training: TrainingConfig = TrainingConfig()
    aggregation: AggregationConfig = AggregationConfig()
    inference: InferenceConfig = InferenceConfig()
    evaluation: EvaluationConfig = EvaluationConfig()
    source: str = field(default="<defaults>", compare=False)

    @property
    def site_names(self) -> list[str]:
        return [f"site-{i}" for i in range(1, self.data.num_sites + 1)]

    def stage_of_round(self, round_index: int) -> str:
        pattern = self.training.stage_pattern
        return pattern[round_index % len(pattern)]

    def to_dict(self) -> dict[str, Any]:
        out = dataclasses.asdict(self)
        out.pop("source")
        return _plain(out)


def _plain(value):
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def _build(cls, data: Any, where: str, source: str):
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: {where or 'top level'} must be a mapping, got {type(data).__name__}")
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls) if f.name != "source"]
    kwargs = {}
    for key, value in data.items():
        path = f"{where}.{key}" if where else key
        if key not in names:
            close = difflib.get_close_matches(key, names, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else f" (settings here: {', '.join(names)})"
            raise ConfigError(f"{source}: unknown setting {path!r}{hint}")
        kwargs[key] = _coerce(hints[key], value, path, source)
    return cls(**kwargs)


def _coerce(hint, value, path: str, source: str):
    if dataclasses.is_dataclass(hint):
        return _build(hint, value, path, source)
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin is tuple:
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{source}: {path} must be a list, got {value!r}")
        return tuple(_coerce(args[0], v, path, source) for v in value)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        hint = next(a for a in args if a is not type(None))
    if hint is float and isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    if hint is float and isinstance(value, str):
        try:
            return float(value)  # YAML reads 1e-5 as a string
        except ValueError:
            pass
    if hint in (int, str, bool) and isinstance(value, hint) and not (hint is int and isinstance(value, bool)):
        return value
    raise ConfigError(f"{source}: {path} must be {getattr(hint, '__name__', hint)}, got {value!r}")


def _check(condition: bool, source: str, message: str):
    if not condition:
        raise ConfigError(f"{source}: {message}")


def validate(cfg: ExperimentConfig) -> ExperimentConfig:
    """Cross-field checks; backbone-dependent ones (context length) happen when the backbone is loaded."""
    s, d, t, a, i, p = cfg.source, cfg.data, cfg.training, cfg.aggregation, cfg.inference, cfg.prompts
    _check(cfg.method == "feddcg", s, f"method {cfg.method!r} is not available (available: feddcg)")
    _check(len(d.training_domains) >= 1, s, "data.training_domains is empty")
    _check(len(set(d.training_domains)) == len(d.training_domains), s, "data.training_domains has duplicates")
    _check(d.held_out_domain not in d.training_domains, s,
           f"data.held_out_domain {d.held_out_domain!r} is also a training domain")
    _check(d.num_sites >= len(d.training_domains) and d.num_sites % len(d.training_domains) == 0, s,
           f"data.num_sites ({d.num_sites}) must be a positive multiple of the {len(d.training_domains)} "
           f"training domains")
    for key in ("base_classes", "new_classes", "classes_per_site", "shots_per_class", "test_images_per_class"):
        _check(getattr(d, key) >= 1, s, f"data.{key} must be >= 1")
    _check(d.classes_per_site <= d.base_classes, s, "data.classes_per_site exceeds data.base_classes")
    _check(0.0 < d.sampling_rate <= 1.0, s, f"data.sampling_rate must be in (0, 1], got {d.sampling_rate}")
    _check(t.rounds >= 1, s, "training.rounds must be >= 1")
    _check(len(t.stage_pattern) >= 1 and set(t.stage_pattern) <= {"A", "B"}, s,
           f"training.stage_pattern must be letters A and B, got {t.stage_pattern!r}")
    _check(t.lr_schedule in ("cosine", "constant"), s,
           f"training.lr_schedule must be cosine or constant, got {t.lr_schedule!r}")
    _check(t.lr > 0 and t.batch_size >= 1 and t.local_epochs >= 1, s,
           "training.lr, batch_size and local_epochs must be positive")
    _check(a.beta_a > 0 and a.beta_b > 0, s, "aggregation.beta_a and beta_b must be positive")
    _check(a.beta_history >= 1, s, "aggregation.beta_history must be >= 1")
    _check(1 <= a.min_sites_per_domain <= d.num_sites // len(d.training_domains), s,
           "aggregation.min_sites_per_domain must be between 1 and the sites per domain")
    _check(i.mixer in MIXERS, s, f"inference.mixer must be one of {MIXERS}, got {i.mixer!r}")
    _check(i.domain_similarity in DOMAIN_SIMILARITIES, s,
           f"inference.domain_similarity must be one of {DOMAIN_SIMILARITIES}, got {i.domain_similarity!r}")
    _check(0.0 <= i.global_weight <= 1.0, s, "inference.global_weight must be in [0, 1]")
    _check(i.temperature > 0, s, "inference.temperature must be positive")
    _check("{}" in i.zero_shot_template, s, "inference.zero_shot_template needs a {} for the class name")
    _check(min(p.n_generator_ctx, p.n_domain_ctx, p.n_global_ctx) >= 1, s, "prompts.n_*_ctx must be >= 1")
    return cfg


def load_config(path: str | Path) -> ExperimentConfig:
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file {path} not found")
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as err:
        raise ConfigError(f"{path}: not valid YAML: {err}") from err
    cfg = _build(ExperimentConfig, data, "", str(path))
    return validate(dataclasses.replace(cfg, source=str(path)))


def config_from_dict(data: dict, source: str = "<dict>") -> ExperimentConfig:
    return validate(dataclasses.replace(_build(ExperimentConfig, data, "", source), source=source))


def write_config(cfg: ExperimentConfig, path: str | Path, header: str = "") -> None:
    text = yaml.safe_dump(cfg.to_dict(), sort_keys=False, default_flow_style=False, width=118)
    Path(path).write_text(header + text)
