"""Eq. 7 and the Table 2 alternatives."""

import pytest
import torch

from feddcg.inference import (average_weights, domain_guided_scores, key_similarity_weights, mixer_weights,
                              prompt_fit_weights, uncertainty_weights)

torch.manual_seed(0)
M, N, C = 3, 5, 4
DOMAIN_SCORES = torch.rand(M, N, C)
GLOBAL_SCORES = torch.rand(N, C)


def test_eq7_with_one_hot_weights_and_no_global_is_that_domain():
    for m in range(M):
        weights = torch.nn.functional.one_hot(torch.full((N,), m), M).float()
        out = domain_guided_scores(DOMAIN_SCORES, GLOBAL_SCORES, weights, global_weight=0.0)
        assert torch.allclose(out, DOMAIN_SCORES[m])


def test_eq7_global_weight_one_is_the_global_prompt():
    out = domain_guided_scores(DOMAIN_SCORES, GLOBAL_SCORES, average_weights(N, M), global_weight=1.0)
    assert torch.allclose(out, GLOBAL_SCORES)


def test_eq7_by_hand_for_one_sample():
    weights = torch.tensor([[0.2, 0.3, 0.5]]).expand(N, M)
    out = domain_guided_scores(DOMAIN_SCORES, GLOBAL_SCORES, weights, global_weight=0.4)
    expected = 0.6 * (0.2 * DOMAIN_SCORES[0, 1] + 0.3 * DOMAIN_SCORES[1, 1] + 0.5 * DOMAIN_SCORES[2, 1]) \
        + 0.4 * GLOBAL_SCORES[1]
    assert torch.allclose(out[1], expected)


def test_weights_rows_sum_to_one():
    feats, keys = torch.randn(N, 8), torch.randn(M, 8)
    for weights in (key_similarity_weights(feats, keys, 0.05), prompt_fit_weights(DOMAIN_SCORES, 0.05),
                    uncertainty_weights(DOMAIN_SCORES, 20.0), average_weights(N, M)):
        assert weights.shape == (N, M)
        assert torch.allclose(weights.sum(dim=1), torch.ones(N))


def test_key_similarity_prefers_the_nearest_domain():
    keys = torch.eye(3, 8)
    feats = torch.eye(3, 8)[[2, 0, 1]] + 0.01
    weights = key_similarity_weights(feats, keys, 0.05)
    assert weights.argmax(dim=1).tolist() == [2, 0, 1]


def test_uncertainty_favours_the_confident_branch():
    scores = torch.zeros(2, 1, 4)
    scores[0, 0] = torch.tensor([1.0, 0.0, 0.0, 0.0])  # confident
    scores[1, 0] = torch.tensor([0.1, 0.1, 0.1, 0.1])  # uniform
    weights = uncertainty_weights(scores, logit_scale=20.0)
    assert weights[0, 0] > weights[0, 1]


def test_mixer_switch_and_bad_names():
    kwargs = dict(image_features=torch.randn(N, 8), domain_scores=DOMAIN_SCORES, keys=torch.randn(M, 8),
                  similarity="key", temperature=0.05, logit_scale=20.0)
    assert torch.equal(mixer_weights("average", **kwargs), average_weights(N, M))
    with pytest.raises(ValueError, match="inference.mixer"):
        mixer_weights("vote", **kwargs)
    with pytest.raises(ValueError, match="inference.domain_similarity"):
        mixer_weights("domain_guided", **{**kwargs, "similarity": "psychic"})
