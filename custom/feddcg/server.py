"""The server's side of FedDCG, free of any framework: the global model, the Eq. 6 history, and the round rules.

    stage A: f_theta_m  <- FedAvg over the results of domain-m sites only
    stage B: P_D^m      <- Eq. 5 over domain-m sites, then Eq. 6 over the bounded history of P_D^m
             k_m        <- Eq. 5 over domain-m sites
             P_G        <- FedAvg over all sites
A domain with fewer than aggregation.min_sites_per_domain valid results keeps its parameters for the round.
Updates that do not fit the model (keys, shapes, NaN/Inf) are rejected, never averaged in.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Mapping

import torch

from feddcg.aggregation import (InvalidUpdate, append_bounded, beta_momentum_average, domain_wise_update,
                                fedavg_update, prefixed, select, validate_update)
from feddcg.config import ExperimentConfig
from feddcg.methods.feddcg import stage_payload_names


@dataclass
class SiteUpdate:
    site: str
    domain_index: int
    num_samples: int
    update: dict[str, torch.Tensor]
    loss: float = float("nan")
    accuracy: float = float("nan")


@dataclass
class RoundSummary:
    round_index: int
    stage: str
    aggregated_sites: list[str]
    updated_domains: list[str]
    skipped_domains: list[str]
    rejected: dict[str, str] = field(default_factory=dict)
    mean_loss: float = float("nan")
    mean_accuracy: float = float("nan")

    def line(self, rounds: int) -> str:
        text = (f"round {self.round_index + 1}/{rounds} stage {self.stage}: {len(self.aggregated_sites)} sites, "
                f"train loss {self.mean_loss:.3f}, train acc {self.mean_accuracy:.1f}%")
        if self.skipped_domains:
            text += f", kept previous parameters of {', '.join(self.skipped_domains)} (too few results)"
        if self.rejected:
            text += f", rejected {', '.join(f'{s} ({r})' for s, r in self.rejected.items())}"
        return text


def site_order(site: str):
    """site-2 before site-10."""
    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", site)]


class ServerState:
    def __init__(self, cfg: ExperimentConfig, global_state: Mapping[str, torch.Tensor],
                 beta_history: dict[int, list[dict]] | None = None, next_round: int = 0,
                 history_log: list[dict] | None = None):
        self.cfg = cfg
        self.global_state = {k: v.detach().cpu().clone() for k, v in global_state.items()}
        self.num_domains = len(cfg.data.training_domains)
        self.beta_history = beta_history if beta_history is not None else {
            m: [{"prompt": self.global_state[f"domains.{m}.prompt"].clone()}] for m in range(self.num_domains)}
        self.next_round = next_round
        self.history_log = history_log or []

    def payload(self, stage: str, m: int) -> dict[str, torch.Tensor]:
        """What a domain-m site receives for a stage (see methods.feddcg.stage_payload_names)."""
        sent, _ = stage_payload_names(self.global_state, self.num_domains, stage, m)
        return {name: self.global_state[name] for name in sent}

    def _valid(self, stage: str, updates: list[SiteUpdate], summary: RoundSummary) -> list[SiteUpdate]:
        valid = []
        for u in sorted(updates, key=lambda u: site_order(u.site)):
            if not 0 <= u.domain_index < self.num_domains:
                summary.rejected[u.site] = f"unknown domain index {u.domain_index}"
                continue
            _, trained = stage_payload_names(self.global_state, self.num_domains, stage, u.domain_index)
            reference = {n: self.global_state[n] for n in trained}
            try:
                validate_update(u.update, reference)
                if u.num_samples <= 0:
                    raise InvalidUpdate(f"num_samples = {u.num_samples}")
            except InvalidUpdate as err:
                summary.rejected[u.site] = str(err)
                continue
            valid.append(u)
        return valid

    def apply_round(self, stage: str, round_index: int, updates: list[SiteUpdate]) -> RoundSummary:
        domains = self.cfg.data.training_domains
        summary = RoundSummary(round_index, stage, [], [], [])
        valid = self._valid(stage, updates, summary)
        by_domain = {m: [u for u in valid if u.domain_index == m] for m in range(self.num_domains)}
        new_state = dict(self.global_state)
        for m, group in by_domain.items():
            if len(group) < self.cfg.aggregation.min_sites_per_domain:
                summary.skipped_domains.append(domains[m])
                continue
            summary.updated_domains.append(domains[m])
            sizes = [u.num_samples for u in group]
            prefix = f"domains.{m}."
            if stage == "A":
                generator = prefix + "generator."
                averaged = fedavg_update(select(self.global_state, generator),
                                         [select(u.update, generator) for u in group], sizes)
                new_state.update(prefixed(averaged, generator))
            else:
                eq5 = domain_wise_update({"prompt": self.global_state[prefix + "prompt"],
                                          "key": self.global_state[prefix + "key"]},
                                         [select(u.update, prefix) for u in group], sizes)
                self.beta_history[m] = append_bounded(self.beta_history[m], {"prompt": eq5["prompt"]},
                                                      self.cfg.aggregation.beta_history)
                smoothed = beta_momentum_average(self.beta_history[m], self.cfg.aggregation.beta_a,
                                                 self.cfg.aggregation.beta_b)
                new_state[prefix + "prompt"] = smoothed["prompt"]
                new_state[prefix + "key"] = eq5["key"]
        contributing = [u for u in valid if domains[u.domain_index] in summary.updated_domains]
        if stage == "B" and valid:
            new_state.update(fedavg_update({"global_prompt": self.global_state["global_prompt"]},
                                           [{"global_prompt": u.update["global_prompt"]} for u in valid],
                                           [u.num_samples for u in valid]))
            contributing = valid
        self.global_state = new_state
        summary.aggregated_sites = [u.site for u in contributing]
        if contributing:
            summary.mean_loss = sum(u.loss for u in contributing) / len(contributing)
            summary.mean_accuracy = sum(u.accuracy for u in contributing) / len(contributing)
        self.next_round = round_index + 1
        self.history_log.append({"round": round_index, "stage": stage, "sites": summary.aggregated_sites,
                                 "skipped_domains": summary.skipped_domains, "rejected": summary.rejected,
                                 "train_loss": summary.mean_loss, "train_accuracy": summary.mean_accuracy})
        return summary

    def checkpoint(self) -> dict:
        return {"global_state": self.global_state, "beta_history": self.beta_history,
                "next_round": self.next_round, "history_log": self.history_log}

    @classmethod
    def from_checkpoint(cls, cfg: ExperimentConfig, checkpoint: dict) -> "ServerState":
        return cls(cfg, checkpoint["global_state"], checkpoint["beta_history"], checkpoint["next_round"],
                   checkpoint.get("history_log"))

