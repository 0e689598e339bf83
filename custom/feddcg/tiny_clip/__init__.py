"""The bundled tiny CLIP: an open_clip model pretrained on the synthetic world, shipped in `model/`.

Its folder follows open_clip's `local-dir:` layout (`open_clip_config.json` with `model_cfg` and `preprocess_cfg`)
with one difference that keeps it under 10 MB: the checkpoint is *compact*. Of the 49,408 token-embedding rows only
those that pretraining touched are stored (the world's vocabulary is a few dozen words); the others load as zeros.
`feddcg.backbone.load_backbone` understands both compact and ordinary checkpoints.
"""

from __future__ import annotations

from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

BUNDLED_DIR = Path(__file__).resolve().parent / "model"
COMPACT_WEIGHTS = "compact_weights.safetensors"
_ROWS, _VALUES = "token_embedding.rows", "token_embedding.values"

# A ResNet image tower at 32 px learns shape on 2 CPU cores where a ViT that fits the budget does not
# (shared/design/open-clip-and-embedded-world.md); a 2-layer text transformer of width 128.
MODEL_CFG = {
    "embed_dim": 128,
    "vision_cfg": {"image_size": 32, "layers": [2, 2, 2, 2], "width": 16, "patch_size": None},
    "text_cfg": {"context_length": 16, "vocab_size": 49408, "width": 128, "heads": 4, "layers": 2},
}


def save_compact(model: torch.nn.Module, used_token_rows: torch.Tensor, folder: Path) -> Path:
    """Write the model's weights with only `used_token_rows` of the token embedding."""
    state = {k: v.detach().contiguous() for k, v in model.state_dict().items() if k != "token_embedding.weight"}
    state[_ROWS] = used_token_rows.to(torch.int64).contiguous()
    state[_VALUES] = model.token_embedding.weight.detach()[used_token_rows].contiguous()
    path = Path(folder) / COMPACT_WEIGHTS
    save_file(state, str(path))
    return path


def load_compact_state_dict(path: Path, vocab_size: int) -> dict[str, torch.Tensor]:
    """Expand a compact checkpoint into an ordinary state dict (unstored token rows are zero)."""
    state = load_file(str(path))
    rows, values = state.pop(_ROWS), state.pop(_VALUES)
    table = torch.zeros(vocab_size, values.shape[1], dtype=values.dtype)
    table[rows] = values
    state["token_embedding.weight"] = table
    return state
