"""What leaves a site, checked on the real shareables: prompt parameters and counts, nothing else."""

import numpy as np
import pytest
from nvflare.apis.dxo import DataKind, from_shareable

from feddcg.flare.messages import (evaluate_reply, evaluate_request, parse_evaluate_reply, parse_train_reply,
                                   train_reply, train_request)
from feddcg.methods.feddcg import build_prompts, stage_payload_names
from feddcg.server import ServerState
from feddcg.site import Site

from conftest import small_config


@pytest.fixture(scope="module")
def world(tmp_path_factory, backbone):
    cfg = small_config()
    server = ServerState(cfg, build_prompts(cfg, backbone).state_dict())
    site = Site(cfg, "site-3", tmp_path_factory.mktemp("cache"))
    return cfg, server, site


def clip_shapes(backbone):
    return {tuple(p.shape) for p in backbone.model.parameters()}


@pytest.mark.parametrize("stage", ["A", "B"])
def test_train_reply_holds_only_trained_prompt_parameters(world, backbone, stage):
    cfg, server, site = world
    m = site.plan.domain_index
    reply, _ = train_reply(site, train_request(server.payload(stage, m), stage, 0, m))
    dxo = from_shareable(reply)
    assert dxo.data_kind == DataKind.WEIGHT_DIFF
    _, trained = stage_payload_names(server.global_state, server.num_domains, stage, m)
    assert set(dxo.data) == set(trained)
    n_images = len(site.train_data[1])
    for name, array in dxo.data.items():
        assert array.shape == tuple(server.global_state[name].shape)
        assert array.shape[0] != n_images  # no per-image rows (features) anywhere
    # nothing of CLIP: no tensor in the reply has the shape of a frozen CLIP weight that is not a prompt shape
    prompt_shapes = {tuple(v.shape) for v in server.global_state.values()}
    assert {a.shape for a in dxo.data.values()} <= prompt_shapes
    assert sum(a.size for a in dxo.data.values()) < 0.1 * sum(p.numel() for p in backbone.model.parameters())
    update = parse_train_reply(site.name, reply)
    assert update.num_samples == n_images and update.domain_index == m


def test_evaluate_reply_holds_only_integer_counts(world):
    cfg, server, site = world
    reply = evaluate_reply(site, evaluate_request(server.global_state, 0))
    dxo = from_shareable(reply)
    assert dxo.data_kind == DataKind.METRICS and set(dxo.data) == {"counts"}
    for key, pair in dxo.data["counts"].items():
        assert all(isinstance(v, int) for v in pair) and pair[0] <= pair[1]
        assert key.count("/") == 2
    counts = parse_evaluate_reply(reply)
    assert any(k.endswith("/zero_shot") for k in counts)
    assert not any(isinstance(v, np.ndarray) for v in dxo.data.values())


def test_second_task_reuses_cached_features(world, tmp_path):
    cfg, server, _ = world
    first = Site(cfg, "site-1", tmp_path)
    first.train_data
    again = Site(cfg, "site-1", tmp_path)  # a new process would build a new Site
    again.train_data
    assert first.feature_cache_hits == 0 and again.feature_cache_hits == 1
