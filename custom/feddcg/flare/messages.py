"""What travels between the server and the sites, as NVFlare DXOs.

Server -> site: DXO(WEIGHTS) holding only the prompt parameters the stage needs, with the stage, round and
domain in its meta. Site -> server: DXO(WEIGHT_DIFF) holding only the differences of the parameters it trained,
plus |D_i| and training metrics; or, for evaluation, DXO(METRICS) holding integer correct/total counts.
Arrays travel as numpy float32: the representation every NVFlare version serializes.
"""

from __future__ import annotations

from typing import Mapping

import numpy as np
import torch
from nvflare.apis.dxo import DXO, DataKind, MetaKey, from_shareable
from nvflare.apis.shareable import Shareable

from feddcg.server import SiteUpdate
from feddcg.site import Site

STAGE, ROUND, DOMAIN = "feddcg_stage", "feddcg_round", "feddcg_domain"
NUM_SAMPLES, LOSS, ACCURACY = "feddcg_num_samples", "feddcg_train_loss", "feddcg_train_accuracy"
COUNTS = "counts"


def to_numpy(state: Mapping[str, torch.Tensor]) -> dict[str, np.ndarray]:
    return {name: value.detach().cpu().float().numpy() for name, value in state.items()}


def to_torch(arrays: Mapping[str, np.ndarray]) -> dict[str, torch.Tensor]:
    return {name: torch.as_tensor(np.asarray(value, dtype=np.float32)) for name, value in arrays.items()}


def train_request(state: Mapping[str, torch.Tensor], stage: str, round_index: int, domain_index: int) -> Shareable:
    dxo = DXO(DataKind.WEIGHTS, data=to_numpy(state), meta={STAGE: stage, ROUND: round_index, DOMAIN: domain_index})
    return dxo.to_shareable()


def evaluate_request(state: Mapping[str, torch.Tensor], round_index: int) -> Shareable:
    return DXO(DataKind.WEIGHTS, data=to_numpy(state), meta={ROUND: round_index}).to_shareable()


def train_reply(site: Site, request: Shareable) -> tuple[Shareable, SiteUpdate]:
    """Run the requested stage on the site; the reply holds the trained parameters' differences only."""
    dxo = from_shareable(request)
    stage, round_index = dxo.get_meta_prop(STAGE), int(dxo.get_meta_prop(ROUND))
    outcome = site.train(stage, round_index, to_torch(dxo.data))
    meta = {MetaKey.NUM_STEPS_CURRENT_ROUND: outcome.result.steps, NUM_SAMPLES: outcome.num_samples,
            DOMAIN: outcome.domain_index, STAGE: stage, ROUND: round_index, LOSS: outcome.result.loss,
            ACCURACY: outcome.result.accuracy}
    reply = DXO(DataKind.WEIGHT_DIFF, data=to_numpy(outcome.update), meta=meta).to_shareable()
    update = SiteUpdate(site.name, outcome.domain_index, outcome.num_samples, outcome.update, outcome.result.loss,
                        outcome.result.accuracy)
    return reply, update


def evaluate_reply(site: Site, request: Shareable) -> Shareable:
    counts = site.evaluate(to_torch(from_shareable(request).data))
    return DXO(DataKind.METRICS, data={COUNTS: {k: [int(c), int(t)] for k, (c, t) in counts.items()}}).to_shareable()


def parse_train_reply(site_name: str, reply: Shareable) -> SiteUpdate:
    dxo = from_shareable(reply)
    if dxo.data_kind != DataKind.WEIGHT_DIFF:
        raise ValueError(f"expected a WEIGHT_DIFF result, got {dxo.data_kind}")
    return SiteUpdate(site=site_name, domain_index=int(dxo.get_meta_prop(DOMAIN, -1)),
                      num_samples=int(dxo.get_meta_prop(NUM_SAMPLES, 0)), update=to_torch(dxo.data),
                      loss=float(dxo.get_meta_prop(LOSS, float("nan"))),
                      accuracy=float(dxo.get_meta_prop(ACCURACY, float("nan"))))


def parse_evaluate_reply(reply: Shareable) -> dict[str, tuple[int, int]]:
    counts = from_shareable(reply).data[COUNTS]
    return {key: (int(c), int(t)) for key, (c, t) in counts.items()}
