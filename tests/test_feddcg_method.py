"""The prompt modules (Eq. 1) and FedDCG's site steps on cached features."""

import torch

from feddcg.methods.feddcg import (ClassTask, build_prompts, domain_class_features, predict, stage_payload_names,
                                   train_stage_a, train_stage_b)
from feddcg.methods.common import round_lr
from feddcg.prompts import PromptGenerator, PromptSizes

NAMES = ["red striped star", "blue plain circle", "pink checkered crescent", "green dotted heart"]


def toy_features(backbone, n_per_class=6, seed=0):
    """Features near the zero-shot text of each class: a learnable toy task on the real frozen encoders."""
    g = torch.Generator().manual_seed(seed)
    text = backbone.encode_texts([f"a photo of a {n}." for n in NAMES])
    labels = torch.arange(len(NAMES)).repeat_interleave(n_per_class)
    feats = torch.nn.functional.normalize(text[labels] + 0.15 * torch.randn(len(labels), text.shape[1], generator=g),
                                          dim=-1)
    return feats, labels


def test_generator_shapes_follow_the_backbone(backbone, wide_backbone):
    for bb in (backbone, wide_backbone):
        sizes = PromptSizes(token_width=bb.token_width, embed_dim=bb.embed_dim, n_generator_ctx=3)
        out = PromptGenerator(sizes)(bb.encode_texts(NAMES))
        assert out.shape == (3, bb.token_width)


def test_generator_context_depends_on_the_class_set(backbone):
    sizes = PromptSizes(token_width=backbone.token_width, embed_dim=backbone.embed_dim)
    gen = PromptGenerator(sizes)
    a = gen(backbone.encode_texts(NAMES[:2]))
    b = gen(backbone.encode_texts(NAMES[2:]))
    assert not torch.allclose(a, b)


def test_prompt_model_shapes_and_layout(cfg, backbone):
    prompts = build_prompts(cfg, backbone)
    state = prompts.state_dict()
    assert state["global_prompt"].shape == (4, backbone.token_width)
    assert state["domains.2.prompt"].shape == (4, backbone.token_width)
    assert state["domains.1.key"].shape == (backbone.embed_dim,)
    assert state["domains.0.generator.query"].shape == (4, backbone.token_width)
    task = ClassTask.build(backbone, prompts.sizes, NAMES)
    assert domain_class_features(backbone, prompts, 1, task).shape == (len(NAMES), backbone.embed_dim)


def test_same_seed_same_initial_model(cfg, backbone):
    a, b = build_prompts(cfg, backbone).state_dict(), build_prompts(cfg, backbone).state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)


def parameters_changed_by(step, cfg, backbone, m):
    """Names of the prompt parameters one local round of `step` on domain m changes."""
    prompts = build_prompts(cfg, backbone)
    before = {k: v.clone() for k, v in prompts.state_dict().items()}
    feats, labels = toy_features(backbone)
    step(cfg, backbone, prompts, m, ClassTask.build(backbone, prompts.sizes, NAMES), feats, labels, 0,
         torch.Generator().manual_seed(0))
    return {k for k, v in prompts.state_dict().items() if not torch.equal(v, before[k])}


def test_stage_a_trains_only_the_domain_generator(cfg, backbone):
    changed = parameters_changed_by(train_stage_a, cfg, backbone, 1)
    assert changed and all(k.startswith("domains.1.generator.") for k in changed)
    assert all(p.grad is None for p in backbone.model.parameters())


def test_stage_b_trains_global_prompt_domain_prompt_and_key_only(cfg, backbone):
    assert parameters_changed_by(train_stage_b, cfg, backbone, 2) == {"global_prompt", "domains.2.prompt",
                                                                      "domains.2.key"}


def test_payload_sends_only_what_the_stage_needs(cfg, backbone):
    prompts = build_prompts(cfg, backbone)
    sent, trained = stage_payload_names(prompts.state_dict(), prompts.num_domains, "A", 0)
    assert set(trained) <= set(sent)
    assert all(n.startswith("domains.0.") for n in sent)
    sent, trained = stage_payload_names(prompts.state_dict(), prompts.num_domains, "B", 1)
    assert set(trained) == {"global_prompt", "domains.1.prompt", "domains.1.key"}
    assert not any(n.startswith(("domains.0.generator", "domains.2.generator", "domains.0.prompt")) for n in sent)


def test_local_training_lowers_the_loss_and_is_deterministic(cfg, backbone):
    feats, labels = toy_features(backbone)
    results = []
    for _ in range(2):
        prompts = build_prompts(cfg, backbone)
        task = ClassTask.build(backbone, prompts.sizes, NAMES)
        first = train_stage_a(cfg, backbone, prompts, 0, task, feats, labels, 0, torch.Generator().manual_seed(1))
        for _ in range(4):
            last = train_stage_a(cfg, backbone, prompts, 0, task, feats, labels, 0, torch.Generator().manual_seed(1))
        results.append((first.loss, last.loss, prompts.state_dict()["domains.0.generator.query"].clone()))
    assert results[0][1] < results[0][0]
    assert results[0][0] == results[1][0] and torch.equal(results[0][2], results[1][2])


def test_predict_returns_every_mixer_and_zero_shot(cfg, backbone):
    prompts = build_prompts(cfg, backbone)
    task = ClassTask.build(backbone, prompts.sizes, NAMES)
    feats, labels = toy_features(backbone)
    preds = predict(cfg, backbone, prompts, task, feats)
    assert set(preds) == {"domain_guided", "average", "uncertainty", "global_prompt", "zero_shot"}
    assert all(p.shape == labels.shape for p in preds.values())
    assert (preds["zero_shot"] == labels).float().mean() > 0.9  # the toy task is near the zero-shot text


def test_cosine_learning_rate_schedule(cfg):
    assert round_lr(cfg, 0) == cfg.training.lr
    assert abs(round_lr(cfg, cfg.training.rounds // 2) - cfg.training.lr / 2) < 1e-12
