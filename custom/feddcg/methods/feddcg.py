"""FedDCG's site-side steps, on cached image features, with no federation framework in sight.

Stage A (class-specific domain grouping): a site of domain m trains f_theta_m (Eqs. 1-4) with P_D^m fixed.
Stage B (domain-specific decoupling): generators fixed; the site trains P_G, its P_D^m and its domain key k_m.
Prompt for domain m, class j: [P_D^m][f_theta_m(T)] <name_j>.   Global prompt: [P_G] <name_j>.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, Sequence

import torch
import torch.nn.functional as F

from feddcg.backbone import FrozenCLIP
from feddcg.config import ConfigError, ExperimentConfig
from feddcg.inference import MIXERS, domain_guided_scores, mixer_weights
from feddcg.methods.common import LocalResult, only_trainable, round_lr, sgd_epochs
from feddcg.prompts import FedDCGPrompts, PromptSizes, initial_context


def prompt_sizes(cfg: ExperimentConfig, backbone: FrozenCLIP) -> PromptSizes:
    p = cfg.prompts
    if backbone.token_width % p.heads:
        raise ConfigError(f"{cfg.source}: prompts.heads={p.heads} must divide the text width {backbone.token_width}")
    return PromptSizes(token_width=backbone.token_width, embed_dim=backbone.embed_dim,
                       n_generator_ctx=p.n_generator_ctx, n_domain_ctx=p.n_domain_ctx, n_global_ctx=p.n_global_ctx,
                       heads=p.heads, ff_mult=p.ff_mult)


def build_prompts(cfg: ExperimentConfig, backbone: FrozenCLIP) -> FedDCGPrompts:
    """The initial global model; a pure function of the config and the backbone (same on every process)."""
    sizes = prompt_sizes(cfg, backbone)
    gen = torch.Generator().manual_seed(cfg.seed)
    torch.manual_seed(cfg.seed)  # module initializers (attention, linear layers) draw from the global generator
    try:
        domain_init = initial_context(backbone, sizes.n_domain_ctx, cfg.prompts.domain_init, gen)
        global_init = initial_context(backbone, sizes.n_global_ctx, cfg.prompts.global_init, gen)
    except ValueError as err:
        raise ConfigError(f"{cfg.source}: prompts: {err}") from err
    return FedDCGPrompts(sizes, len(cfg.data.training_domains), domain_init, global_init)


def stage_payload_names(parameter_names: Iterable[str], num_domains: int, stage: str,
                        domain_index: int) -> tuple[list[str], list[str]]:
    """(names sent to a domain-m site, names it trains and returns) for a stage, from the model's parameter names.

    A: f_theta_m is trained; P_D^m travels along because the prompt needs it.
    B: P_G, P_D^m and k_m are trained; f_theta_m and every domain key travel along (the key loss needs them all).
    """
    names = list(parameter_names)
    own = f"domains.{domain_index}."
    if stage == "A":
        trained = [n for n in names if n.startswith(own + "generator.")]
        return trained + [own + "prompt"], trained
    if stage == "B":
        trained = ["global_prompt", own + "prompt", own + "key"]
        sent = trained + [n for n in names if n.startswith(own + "generator.")]
        sent += [f"domains.{m}.key" for m in range(num_domains) if m != domain_index]
        return sent, trained
    raise ValueError(f"unknown stage {stage!r}")


@dataclass
class ClassTask:
    """A set of classes as the text side sees it: prompt tokens per branch and the frozen name embeddings T."""

    names: list[str]
    domain_tokens: torch.Tensor  # "X"*(n_domain + n_generator) <name>.
    global_tokens: torch.Tensor  # "X"*n_global <name>.
    name_embeddings: torch.Tensor  # [C, embed_dim] raw class names through the frozen text encoder (FedTPG)

    @classmethod
    def build(cls, backbone: FrozenCLIP, sizes: PromptSizes, names: Sequence[str]) -> "ClassTask":
        longest = max(names, key=lambda n: backbone.token_count(f"{n}."))
        needed = backbone.token_count(f"{longest}.") + max(sizes.n_domain_ctx + sizes.n_generator_ctx,
                                                           sizes.n_global_ctx)
        if needed > backbone.context_length:
            raise ConfigError(f"prompt for class {longest!r} needs {needed} tokens but the text encoder takes "
                              f"{backbone.context_length}: lower prompts.n_domain_ctx + prompts.n_generator_ctx")
        return cls(list(names), backbone.prompt_tokens(names, sizes.n_domain_ctx + sizes.n_generator_ctx),
                   backbone.prompt_tokens(names, sizes.n_global_ctx), backbone.encode_texts(names))


def domain_class_features(backbone: FrozenCLIP, prompts: FedDCGPrompts, m: int, task: ClassTask) -> torch.Tensor:
    """Z_m,j for all classes j of the task, L2-normalized [C, embed_dim]."""
    context = prompts.domains[m].context(task.name_embeddings)
    return F.normalize(backbone.encode_prompts(task.domain_tokens, context), dim=-1)


def global_class_features(backbone: FrozenCLIP, prompts: FedDCGPrompts, task: ClassTask) -> torch.Tensor:
    """Z_g,j for all classes j, L2-normalized [C, embed_dim]."""
    return F.normalize(backbone.encode_prompts(task.global_tokens, prompts.global_prompt), dim=-1)


def train_stage_a(cfg: ExperimentConfig, backbone: FrozenCLIP, prompts: FedDCGPrompts, m: int, task: ClassTask,
                  features: torch.Tensor, labels: torch.Tensor, round_index: int,
                  generator: torch.Generator) -> LocalResult:
    """Eqs. 2-4 for f_theta_m: cross-entropy of CLIP-scaled cosine logits over the site's classes."""
    _, trained = stage_payload_names(prompts.state_dict(), prompts.num_domains, "A", m)
    params = only_trainable(prompts, trained)
    scale = backbone.logit_scale

    def step(x, y):
        text = domain_class_features(backbone, prompts, m, task)
        logits = scale * x @ text.T
        return F.cross_entropy(logits, y), logits

    return sgd_epochs(cfg, params, round_lr(cfg, round_index), features, labels, step, generator)


def train_stage_b(cfg: ExperimentConfig, backbone: FrozenCLIP, prompts: FedDCGPrompts, m: int, task: ClassTask,
                  features: torch.Tensor, labels: torch.Tensor, round_index: int,
                  generator: torch.Generator) -> LocalResult:
    """P_G and P_D^m each as a classifier of their own, plus the domain key k_m (when domain_similarity is key)
    trained to recognize this site's images as domain m among the M keys (the others fixed)."""
    _, trained = stage_payload_names(prompts.state_dict(), prompts.num_domains, "B", m)
    use_key = cfg.inference.domain_similarity == "key" and prompts.num_domains > 1
    if not use_key:
        trained = [n for n in trained if not n.endswith(".key")]
    params = only_trainable(prompts, trained)
    scale, temperature = backbone.logit_scale, cfg.inference.temperature
    weight = cfg.training.key_loss_weight

    def step(x, y):
        domain_logits = scale * x @ domain_class_features(backbone, prompts, m, task).T
        global_logits = scale * x @ global_class_features(backbone, prompts, task).T
        loss = F.cross_entropy(domain_logits, y) + F.cross_entropy(global_logits, y)
        if use_key:
            keys = torch.stack([F.normalize(b.key, dim=0) for b in prompts.domains])
            key_logits = x @ keys.T / temperature
            loss = loss + weight * F.cross_entropy(key_logits, torch.full_like(y, m))
        return loss, 0.5 * (domain_logits + global_logits)

    return sgd_epochs(cfg, params, round_lr(cfg, round_index), features, labels, step, generator)


@torch.no_grad()
def predict(cfg: ExperimentConfig, backbone: FrozenCLIP, prompts: FedDCGPrompts, task: ClassTask,
            features: torch.Tensor) -> dict[str, torch.Tensor]:
    """Predicted class positions (within the task) under each Eq. 7 mixer, the global prompt alone, and zero-shot."""
    device = backbone.device
    x = features.to(device)
    domain_scores = torch.stack([x @ domain_class_features(backbone, prompts, m, task).T
                                 for m in range(prompts.num_domains)])
    global_scores = x @ global_class_features(backbone, prompts, task).T
    keys = torch.stack([b.key for b in prompts.domains])
    out = {}
    for mixer in MIXERS:
        weights = mixer_weights(mixer, image_features=x, domain_scores=domain_scores, keys=keys,
                                similarity=cfg.inference.domain_similarity, temperature=cfg.inference.temperature,
                                logit_scale=float(backbone.logit_scale))
        out[mixer] = domain_guided_scores(domain_scores, global_scores, weights,
                                          cfg.inference.global_weight).argmax(dim=1).cpu()
    out["global_prompt"] = global_scores.argmax(dim=1).cpu()
    zero_shot = backbone.encode_texts([cfg.inference.zero_shot_template.format(n) for n in task.names])
    out["zero_shot"] = (x @ zero_shot.T).argmax(dim=1).cpu()
    return out
