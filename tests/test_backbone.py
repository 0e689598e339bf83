import pytest
import torch

from feddcg.backbone import BackboneError, BackboneSpec, load_backbone

NAMES = ["red striped star", "blue plain circle", "pink checkered crescent"]


@pytest.fixture(params=["backbone", "wide_backbone"])
def any_backbone(request):
    return request.getfixturevalue(request.param)


def test_clip_is_frozen_and_stays_in_eval_mode(any_backbone):
    assert all(not p.requires_grad for p in any_backbone.model.parameters())
    any_backbone.train()
    assert not any_backbone.model.training
    assert not any(m.training for m in any_backbone.model.modules())


@pytest.mark.parametrize("n_ctx", [1, 4, 8])
def test_shared_context_equal_to_placeholders_reproduces_encode_text_exactly(any_backbone, n_ctx):
    tokens = any_backbone.prompt_tokens(NAMES, n_ctx)
    injected = any_backbone.encode_prompts(tokens, any_backbone.placeholder_embedding(n_ctx))
    reference = any_backbone.model.encode_text(tokens)
    assert torch.equal(injected, reference)


def test_per_class_context_reproduces_encode_text_exactly(any_backbone):
    tokens = any_backbone.prompt_tokens(NAMES, 4)
    per_class = any_backbone.placeholder_embedding(4).unsqueeze(0).repeat(len(NAMES), 1, 1)
    assert torch.equal(any_backbone.encode_prompts(tokens, per_class), any_backbone.model.encode_text(tokens))


def test_context_changes_the_features(backbone):
    tokens = backbone.prompt_tokens(NAMES, 4)
    base = backbone.encode_prompts(tokens, backbone.placeholder_embedding(4))
    moved = backbone.encode_prompts(tokens, backbone.placeholder_embedding(4) + 0.1)
    assert not torch.allclose(base, moved)


def test_gradients_reach_only_the_context(backbone):
    context = torch.nn.Parameter(backbone.placeholder_embedding(4))
    features = backbone.encode_prompts(backbone.prompt_tokens(NAMES, 4), context)
    features.pow(2).sum().backward()
    assert context.grad is not None and context.grad.abs().sum() > 0
    assert all(p.grad is None for p in backbone.model.parameters())


def test_image_features_are_normalized_and_have_no_graph(backbone):
    pixels = torch.randint(0, 256, (5, backbone.image_size, backbone.image_size, 3), dtype=torch.uint8)
    feats = backbone.encode_pixels(pixels)
    assert feats.shape == (5, backbone.embed_dim)
    assert torch.allclose(feats.norm(dim=-1), torch.ones(5), atol=1e-5)
    assert not feats.requires_grad


def test_widths_come_from_the_model(backbone, wide_backbone):
    assert (backbone.token_width, backbone.embed_dim) == (128, 128)
    assert (wide_backbone.token_width, wide_backbone.embed_dim) == (96, 80)


def test_missing_weights_file_is_a_clear_error():
    with pytest.raises(BackboneError, match=r"backbone.pretrained='/no/such/ViT-B-16.bin': no such weights file"):
        load_backbone(BackboneSpec(model="ViT-B-16", pretrained="/no/such/ViT-B-16.bin"))


def test_unknown_model_is_a_clear_error():
    with pytest.raises(BackboneError, match="not an open_clip model"):
        load_backbone(BackboneSpec(model="ViT-Q-99"))


def test_unreachable_hub_says_how_to_provide_weights():
    # HF_HUB_OFFLINE=1 (conftest): the hub cannot be reached, as on an air-gapped site
    with pytest.raises(BackboneError) as err:
        load_backbone(BackboneSpec(model="ViT-B-16", pretrained="openai"))
    assert "Provide the weights offline" in str(err.value) and "backbone.pretrained" in str(err.value)


def test_local_dir_without_config_is_a_clear_error(tmp_path):
    with pytest.raises(BackboneError, match="open_clip_config.json not found"):
        load_backbone(BackboneSpec(model=f"local-dir:{tmp_path}"))


def test_fingerprint_follows_the_weights_file(tmp_path):
    weights = tmp_path / "w.bin"
    weights.write_bytes(b"1")
    first = BackboneSpec(model="ViT-B-16", pretrained=str(weights)).fingerprint()
    weights.write_bytes(b"22")
    assert BackboneSpec(model="ViT-B-16", pretrained=str(weights)).fingerprint() != first
