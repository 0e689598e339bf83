"""The frozen CLIP backbone: open_clip models, image encoding, and text encoding with injected context vectors.

Prompt learning never changes CLIP. What it changes is the *input* of the text encoder: the token embeddings at the
positions of placeholder words ("X X X X red striped star.") are replaced by learned context vectors. With the context
equal to the placeholder embeddings, `encode_prompts` reproduces `encode_text` exactly (tested).
"""

from __future__ import annotations

import contextlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from feddcg.tiny_clip import BUNDLED_DIR, COMPACT_WEIGHTS, load_compact_state_dict

BUNDLED = "bundled"
PLACEHOLDER = "X"


class BackboneError(RuntimeError):
    """The backbone settings cannot be satisfied (unknown model, missing or unreachable weights)."""


@dataclass(frozen=True)
class BackboneSpec:
    """What to load. model: "bundled", an open_clip name ("ViT-B-16") or "local-dir:/folder".
    pretrained: for named models, an open_clip tag ("openai") or a local weights file; None = random weights."""

    model: str = BUNDLED
    pretrained: str | None = None

    def fingerprint(self) -> str:
        """Identifies the weights, for feature caches: changes when the model or its weights file changes."""
        parts = [self.model, str(self.pretrained)]
        for candidate in (self.pretrained, _local_dir(self.model)):
            if candidate and os.path.exists(candidate):
                path = Path(candidate)
                files = sorted(path.iterdir()) if path.is_dir() else [path]
                parts += [f"{f.name}:{f.stat().st_size}:{f.stat().st_mtime_ns}" for f in files if f.is_file()]
        return "|".join(parts)


def _local_dir(model: str) -> str | None:
    if model == BUNDLED:
        return str(BUNDLED_DIR)
    if model.startswith("local-dir:"):
        return model[len("local-dir:"):]
    return None


class FrozenCLIP(nn.Module):
    """An open_clip CLIP in eval mode with every weight frozen, plus the entry points prompt learning needs."""

    def __init__(self, model: nn.Module, tokenizer, image_mean: Sequence[float], image_std: Sequence[float],
                 image_size: int, spec: BackboneSpec):
        super().__init__()
        self.model = model.eval()
        for p in self.model.parameters():
            p.requires_grad_(False)
        self.tokenizer = tokenizer
        self.spec = spec
        self.image_size = image_size
        self.register_buffer("image_mean", torch.tensor(image_mean, dtype=torch.float32).view(1, 3, 1, 1))
        self.register_buffer("image_std", torch.tensor(image_std, dtype=torch.float32).view(1, 3, 1, 1))
        self.placeholder_id = int(tokenizer.encode(PLACEHOLDER)[0]) if hasattr(tokenizer, "encode") else None

    def train(self, mode: bool = True):
        """CLIP stays in eval mode (BatchNorm statistics and dropout are part of the frozen model)."""
        super().train(False)
        return self

    @property
    def token_width(self) -> int:
        return self.model.token_embedding.weight.shape[1]

    @property
    def embed_dim(self) -> int:
        return self.model.text_projection.shape[1] if isinstance(self.model.text_projection, torch.Tensor) \
            else self.model.text_projection.out_features

    @property
    def context_length(self) -> int:
        return self.model.positional_embedding.shape[0]

    @property
    def logit_scale(self) -> torch.Tensor:
        return self.model.logit_scale.exp().detach()

    @property
    def device(self) -> torch.device:
        return self.image_mean.device

    def autocast(self):
        """Mixed precision on CUDA (bf16 where supported); the CPU path stays fp32."""
        if self.device.type == "cuda":
            dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
            return torch.autocast("cuda", dtype=dtype)
        return contextlib.nullcontext()

    def tokenize(self, texts: Sequence[str]) -> torch.Tensor:
        return self.tokenizer(list(texts)).to(self.device)

    def token_count(self, text: str) -> int:
        """Tokens the text takes, start and end tokens included."""
        return int((self.tokenizer([text])[0] != 0).sum())

    @torch.no_grad()
    def encode_pixels(self, pixels: torch.Tensor) -> torch.Tensor:
        """uint8 [N, H, W, 3] images already at the model's size -> L2-normalized image features (float32)."""
        x = pixels.to(self.device).permute(0, 3, 1, 2).float().div_(255)
        x = (x - self.image_mean) / self.image_std
        with self.autocast():
            feats = self.model.encode_image(x)
        return F.normalize(feats.float(), dim=-1)

    @torch.no_grad()
    def encode_texts(self, texts: Sequence[str]) -> torch.Tensor:
        """Plain text encoding (zero-shot classifiers, class-name keys), L2-normalized."""
        with self.autocast():
            feats = self.model.encode_text(self.tokenize(texts))
        return F.normalize(feats.float(), dim=-1)

    def prompt_tokens(self, class_names: Sequence[str], n_ctx: int) -> torch.Tensor:
        """Token ids of "X X ... X <name>." with n_ctx placeholders, one row per class."""
        prefix = " ".join([PLACEHOLDER] * n_ctx)
        return self.tokenize([f"{prefix} {name}." if n_ctx else f"{name}." for name in class_names])

    def encode_prompts(self, tokens: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
        """Text features of prompts whose placeholder positions 1..n_ctx hold `context`.

        tokens: [C, L] from `prompt_tokens`; context: [n_ctx, width] shared by all classes or [C, n_ctx, width].
        Returns unnormalized features [C, embed_dim]; gradients flow to `context` only.
        """
        m = self.model
        embedded = m.token_embedding(tokens)
        if context.dim() == 2:
            context = context.unsqueeze(0).expand(tokens.shape[0], -1, -1)
        n_ctx = context.shape[1]
        cast_dtype = m.transformer.get_cast_dtype()
        x = torch.cat([embedded[:, :1], context.to(embedded.dtype), embedded[:, 1 + n_ctx:]], dim=1).to(cast_dtype)
        x = x + m.positional_embedding.to(cast_dtype)
        with self.autocast():
            x = m.transformer(x, attn_mask=m.attn_mask)
            x = m.ln_final(x)
            x = _text_global_pool(x, tokens, m.text_pool_type, getattr(m, "text_eos_id", None))
            x = m.text_projection(x) if isinstance(m.text_projection, nn.Linear) else x @ m.text_projection
        return x.float()

    def placeholder_embedding(self, n_ctx: int) -> torch.Tensor:
        """[n_ctx, width] embeddings of the placeholder word: the context that makes prompts equal plain text."""
        ids = torch.full((n_ctx,), self.placeholder_id, dtype=torch.long, device=self.device)
        return self.model.token_embedding(ids).detach().clone()

    def phrase_embedding(self, phrase: str) -> torch.Tensor:
        """[n, width] token embeddings of a phrase ("a photo of a"), to initialize context from words."""
        ids = self.tokenize([phrase])[0]
        n = self.token_count(phrase) - 2
        return self.model.token_embedding(ids[1:1 + n]).detach().clone()


def _text_global_pool(x, tokens, pool_type, eos_id):
    from open_clip.transformer import text_global_pool

    return text_global_pool(x, tokens, pool_type, eos_token_id=eos_id)


def _hub_hint(model: str, pretrained: str) -> str:
    return (
        f"Provide the weights offline: on a machine with internet run\n"
        f"    python -c \"import open_clip; open_clip.create_model('{model}', pretrained='{pretrained}')\"\n"
        f"and copy the Hugging Face cache (~/.cache/huggingface) here, or download the checkpoint file and set\n"
        f"backbone.pretrained to its path (e.g. /data/weights/{model}-{pretrained}.bin). "
        f"The bundled tiny CLIP (backbone.model: bundled) needs no download."
    )


def resolve_device(device: str = "auto") -> torch.device:
    """"auto": CUDA when present, else the CPU. The simulator's -gpu flag sets CUDA_VISIBLE_DEVICES for each site's
    process, so "cuda" is the GPU NVFlare assigned to the site."""
    if device != "auto":
        return torch.device(device)
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def load_backbone(spec: BackboneSpec = BackboneSpec(), device: torch.device | str = "cpu") -> FrozenCLIP:
    """Build the frozen CLIP the spec names; raise BackboneError with a remedy when it cannot."""
    import open_clip

    folder = _local_dir(spec.model)
    if folder is not None:
        config_path = Path(folder) / "open_clip_config.json"
        if not config_path.is_file():
            raise BackboneError(f"backbone.model={spec.model!r}: {config_path} not found (an open_clip local-dir "
                                f"folder holds open_clip_config.json and a weights file)")
        config = json.loads(config_path.read_text())
        compact = Path(folder) / COMPACT_WEIGHTS
        if compact.is_file():
            model = open_clip.CLIP(**config["model_cfg"])
            model.load_state_dict(load_compact_state_dict(compact, config["model_cfg"]["text_cfg"]["vocab_size"]))
        else:
            model = open_clip.create_model(f"local-dir:{folder}", require_pretrained=True)
        tokenizer = open_clip.get_tokenizer(f"local-dir:{folder}") if not compact.is_file() else \
            open_clip.SimpleTokenizer(context_length=config["model_cfg"]["text_cfg"]["context_length"])
        pre = config.get("preprocess_cfg", {})
        mean, std = pre.get("mean", open_clip.OPENAI_DATASET_MEAN), pre.get("std", open_clip.OPENAI_DATASET_STD)
        size = config["model_cfg"]["vision_cfg"]["image_size"]
    else:
        if spec.model not in open_clip.list_models():
            raise BackboneError(f"backbone.model={spec.model!r} is not an open_clip model; use 'bundled', "
                                f"'local-dir:/folder' or one of open_clip.list_models() (e.g. ViT-B-16)")
        pretrained = spec.pretrained
        if pretrained and not os.path.isfile(pretrained) and \
                pretrained not in open_clip.list_pretrained_tags_by_model(spec.model):
            if os.sep in pretrained or pretrained.endswith((".bin", ".pt", ".pth", ".safetensors")):
                raise BackboneError(f"backbone.pretrained={pretrained!r}: no such weights file. "
                                    + _hub_hint(spec.model, "openai"))
            raise BackboneError(f"backbone.pretrained={pretrained!r} is neither a file nor a tag of {spec.model} "
                                f"(tags: {open_clip.list_pretrained_tags_by_model(spec.model)})")
        try:
            model = open_clip.create_model(spec.model, pretrained=pretrained)
        except Exception as err:  # open_clip wraps hub/offline failures in RuntimeError; keep the cause visible
            raise BackboneError(f"could not load weights {pretrained!r} for {spec.model}: {err}\n"
                                + _hub_hint(spec.model, pretrained)) from err
        tokenizer = open_clip.get_tokenizer(spec.model)
        pre = model.visual.preprocess_cfg if hasattr(model.visual, "preprocess_cfg") else {}
        mean = pre.get("mean", open_clip.OPENAI_DATASET_MEAN)
        std = pre.get("std", open_clip.OPENAI_DATASET_STD)
        size = model.visual.image_size if isinstance(model.visual.image_size, int) else model.visual.image_size[0]
    return FrozenCLIP(model, tokenizer, mean, std, size, spec).to(device)
