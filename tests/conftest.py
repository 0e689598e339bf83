"""Shared fixtures. Tests never reach a model hub: HF_HUB_OFFLINE is forced before anything imports open_clip."""

import os

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import pytest  # noqa: E402
import torch  # noqa: E402

from feddcg.backbone import BackboneSpec, load_backbone  # noqa: E402
from feddcg.config import config_from_dict  # noqa: E402


@pytest.fixture(scope="session")
def backbone():
    """The bundled tiny CLIP (text width 128), frozen, on the CPU."""
    return load_backbone(BackboneSpec())


@pytest.fixture(scope="session")
def wide_backbone(tmp_path_factory):
    """A random-weight open_clip model of another width (96), to catch anything hard-coded to one size."""
    import json

    from feddcg.tiny_clip import MODEL_CFG

    folder = tmp_path_factory.mktemp("wide_clip")
    cfg = json.loads(json.dumps(MODEL_CFG))
    cfg["embed_dim"], cfg["text_cfg"]["width"], cfg["text_cfg"]["heads"] = 80, 96, 4
    cfg["text_cfg"]["context_length"] = 24
    torch.manual_seed(0)
    import open_clip
    from safetensors.torch import save_file

    model = open_clip.CLIP(**cfg)
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(folder / "open_clip_model.safetensors"))
    (folder / "open_clip_config.json").write_text(json.dumps({"model_cfg": cfg, "preprocess_cfg": {}}))
    return load_backbone(BackboneSpec(model=f"local-dir:{folder}"))


def small_config(**sections):
    """A small, valid experiment config; keyword arguments override whole sections' keys."""
    data = {
        "data": {"training_domains": ["photo", "clipart", "painting"], "held_out_domain": "sketch",
                 "num_sites": 6, "base_classes": 12, "new_classes": 8, "classes_per_site": 4, "shots_per_class": 4,
                 "test_images_per_class": 2},
        "training": {"rounds": 4, "local_epochs": 1, "batch_size": 16, "lr": 0.01},
    }
    for section, values in sections.items():
        data.setdefault(section, {}).update(values)
    return config_from_dict(data, source="<test>")


@pytest.fixture
def cfg():
    return small_config()
