"""What the bundled tiny CLIP knows about the world, and how much room the federated task leaves for prompts.

    python -m feddcg.tiny_clip.headroom zero-shot                  # 256-way zero-shot per style, seen / held-out
    python -m feddcg.tiny_clip.headroom gap --seeds 0 1 2          # floor / ceiling / CoOp on the federated task

gap, on new classes (never trained on) in the held-out domain of the config's federated task:
  floor    zero-shot CLIP with the config's template
  ceiling  a linear probe on the frozen features, trained on held-out-domain images of those very classes (an
           oracle no federated method has: it bounds what the features can separate)
  CoOp     one shared context trained centrally on the pooled base-class data of all sites (training domains),
           then applied to the new class names in the held-out domain: what prompt learning can transfer
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import statistics
import time

import numpy as np
import torch
import torch.nn.functional as F

from feddcg.backbone import BackboneSpec, FrozenCLIP, load_backbone
from feddcg.config import ExperimentConfig, load_config
from feddcg.data import synthetic_world as world
from feddcg.data.datasets import open_dataset
from feddcg.data.feature_cache import encode
from feddcg.data.partition import TEST_INDEX_OFFSET, class_split, plan_sites, train_image_indices
from feddcg.methods.common import only_trainable, sgd_epochs
from feddcg.prompts import initial_context

PROBE_INDEX_OFFSET = 2_000_000  # the probe's own training images: neither site data nor test data
ZERO_SHOT_INDEX_OFFSET = 100_000  # never used in pretraining (which uses indices below images_per_class)


@torch.no_grad()
def zero_shot_table(backbone: FrozenCLIP, seed: int = 7, per_class: int = 4,
                    styles=world.STYLES, template: str = "a photo of a {}.") -> dict:
    """256-way zero-shot accuracy (percent) per style on seen and on held-out compositions (no acquisition shift)."""
    names = world.class_names()
    text = backbone.encode_texts([template.format(n) for n in names])
    held = np.isin(np.repeat(np.arange(len(names)), per_class), world.held_out_compositions())
    cls_ids = np.repeat(np.arange(len(names)), per_class)
    img_ids = np.tile(np.arange(per_class), len(names)) + ZERO_SHOT_INDEX_OFFSET
    report = {}
    for style in styles:
        images = world.render_batch(style, cls_ids, img_ids, seed=seed, image_size=backbone.image_size)
        pred = (backbone.encode_pixels(torch.from_numpy(images)) @ text.T).argmax(dim=1).cpu().numpy()
        correct = pred == cls_ids
        report[style] = {"seen": round(float(correct[~held].mean() * 100), 2),
                         "held_out": round(float(correct[held].mean() * 100), 2)}
    return report


def _features(backbone, dataset, domain, classes, indices):
    cls = [c for c in classes for _ in indices]
    idx = [i for _ in classes for i in indices]
    labels = torch.arange(len(classes)).repeat_interleave(len(indices))
    return encode(backbone, dataset, domain, cls, idx), labels


def _accuracy(scores, labels) -> float:
    return round(100.0 * float((scores.argmax(1) == labels).float().mean()), 2)


def linear_probe(train_x, train_y, test_x, test_y, num_classes: int, steps: int = 300) -> float:
    """Multinomial logistic regression on the frozen features (full-batch L-BFGS, small L2): the ceiling."""
    w = torch.zeros(train_x.shape[1], num_classes, requires_grad=True)
    b = torch.zeros(num_classes, requires_grad=True)
    opt = torch.optim.LBFGS([w, b], lr=1, max_iter=steps, line_search_fn="strong_wolfe")

    def closure():
        opt.zero_grad()
        loss = F.cross_entropy(20 * train_x @ w + b, train_y) + 5e-4 * (w * w).sum()
        loss.backward()
        return loss

    opt.step(closure)
    with torch.no_grad():
        return _accuracy(20 * test_x @ w + b, test_y)


def measure_gap(cfg: ExperimentConfig, backbone: FrozenCLIP, coop_epochs: int = 20) -> dict:
    """Floor, ceiling and CoOp (percent) on new classes in the held-out domain, plus base-class figures."""
    dataset = open_dataset(cfg)
    split = class_split(cfg, len(dataset.class_names))
    names, held = dataset.class_names, cfg.data.held_out_domain
    test_idx = [TEST_INDEX_OFFSET + k for k in range(cfg.data.test_images_per_class)]
    template = cfg.inference.zero_shot_template
    new_x, new_y = _features(backbone, dataset, held, split.new, test_idx)
    base_x, base_y = _features(backbone, dataset, held, split.base, test_idx)
    new_names, base_names = [names[c] for c in split.new], [names[c] for c in split.base]

    probe_idx = [PROBE_INDEX_OFFSET + k for k in range(cfg.data.shots_per_class)]
    probe_x, probe_y = _features(backbone, dataset, held, split.new, probe_idx)

    position = {c: k for k, c in enumerate(split.base)}
    xs, ys = [], []
    for plan in plan_sites(cfg, split):
        x, y = _features(backbone, dataset, plan.domain, plan.classes, train_image_indices(cfg, plan))
        xs.append(x)
        ys.append(torch.tensor([position[plan.classes[k]] for k in y.tolist()]))
    train_x, train_y = torch.cat(xs), torch.cat(ys)

    n_ctx, gen = cfg.prompts.n_global_ctx, torch.Generator().manual_seed(cfg.seed)
    holder = torch.nn.Module()
    holder.context = torch.nn.Parameter(initial_context(backbone, n_ctx, cfg.prompts.global_init, gen))
    base_tokens, new_tokens = backbone.prompt_tokens(base_names, n_ctx), backbone.prompt_tokens(new_names, n_ctx)

    def step(x, y):
        logits = backbone.logit_scale * x @ F.normalize(backbone.encode_prompts(base_tokens, holder.context), dim=-1).T
        return F.cross_entropy(logits, y), logits

    coop_cfg = dataclasses.replace(cfg, training=dataclasses.replace(cfg.training, local_epochs=coop_epochs))
    sgd_epochs(coop_cfg, only_trainable(holder, ["context"]), cfg.training.lr, train_x, train_y, step, gen)
    with torch.no_grad():
        coop_text = {k: F.normalize(backbone.encode_prompts(t, holder.context), dim=-1)
                     for k, t in (("new", new_tokens), ("base", base_tokens))}
        zs_text = {"new": backbone.encode_texts([template.format(n) for n in new_names]),
                   "base": backbone.encode_texts([template.format(n) for n in base_names])}
    return {
        "zero_shot_new": _accuracy(new_x @ zs_text["new"].T, new_y),
        "linear_probe_new": linear_probe(probe_x, probe_y, new_x, new_y, len(split.new)),
        "coop_new": _accuracy(new_x @ coop_text["new"].T, new_y),
        "zero_shot_base": _accuracy(base_x @ zs_text["base"].T, base_y),
        "coop_base": _accuracy(base_x @ coop_text["base"].T, base_y),
    }


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    zs = sub.add_parser("zero-shot", help="256-way zero-shot table of the backbone on the clean world")
    zs.add_argument("--per-class", type=int, default=4)
    gap = sub.add_parser("gap", help="floor / ceiling / CoOp on the config's federated task, over seeds")
    gap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    gap.add_argument("--coop-epochs", type=int, default=20)
    for p in (zs, gap):
        p.add_argument("--config", default="app_configs/feddcg.yaml")
    args = parser.parse_args(argv)
    cfg = load_config(args.config)
    backbone = load_backbone(BackboneSpec(cfg.backbone.model, cfg.backbone.pretrained))
    start = time.time()
    if args.command == "zero-shot":
        table = zero_shot_table(backbone, per_class=args.per_class)
        print("| style | seen compositions | held-out compositions |\n|---|---:|---:|")
        for style, row in table.items():
            print(f"| {style} | {row['seen']:.1f} | {row['held_out']:.1f} |")
        print(json.dumps(table))
        return
    rows = [measure_gap(dataclasses.replace(cfg, seed=s), backbone, args.coop_epochs) for s in args.seeds]
    print(f"held-out domain {cfg.data.held_out_domain}, acquisition {cfg.data.acquisition}, seeds {args.seeds}, "
          f"{time.time() - start:.0f}s")
    print("| measure (percent) | mean | std |\n|---|---:|---:|")
    summary = {}
    for key in rows[0]:
        values = [r[key] for r in rows]
        summary[key] = {"mean": round(statistics.mean(values), 2), "std": round(statistics.pstdev(values), 2),
                        "values": values}
        print(f"| {key} | {summary[key]['mean']:.1f} | {summary[key]['std']:.1f} |")
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
