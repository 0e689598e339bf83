"""Frozen image features, computed once per site and kept on disk.

The frozen image encoder is the expensive part of every step (ViT-B/16: ~13 s per 32 images on this CPU), and with
NVFlare's simulator each client task runs in a fresh process, so features live in the site's workspace. A cache
entry is keyed on everything that determines it: backbone weights, pixels (data set identity and the exact images),
and preprocessing. Changing any of them gives a new key, so a stale entry is never reused.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Sequence

import torch

from feddcg.backbone import FrozenCLIP
from feddcg.data.datasets import FederatedDataset

ENCODE_BATCH = 256


def cache_key(backbone: FrozenCLIP, dataset: FederatedDataset, domain: str, class_indices: Sequence[int],
              image_indices: Sequence[int]) -> str:
    identity = {
        "backbone": backbone.spec.fingerprint(),
        "preprocess": [backbone.image_size, backbone.image_mean.flatten().tolist(),
                       backbone.image_std.flatten().tolist()],
        "data": dataset.identity(),
        "domain": domain,
        "items": hashlib.sha256(json.dumps([list(map(int, class_indices)),
                                            list(map(int, image_indices))]).encode()).hexdigest(),
    }
    return hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()[:24]


def encode(backbone: FrozenCLIP, dataset: FederatedDataset, domain: str, class_indices: Sequence[int],
           image_indices: Sequence[int]) -> torch.Tensor:
    """L2-normalized features [N, embed_dim] (float32, on the CPU) of the addressed images."""
    chunks = []
    for start in range(0, len(class_indices), ENCODE_BATCH):
        pixels = dataset.images(domain, class_indices[start:start + ENCODE_BATCH],
                                image_indices[start:start + ENCODE_BATCH])
        chunks.append(backbone.encode_pixels(torch.from_numpy(pixels)).cpu())
    return torch.cat(chunks) if chunks else torch.zeros(0, backbone.embed_dim)


def cached_features(cache_dir: str | Path | None, backbone: FrozenCLIP, dataset: FederatedDataset, domain: str,
                    class_indices: Sequence[int], image_indices: Sequence[int]) -> tuple[torch.Tensor, bool]:
    """(features, came_from_cache). cache_dir None disables caching."""
    if cache_dir is None:
        return encode(backbone, dataset, domain, class_indices, image_indices), False
    path = Path(cache_dir) / f"{cache_key(backbone, dataset, domain, class_indices, image_indices)}.pt"
    if path.is_file():
        try:
            return torch.load(path, map_location="cpu", weights_only=True), True
        except (RuntimeError, EOFError, OSError):
            path.unlink(missing_ok=True)  # a torn write from a killed process: recompute
    features = encode(backbone, dataset, domain, class_indices, image_indices)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".tmp{os.getpid()}")
    torch.save(features, tmp)
    os.replace(tmp, path)  # atomic: concurrent readers see the old state or the whole file
    return features, False
