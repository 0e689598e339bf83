"""The site's NVFlare Executor: a thin wrapper that hands tasks to a framework-free `feddcg.site.Site`.

The site learns everything (domain, classes, data partition) from the job's experiment.yaml and its own name.
Features are cached under the site's workspace (<workspace>/feddcg_cache) because NVFlare's simulator starts a new
process for every client task when -t < -n; with -t = -n the process, and this executor's Site, persist.
"""

from __future__ import annotations

import os

from nvflare.apis.dxo import from_shareable
from nvflare.apis.executor import Executor
from nvflare.apis.fl_constant import ReturnCode
from nvflare.apis.fl_context import FLContext
from nvflare.apis.shareable import Shareable, make_reply
from nvflare.apis.signal import Signal

from feddcg.flare.messages import ROUND, STAGE, evaluate_reply, train_reply
from feddcg.flare.workspace import job_config, site_root
from feddcg.server import SiteUpdate
from feddcg.site import Site

CACHE_FOLDER = "feddcg_cache"


class FedDCGExecutor(Executor):
    def __init__(self, config_file: str = "experiment.yaml", train_task_name: str = "train",
                 evaluate_task_name: str = "validate", log_writer_id: str = "log_writer"):
        super().__init__()
        self.config_file, self.train_task_name, self.evaluate_task_name = config_file, train_task_name, \
            evaluate_task_name
        self.log_writer_id = log_writer_id
        self._site: Site | None = None

    def _get_site(self, fl_ctx: FLContext) -> Site:
        if self._site is None:
            cfg = job_config(fl_ctx, self.config_file)
            self._site = Site(cfg, fl_ctx.get_identity_name(), site_root(fl_ctx) / CACHE_FOLDER)
        return self._site

    def execute(self, task_name: str, shareable: Shareable, fl_ctx: FLContext, abort_signal: Signal) -> Shareable:
        if task_name not in (self.train_task_name, self.evaluate_task_name):
            return make_reply(ReturnCode.TASK_UNKNOWN)
        try:
            site = self._get_site(fl_ctx)
            if abort_signal.triggered:
                return make_reply(ReturnCode.TASK_ABORTED)
            if task_name == self.evaluate_task_name:
                reply = evaluate_reply(site, shareable)
                self.log_info(fl_ctx, f"evaluated the global model on {site.name}'s test shard")
                return reply
            reply, update = train_reply(site, shareable)
            self._log_metrics(fl_ctx, update, shareable)
            self.log_info(fl_ctx, f"{site.name} ({site.plan.domain}) trained: loss {update.loss:.4f}, "
                                  f"accuracy {update.accuracy:.1f}% on {update.num_samples} images "
                                  f"(pid {os.getpid()}, feature cache hits {site.feature_cache_hits})")
            return reply
        except Exception as err:  # the controller tolerates a failed site; the log says why it failed
            self.log_exception(fl_ctx, f"{task_name} failed on {fl_ctx.get_identity_name()}: {err}")
            return make_reply(ReturnCode.EXECUTION_EXCEPTION)

    def _log_metrics(self, fl_ctx: FLContext, update: SiteUpdate, request: Shareable):
        """Per-site TensorBoard scalars, streamed to the server by the job's TBWriter + ConvertToFedEvent."""
        writer = fl_ctx.get_engine().get_component(self.log_writer_id)
        if writer is None:
            return
        meta = from_shareable(request).meta
        round_index, stage = int(meta[ROUND]), meta[STAGE]
        writer.add_scalar(f"train_loss/stage_{stage}", update.loss, global_step=round_index)
        writer.add_scalar(f"train_accuracy/stage_{stage}", update.accuracy, global_step=round_index)
