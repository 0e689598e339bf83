"""Is there room for prompt learning in the federated task? Floor, ceiling and prompt learning, over seeds.

    python benchmarks/world_headroom.py --config app_configs/feddcg.yaml --seeds 0 1 2

On new classes (never trained on) in the held-out domain:
  floor    zero-shot CLIP with the config's template
  ceiling  a linear probe on the frozen features, trained on held-out-domain images of those very classes (an
           oracle no federated method has: it bounds what the features can separate)
  CoOp     a shared context trained centrally on the pooled base-class data of the training domains, then applied
           to the new class names in the held-out domain (what prompt learning can transfer)
Prints a table of mean +- standard deviation over seeds, and JSON with every figure.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import statistics
import sys
import time

import torch
import torch.nn.functional as F

from feddcg.backbone import BackboneSpec, load_backbone
from feddcg.config import load_config
from feddcg.data.datasets import open_dataset
from feddcg.data.feature_cache import encode
from feddcg.data.partition import TEST_INDEX_OFFSET, class_split, plan_sites, train_image_indices
from feddcg.methods.common import only_trainable, sgd_epochs
from feddcg.prompts import initial_context

PROBE_INDEX_OFFSET = 2_000_000  # the probe's own training images: neither site data nor test data


def features_for(backbone, dataset, domain, classes, indices):
    cls = [c for c in classes for _ in indices]
    idx = [i for _ in classes for i in indices]
    feats = encode(backbone, dataset, domain, cls, idx)
    labels = torch.tensor([k for k in range(len(classes)) for _ in indices])
    return feats, labels


def accuracy(pred, labels):
    return 100.0 * float((pred == labels).float().mean())


def linear_probe(train_x, train_y, test_x, test_y, num_classes, steps=300):
    """Multinomial logistic regression (L2 0.0005) by full-batch L-BFGS: the ceiling of the frozen features."""
    w = torch.zeros(train_x.shape[1], num_classes, requires_grad=True)
    b = torch.zeros(num_classes, requires_grad=True)
    opt = torch.optim.LBFGS([w, b], lr=1, max_iter=steps, line_search_fn="strong_wolfe")

    def closure():
        opt.zero_grad()
        loss = F.cross_entropy(train_x @ w * 20 + b, train_y) + 5e-4 * (w * w).sum()
        loss.backward()
        return loss

    opt.step(closure)
    return accuracy((test_x @ w * 20 + b).argmax(1), test_y)


def run_seed(cfg, backbone, epochs):
    dataset = open_dataset(cfg)
    split = class_split(cfg, len(dataset.class_names))
    names = dataset.class_names
    test_idx = [TEST_INDEX_OFFSET + k for k in range(cfg.data.test_images_per_class)]
    held = cfg.data.held_out_domain
    test_x, test_y = features_for(backbone, dataset, held, split.new, test_idx)
    new_names = [names[c] for c in split.new]
    template = cfg.inference.zero_shot_template
    zs_text = backbone.encode_texts([template.format(n) for n in new_names])
    floor = accuracy((test_x @ zs_text.T).argmax(1), test_y)

    probe_idx = [PROBE_INDEX_OFFSET + k for k in range(cfg.data.shots_per_class)]
    probe_x, probe_y = features_for(backbone, dataset, held, split.new, probe_idx)
    ceiling = linear_probe(probe_x, probe_y, test_x, test_y, len(split.new))

    # CoOp on the pooled base-class training data of all sites
    xs, ys = [], []
    base_pos = {c: k for k, c in enumerate(split.base)}
    for plan in plan_sites(cfg, split):
        idx = train_image_indices(cfg, plan)
        x, y = features_for(backbone, dataset, plan.domain, plan.classes, idx)
        xs.append(x)
        ys.append(torch.tensor([base_pos[plan.classes[k]] for k in y.tolist()]))
    train_x, train_y = torch.cat(xs), torch.cat(ys)
    base_names = [names[c] for c in split.base]
    n_ctx = cfg.prompts.n_global_ctx
    gen = torch.Generator().manual_seed(cfg.seed)
    context = torch.nn.Parameter(initial_context(backbone, n_ctx, cfg.prompts.global_init, gen))
    holder = torch.nn.Module()
    holder.context = context
    base_tokens = backbone.prompt_tokens(base_names, n_ctx)
    new_tokens = backbone.prompt_tokens(new_names, n_ctx)
    scale = backbone.logit_scale

    def step(x, y):
        text = F.normalize(backbone.encode_prompts(base_tokens, holder.context), dim=-1)
        logits = scale * x @ text.T
        return F.cross_entropy(logits, y), logits

    train_cfg = dataclasses.replace(cfg, training=dataclasses.replace(cfg.training, local_epochs=epochs))
    result = sgd_epochs(train_cfg, only_trainable(holder, ["context"]), cfg.training.lr, train_x, train_y, step, gen)
    with torch.no_grad():
        text = F.normalize(backbone.encode_prompts(new_tokens, holder.context), dim=-1)
        coop = accuracy((test_x @ text.T).argmax(1), test_y)
        base_test_x, base_test_y = features_for(backbone, dataset, held, split.base, test_idx)
        base_text = F.normalize(backbone.encode_prompts(base_tokens, holder.context), dim=-1)
        coop_base = accuracy((base_test_x @ base_text.T).argmax(1), base_test_y)
        zs_base_text = backbone.encode_texts([template.format(n) for n in base_names])
        floor_base = accuracy((base_test_x @ zs_base_text.T).argmax(1), base_test_y)
    return {"zero_shot_new": floor, "linear_probe_new": ceiling, "coop_new": coop,
            "zero_shot_base": floor_base, "coop_base": coop_base, "coop_train_loss": result.loss}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default="app_configs/feddcg.yaml")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--epochs", type=int, default=20, help="CoOp epochs over the pooled base-class data")
    parser.add_argument("--acquisition", default=None, help="override data.acquisition as kind:colour:strength")
    args = parser.parse_args(argv)
    cfg = load_config(args.config)
    if args.acquisition:
        kind, colour, strength = args.acquisition.split(":")
        acq = dataclasses.replace(cfg.data.acquisition, kind=kind, colour=colour, strength=float(strength))
        cfg = dataclasses.replace(cfg, data=dataclasses.replace(cfg.data, acquisition=acq))
    torch.manual_seed(0)
    backbone = load_backbone(BackboneSpec(cfg.backbone.model, cfg.backbone.pretrained))
    start, rows = time.time(), []
    for seed in args.seeds:
        rows.append(run_seed(dataclasses.replace(cfg, seed=seed), backbone, args.epochs))
        print(f"seed {seed}: " + ", ".join(f"{k} {v:.1f}" for k, v in rows[-1].items()), file=sys.stderr)
    print(f"\nheld-out domain {cfg.data.held_out_domain}, acquisition {cfg.data.acquisition}, "
          f"{len(args.seeds)} seeds, {time.time() - start:.0f}s")
    print("| measure | mean | std |\n|---|---|---|")
    summary = {}
    for key in rows[0]:
        values = [r[key] for r in rows]
        summary[key] = {"mean": statistics.mean(values), "std": statistics.pstdev(values), "values": values}
        print(f"| {key} | {summary[key]['mean']:.1f} | {summary[key]['std']:.1f} |")
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
