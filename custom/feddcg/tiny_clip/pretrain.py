"""Pretrain the bundled tiny CLIP contrastively on the synthetic world (about 12 minutes on 2 CPU cores).

    python -m feddcg.tiny_clip.pretrain               # writes custom/feddcg/tiny_clip/model/
    python -m feddcg.tiny_clip.pretrain --out /tmp/m --steps 300

It plays the role of CLIP's web-scale pretraining: captions name some attributes of an image, in varying templates,
sometimes with the style; a quarter of the images are grey-scale with the colour left out of their captions (this
forces a colour-free shape code). The 32 held-out colour-shape compositions (`held_out_compositions`) are never
shown in colour, so they are truly unseen classes. The federation's acquisition conditions are never shown at all.
"""

from __future__ import annotations

import argparse
import json
import math
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from feddcg.backbone import BackboneSpec, FrozenCLIP
from feddcg.data import synthetic_world as world
from feddcg.tiny_clip import BUNDLED_DIR, MODEL_CFG, save_compact
from feddcg.tiny_clip.headroom import zero_shot_table

STYLE_WORDS = {"photo": "photo", "sketch": "sketch", "clipart": "clipart", "painting": "painting", "neon": "neon sign"}
PLAIN_TEMPLATES = ("a {}.", "a picture of a {}.", "{}.")
STYLE_TEMPLATE = "a {} of a {}."


def _render_chunk(args):
    style, classes, indices, seed = args
    images = world.render_batch(style, classes, indices, seed=seed)
    return images


def make_pretraining_set(images_per_class: int, seed: int, workers: int = 2):
    """Images and attribute ids; colour id -1 marks a grey-scale image."""
    classes = world.all_classes()
    held = set(world.held_out_compositions())
    colour_names, rng = list(world.COLOURS), np.random.default_rng(seed)
    jobs, meta = [], []
    for style in world.STYLES:
        cls_ids = np.repeat(np.arange(len(classes)), images_per_class)
        img_ids = np.tile(np.arange(images_per_class), len(classes))
        for start in range(0, len(cls_ids), 2048):
            jobs.append((style, cls_ids[start:start + 2048], img_ids[start:start + 2048], seed))
        gray = (rng.random(len(cls_ids)) < 0.25) | np.isin(cls_ids, list(held))
        for c, g in zip(cls_ids, gray):
            cls = classes[c]
            meta.append((-1 if g else colour_names.index(cls.colour), world.PATTERNS.index(cls.pattern),
                         world.SHAPES.index(cls.shape), world.STYLES.index(style)))
    with ProcessPoolExecutor(workers) as pool:
        images = np.concatenate(list(pool.map(_render_chunk, jobs)))
    attrs = np.array(meta, dtype=np.int64)
    grey = attrs[:, 0] < 0
    luminance = images[grey].astype(np.float32) @ np.array([0.299, 0.587, 0.114], np.float32)
    images[grey] = np.repeat(luminance[..., None], 3, axis=-1).round().astype(np.uint8)
    return images, attrs


def sample_captions(attrs: np.ndarray, rng: np.random.Generator):
    """One caption per image naming a random subset of its attributes; returns texts and the named attributes."""
    named = np.full_like(attrs, -1)
    texts = []
    colour_names = list(world.COLOURS)
    for row, (colour, pattern, shape, style) in enumerate(attrs):
        available = [0, 1, 2] if colour >= 0 else [1, 2]
        u = rng.random()
        count = 3 if u < 0.35 else (1 if u < 0.70 else 2)
        chosen = sorted(rng.choice(available, size=min(count, len(available)), replace=False).tolist())
        words = []
        if 0 in chosen:
            words.append(colour_names[colour])
            named[row, 0] = colour
        if 1 in chosen:
            words.append(world.PATTERNS[pattern])
            named[row, 1] = pattern
        if 2 in chosen:
            words.append(world.SHAPES[shape])
            named[row, 2] = shape
        else:
            words.append("shape")
        description = " ".join(words)
        if rng.random() < 0.5:
            texts.append(STYLE_TEMPLATE.format(STYLE_WORDS[world.STYLES[style]], description))
            named[row, 3] = style
        else:
            texts.append(PLAIN_TEMPLATES[rng.integers(len(PLAIN_TEMPLATES))].format(description))
    return texts, named


def multi_positive_targets(attrs: torch.Tensor, named: torch.Tensor) -> torch.Tensor:
    """[B_img, B_txt] 1 where caption j truthfully describes image i (every attribute it names matches)."""
    ok = (named[None, :, :] < 0) | (named[None, :, :] == attrs[:, None, :])
    return ok.all(dim=-1).float()


def soft_cross_entropy(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    targets = targets / targets.sum(dim=1, keepdim=True)
    return -(targets * F.log_softmax(logits, dim=1)).sum(dim=1).mean()


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=BUNDLED_DIR)
    parser.add_argument("--steps", type=int, default=1400)
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--images-per-class", type=int, default=48)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args(argv)

    import open_clip

    start = time.time()
    torch.manual_seed(args.seed)
    images, attrs = make_pretraining_set(args.images_per_class, args.seed, args.workers)
    print(f"rendered {len(images)} images in {time.time() - start:.0f}s", flush=True)
    pixels = torch.from_numpy(images).permute(0, 3, 1, 2)
    mean = (pixels[:4096].float() / 255).mean(dim=(0, 2, 3)).view(1, 3, 1, 1)
    std = (pixels[:4096].float() / 255).std(dim=(0, 2, 3)).view(1, 3, 1, 1)

    model = open_clip.CLIP(**MODEL_CFG)
    tokenizer = open_clip.SimpleTokenizer(context_length=MODEL_CFG["text_cfg"]["context_length"])
    initial_tokens = model.token_embedding.weight.detach().clone()
    decay = [p for n, p in model.named_parameters() if p.ndim >= 2 and "embedding" not in n]
    other = [p for n, p in model.named_parameters() if not (p.ndim >= 2 and "embedding" not in n)]
    optimizer = torch.optim.AdamW([{"params": decay, "weight_decay": 0.05}, {"params": other, "weight_decay": 0.0}],
                                  lr=args.lr)
    warmup = 30
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: (s + 1) / warmup if s < warmup else 0.5 * (1 + math.cos(math.pi * s / args.steps)))
    rng = np.random.default_rng(args.seed + 1)
    attrs_t = torch.from_numpy(attrs)
    model.train()
    for step in range(args.steps):
        batch = torch.from_numpy(rng.choice(len(images), size=args.batch_size, replace=False))
        texts, named = sample_captions(attrs[batch.numpy()], rng)
        x = (pixels[batch].float() / 255 - mean) / std
        img = F.normalize(model.encode_image(x), dim=-1)
        txt = F.normalize(model.encode_text(tokenizer(texts)), dim=-1)
        logits = model.logit_scale.exp() * img @ txt.T
        targets = multi_positive_targets(attrs_t[batch], torch.from_numpy(named))
        loss = 0.5 * (soft_cross_entropy(logits, targets) + soft_cross_entropy(logits.T, targets.T))
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        schedule.step()
        with torch.no_grad():
            model.logit_scale.clamp_(0, math.log(100))
        if step % 100 == 0 or step == args.steps - 1:
            print(f"step {step:5d} loss {loss.item():.3f} scale {model.logit_scale.exp().item():.1f} "
                  f"elapsed {time.time() - start:.0f}s", flush=True)

    model.eval()
    used_rows = (model.token_embedding.weight.detach() != initial_tokens).any(dim=1).nonzero().flatten()
    preprocess = {"mean": mean.flatten().tolist(), "std": std.flatten().tolist(), "size": MODEL_CFG["vision_cfg"]["image_size"],
                  "interpolation": "bicubic", "resize_mode": "shortest"}
    frozen = FrozenCLIP(model, tokenizer, mean.flatten().tolist(), std.flatten().tolist(),
                        MODEL_CFG["vision_cfg"]["image_size"], BackboneSpec("just-pretrained"))
    report = zero_shot_table(frozen, seed=args.seed + 7)
    args.out.mkdir(parents=True, exist_ok=True)
    save_compact(model, used_rows, args.out)
    config = {"model_cfg": MODEL_CFG, "preprocess_cfg": preprocess}
    (args.out / "open_clip_config.json").write_text(json.dumps(config, indent=2) + "\n")
    summary = {"steps": args.steps, "seed": args.seed, "images": len(images), "wall_seconds": round(time.time() - start),
               "zero_shot_256_way": report}
    (args.out / "pretrain_report.json").write_text(json.dumps(summary, indent=2) + "\n")
    print(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()
