"""Where a job's files are, as NVFlare's workspace says (simulator, POC and provisioned alike)."""

from __future__ import annotations

from pathlib import Path

from nvflare.apis.fl_context import FLContext

from feddcg.config import ExperimentConfig, load_config


def app_dir(fl_ctx: FLContext) -> Path:
    """This participant's deployed app folder (the server's holds results.json and the global model)."""
    return Path(fl_ctx.get_engine().get_workspace().get_app_dir(fl_ctx.get_job_id()))


def job_config(fl_ctx: FLContext, config_file: str) -> ExperimentConfig:
    """The resolved experiment config the job generator put next to the app's NVFlare configs."""
    workspace = fl_ctx.get_engine().get_workspace()
    return load_config(Path(workspace.get_app_config_dir(fl_ctx.get_job_id())) / config_file)


def site_root(fl_ctx: FLContext) -> Path:
    """The participant's workspace root: outlives jobs, so caches kept here are reused by later runs."""
    return Path(fl_ctx.get_engine().get_workspace().get_root_dir())
