"""Persists the whole FedDCG server state in the server's app folder, every round.

    FL_global_model.pt       {"model": prompt parameters, "next_round": r}: what users load (torch.load)
    feddcg_server_state.pt   the complete ServerState (global model, Eq. 6 history, round log): what resume loads

When the state file exists at start (a restarted server, or a job re-run in the same app folder) training continues
from its next round. Files are written to a temporary name and renamed, so a crash never leaves a torn checkpoint.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch
from nvflare.apis.fl_context import FLContext
from nvflare.app_common.abstract.model import ModelLearnable, ModelLearnableKey, make_model_learnable
from nvflare.app_common.abstract.model_persistor import ModelPersistor
from nvflare.app_common.model_desc import ModelDescriptor

from feddcg.flare.workspace import app_dir, job_config
from feddcg.methods.feddcg import build_prompts
from feddcg.server import ServerState
from feddcg.site import shared_backbone

CHECKPOINT_META = "feddcg_checkpoint"


def _atomic_save(obj, path: Path):
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    torch.save(obj, tmp)
    os.replace(tmp, path)


class FedDCGPersistor(ModelPersistor):
    def __init__(self, config_file: str = "experiment.yaml", model_file: str = "FL_global_model.pt",
                 state_file: str = "feddcg_server_state.pt"):
        super().__init__()
        self.config_file, self.model_file, self.state_file = config_file, model_file, state_file

    def load_model(self, fl_ctx: FLContext) -> ModelLearnable:
        cfg = job_config(fl_ctx, self.config_file)
        state_path = app_dir(fl_ctx) / self.state_file
        if state_path.is_file():
            state = ServerState.from_checkpoint(cfg, torch.load(state_path, map_location="cpu", weights_only=True))
            self.log_info(fl_ctx, f"resuming from {state_path} at round {state.next_round + 1}")
        else:
            # The initial prompts need the frozen text encoder once (widths, "a photo of a" embeddings).
            state = ServerState(cfg, build_prompts(cfg, shared_backbone(cfg)).state_dict())
        return to_learnable(state)

    def save_model(self, model: ModelLearnable, fl_ctx: FLContext):
        folder = app_dir(fl_ctx)
        weights, checkpoint = model[ModelLearnableKey.WEIGHTS], model[ModelLearnableKey.META][CHECKPOINT_META]
        _atomic_save({"global_state": weights, **checkpoint}, folder / self.state_file)
        _atomic_save({"model": weights, "next_round": checkpoint["next_round"]}, folder / self.model_file)

    def get_model_inventory(self, fl_ctx: FLContext) -> dict[str, ModelDescriptor]:
        path = app_dir(fl_ctx) / self.model_file
        if not path.is_file():
            return {}
        return {self.model_file: ModelDescriptor(name=self.model_file, location=str(path), model_format="PT",
                                                 props={})}

    def get_model(self, model_file: str, fl_ctx: FLContext) -> ModelLearnable:
        saved = torch.load(app_dir(fl_ctx) / model_file, map_location="cpu", weights_only=True)
        return make_model_learnable(saved["model"], {"next_round": saved["next_round"]})


def to_learnable(state: ServerState) -> ModelLearnable:
    checkpoint = state.checkpoint()
    return make_model_learnable(checkpoint.pop("global_state"), {CHECKPOINT_META: checkpoint})


def from_learnable(cfg, learnable: ModelLearnable) -> ServerState:
    return ServerState.from_checkpoint(cfg, {"global_state": learnable[ModelLearnableKey.WEIGHTS],
                                             **learnable[ModelLearnableKey.META][CHECKPOINT_META]})
