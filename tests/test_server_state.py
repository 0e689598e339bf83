"""ServerState: which parameters each stage changes, Eq. 5 + Eq. 6 wiring, tolerance, order independence."""

import random

import pytest
import torch

from feddcg.aggregation import beta_momentum_average
from feddcg.methods.feddcg import build_prompts, stage_payload_names
from feddcg.server import ServerState, SiteUpdate

from conftest import small_config


def make_update(state, stage, site, m, value, n=10):
    _, trained = stage_payload_names(state.global_state, state.num_domains, stage, m)
    return SiteUpdate(site, m, n, {k: torch.full_like(state.global_state[k], value) for k in trained}, 1.0, 50.0)


@pytest.fixture
def state(backbone):
    cfg = small_config()
    return ServerState(cfg, build_prompts(cfg, backbone).state_dict())


def changed(before, after):
    return {k for k in before if not torch.equal(before[k], after[k])}


def test_stage_a_moves_only_generators_of_domains_with_results(state):
    before = dict(state.global_state)
    state.apply_round("A", 0, [make_update(state, "A", "site-1", 0, 0.1), make_update(state, "A", "site-2", 0, 0.3)])
    diff = changed(before, state.global_state)
    assert diff and all(k.startswith("domains.0.generator.") for k in diff)
    k = "domains.0.generator.query"
    assert torch.allclose(state.global_state[k], before[k] + 0.2)  # equal |D_i|: the mean of 0.1 and 0.3


def test_stage_b_applies_eq5_then_eq6_and_fedavg_for_the_global_prompt(state):
    before = dict(state.global_state)
    updates = [make_update(state, "B", "site-1", 0, 1.0, n=10), make_update(state, "B", "site-2", 0, 4.0, n=30),
               make_update(state, "B", "site-3", 1, 2.0, n=20)]
    state.apply_round("B", 1, updates)
    eq5 = before["domains.0.prompt"] + (10 * 1.0 + 30 * 4.0) / 40
    expected = beta_momentum_average([{"prompt": before["domains.0.prompt"]}, {"prompt": eq5}], 2.0, 1.0)["prompt"]
    assert torch.allclose(state.global_state["domains.0.prompt"], expected)
    assert torch.allclose(state.global_state["domains.0.key"], before["domains.0.key"] + 3.25)
    assert torch.allclose(state.global_state["global_prompt"], before["global_prompt"] + (10 + 120 + 40) / 60)
    assert torch.equal(state.global_state["domains.2.prompt"], before["domains.2.prompt"])  # no results: kept
    assert len(state.beta_history[0]) == 2 and len(state.beta_history[2]) == 1


def test_eq6_history_is_bounded(state):
    for r in range(12):
        state.apply_round("B", r, [make_update(state, "B", "site-1", 0, 0.01)])
    assert len(state.beta_history[0]) == state.cfg.aggregation.beta_history


def test_broken_updates_are_rejected_not_averaged(state):
    before = dict(state.global_state)
    good = make_update(state, "A", "site-1", 0, 0.1)
    nan = make_update(state, "A", "site-2", 0, float("nan"))
    wrong_shape = make_update(state, "A", "site-3", 1, 0.1)
    wrong_shape.update["domains.1.generator.query"] = torch.zeros(2, 2)
    summary = state.apply_round("A", 0, [good, nan, wrong_shape])
    assert set(summary.rejected) == {"site-2", "site-3"}
    assert torch.allclose(state.global_state["domains.0.generator.query"], before["domains.0.generator.query"] + 0.1)
    assert torch.isfinite(state.global_state["domains.0.generator.query"]).all()


def test_domains_below_the_minimum_keep_their_parameters(backbone):
    cfg = small_config(aggregation={"min_sites_per_domain": 2})
    state = ServerState(cfg, build_prompts(cfg, backbone).state_dict())
    before = dict(state.global_state)
    summary = state.apply_round("A", 0, [make_update(state, "A", "site-1", 0, 0.1),
                                         make_update(state, "A", "site-3", 1, 0.1),
                                         make_update(state, "A", "site-4", 1, 0.1)])
    assert summary.skipped_domains == ["photo", "painting"] and summary.updated_domains == ["clipart"]
    assert torch.equal(state.global_state["domains.0.generator.query"], before["domains.0.generator.query"])


def test_result_does_not_depend_on_arrival_order(backbone):
    cfg = small_config()
    outcomes = []
    for shuffle_seed in range(3):
        state = ServerState(cfg, build_prompts(cfg, backbone).state_dict())
        updates = [make_update(state, "B", f"site-{i + 1}", i // 2, 0.1 * (i + 1), n=7 + i) for i in range(6)]
        random.Random(shuffle_seed).shuffle(updates)
        state.apply_round("B", 0, updates)
        outcomes.append(state.global_state)
    assert all(torch.equal(outcomes[0][k], o[k]) for o in outcomes[1:] for k in outcomes[0])


def test_checkpoint_round_trip_resumes_identically(state, tmp_path):
    state.apply_round("B", 0, [make_update(state, "B", "site-1", 0, 0.5)])
    torch.save(state.checkpoint(), tmp_path / "ck.pt")
    restored = ServerState.from_checkpoint(state.cfg, torch.load(tmp_path / "ck.pt", weights_only=True))
    for s in (state, restored):
        s.apply_round("B", 1, [make_update(s, "B", "site-1", 0, 0.25)])
    assert restored.next_round == state.next_round == 2
    assert all(torch.equal(state.global_state[k], restored.global_state[k]) for k in state.global_state)


def test_payload_of_stage_a_is_only_the_domain(state):
    assert set(state.payload("A", 2)) == {k for k in state.global_state if k.startswith("domains.2.")} - \
        {"domains.2.key"}
