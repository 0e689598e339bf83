"""FedDCG's server workflow: a ScatterAndGather whose rounds alternate between the paper's two stages.

Each round is one task per training domain, broadcast only to that domain's sites with only the parameters the
stage needs (stage A: f_theta_m and P_D^m; stage B: P_G, f_theta_m, P_D^m and the domain keys). Results are
checked and aggregated by `feddcg.server.ServerState` in site order, so a run does not depend on arrival order.
After the last round every site evaluates the global model on its share of the test set; the summed counts become
results.json / results.md in the server's app folder, and the table is printed in the server log.

From ScatterAndGather this keeps its task_check_period and persist_every_n_rounds arguments, its phase /
current-round bookkeeping (admin `show_stats`) and its snapshot hooks (resume). Rounds, sites and train_timeout come
from experiment.yaml, the single source of settings. The global model lives in a FedDCGPersistor, which saves the
whole server state every round.
"""

from __future__ import annotations

import json
import math
import time

from nvflare.apis.analytix import AnalyticsDataType
from nvflare.apis.client import Client
from nvflare.apis.controller_spec import ClientTask, Task
from nvflare.apis.fl_constant import ReturnCode
from nvflare.apis.fl_context import FLContext
from nvflare.apis.shareable import Shareable
from nvflare.apis.signal import Signal
from nvflare.apis.utils.analytix_utils import create_analytic_dxo, send_analytic_dxo
from nvflare.app_common.app_constant import AppConstants
from nvflare.app_common.workflows.scatter_and_gather import ScatterAndGather

from feddcg.backbone import BackboneError
from feddcg.config import ConfigError, ExperimentConfig
from feddcg.data.datasets import open_dataset
from feddcg.data.partition import class_split, plan_sites
from feddcg.evaluation import build_results, results_markdown, sum_counts
from feddcg.flare.messages import evaluate_request, parse_evaluate_reply, parse_train_reply, train_request
from feddcg.flare.persistor import from_learnable, to_learnable
from feddcg.flare.workspace import app_dir, job_config
from feddcg.server import ServerState, SiteUpdate


class FedDCGController(ScatterAndGather):
    def __init__(self, config_file: str = "experiment.yaml", persistor_id: str = "persistor",
                 train_task_name: str = AppConstants.TASK_TRAIN, evaluate_task_name: str = AppConstants.TASK_VALIDATION,
                 task_check_period: float = 0.5, persist_every_n_rounds: int = 1,
                 results_file: str = "results.json"):
        # rounds, sites and train_timeout come from the experiment config at start; the values here are placeholders
        super().__init__(min_clients=1, num_rounds=1, wait_time_after_min_received=0, aggregator_id="",
                         persistor_id=persistor_id, shareable_generator_id="", train_task_name=train_task_name,
                         train_timeout=0, ignore_result_error=True, task_check_period=task_check_period,
                         persist_every_n_rounds=persist_every_n_rounds)
        self.config_file, self.evaluate_task_name, self.results_file = config_file, evaluate_task_name, results_file
        self.cfg: ExperimentConfig | None = None
        self.state: ServerState | None = None
        self._updates: dict[str, SiteUpdate] = {}
        self._counts: dict[str, dict] = {}

    # --- set-up -----------------------------------------------------------------------------------------------
    def start_controller(self, fl_ctx: FLContext) -> None:
        self._phase = AppConstants.PHASE_INIT
        try:
            self._start(fl_ctx)
        except (ConfigError, BackboneError) as err:  # bad settings or weights: say so and stop the job cleanly
            self.system_panic(str(err), fl_ctx)

    def _start(self, fl_ctx: FLContext) -> None:
        self.cfg = job_config(fl_ctx, self.config_file)
        self._num_rounds = self.cfg.training.rounds
        self._min_clients = self.cfg.data.num_sites
        self._train_timeout = int(math.ceil(self.cfg.aggregation.train_timeout))
        self.persistor = self._engine.get_component(self.persistor_id)
        if self.persistor is None:
            self.system_panic(f"no persistor component with id {self.persistor_id!r} in config_fed_server.json", fl_ctx)
            return
        self.state = from_learnable(self.cfg, self.persistor.load(fl_ctx))
        self._start_round = self._current_round = self.state.next_round
        split = class_split(self.cfg, len(open_dataset(self.cfg).class_names))
        self.plans = plan_sites(self.cfg, split)
        self.log_info(fl_ctx, f"FedDCG: {self.cfg.training.rounds} rounds, stage pattern "
                              f"{self.cfg.training.stage_pattern!r}, {len(self.plans)} sites over domains "
                              f"{', '.join(self.cfg.data.training_domains)}; held-out domain "
                              f"{self.cfg.data.held_out_domain}")

    def _connected_sites(self, fl_ctx: FLContext) -> set[str]:
        return {c.name for c in self._engine.get_clients()}

    def _check_federation(self, fl_ctx: FLContext) -> bool:
        connected = self._connected_sites(fl_ctx)
        missing = [p.site for p in self.plans if p.site not in connected]
        empty = [d for m, d in enumerate(self.cfg.data.training_domains)
                 if not any(p.domain_index == m and p.site in connected for p in self.plans)]
        if empty:
            self.system_panic(
                f"{self.cfg.source}: no connected site trains domain(s) {', '.join(empty)}. The config expects "
                f"site-1..site-{self.cfg.data.num_sites} (data.num_sites); connected: {', '.join(sorted(connected))}. "
                f"Run the simulator with -n {self.cfg.data.num_sites}, or set data.num_sites and regenerate the job.",
                fl_ctx)
            return False
        if missing:
            self.log_warning(fl_ctx, f"sites not connected, their domains train without them: {', '.join(missing)}")
        return True

    # --- rounds -----------------------------------------------------------------------------------------------
    def control_flow(self, abort_signal: Signal, fl_ctx: FLContext) -> None:
        if self.state is None or not self._check_federation(fl_ctx):
            return
        start = time.time()
        self._phase = AppConstants.PHASE_TRAIN
        rounds = self.cfg.training.rounds
        for round_index in range(self.state.next_round, rounds):
            self._current_round = round_index
            stage = self.cfg.stage_of_round(round_index)
            updates = self._run_train_round(stage, round_index, abort_signal, fl_ctx)
            if abort_signal.triggered:
                return
            summary = self.state.apply_round(stage, round_index, updates)
            self.log_info(fl_ctx, summary.line(rounds))
            self._scalar(fl_ctx, f"train_loss/stage_{stage}", summary.mean_loss, round_index)
            self._scalar(fl_ctx, f"train_accuracy/stage_{stage}", summary.mean_accuracy, round_index)
            last = round_index == rounds - 1
            if self._persist_every_n_rounds and ((round_index + 1) % self._persist_every_n_rounds == 0 or last):
                self.persistor.save(to_learnable(self.state), fl_ctx)
            every = self.cfg.evaluation.every_n_rounds
            if every and (round_index + 1) % every == 0 and not last:
                self._evaluate(round_index, abort_signal, fl_ctx)
        self._phase = "evaluate"
        results = self._evaluate(rounds - 1, abort_signal, fl_ctx)
        if results is None:
            return
        results.update(rounds=rounds, sites_evaluated=len(self._counts), training_log=self.state.history_log,
                       controller_wall_seconds=round(time.time() - start, 1))
        folder = app_dir(fl_ctx)
        (folder / self.results_file).write_text(json.dumps(results, indent=2) + "\n")
        markdown = results_markdown(results)
        (folder / "results.md").write_text(markdown)
        self.log_info(fl_ctx, f"results written to {folder / self.results_file}\n\n{markdown}")
        self._phase = AppConstants.PHASE_FINISHED

    def _broadcast_and_collect(self, tasks: list[tuple[Task, list[str]]], abort_signal: Signal,
                               fl_ctx: FLContext) -> None:
        for task, targets in tasks:
            self.broadcast(task, fl_ctx, targets=targets, min_responses=len(targets),
                           wait_time_after_min_received=0)
        while any(task.completion_status is None for task, _ in tasks):
            if abort_signal.triggered:
                for task, _ in tasks:
                    self.cancel_task(task, fl_ctx=fl_ctx)
                return
            time.sleep(self._task_check_period)

    def _run_train_round(self, stage: str, round_index: int, abort_signal: Signal,
                         fl_ctx: FLContext) -> list[SiteUpdate]:
        self._updates = {}
        connected = self._connected_sites(fl_ctx)
        tasks = []
        for m in range(len(self.cfg.data.training_domains)):
            targets = [p.site for p in self.plans if p.domain_index == m and p.site in connected]
            if not targets:
                continue
            request = train_request(self.state.payload(stage, m), stage, round_index, m)
            request.set_header(AppConstants.CURRENT_ROUND, round_index)
            request.set_header(AppConstants.NUM_ROUNDS, self.cfg.training.rounds)
            task = Task(name=self.train_task_name, data=request, timeout=self._train_timeout,
                        result_received_cb=self._on_train_result)
            tasks.append((task, targets))
        self._broadcast_and_collect(tasks, abort_signal, fl_ctx)
        return list(self._updates.values())

    def _on_train_result(self, client_task: ClientTask, fl_ctx: FLContext) -> None:
        site, result = client_task.client.name, client_task.result
        client_task.result = None  # do not keep every site's update in the task history
        if not self._result_ok(site, result, fl_ctx):
            return
        try:
            self._updates[site] = parse_train_reply(site, result)
        except (ValueError, KeyError, TypeError) as err:
            self.log_warning(fl_ctx, f"{site}: unreadable training result, dropped: {err}")

    def _result_ok(self, site: str, result: Shareable, fl_ctx: FLContext) -> bool:
        code = result.get_return_code(ReturnCode.OK)
        if code != ReturnCode.OK:
            self.log_warning(fl_ctx, f"{site} returned {code}; its result is left out of this round")
            return False
        return True

    def process_result_of_unknown_task(self, client: Client, task_name: str, client_task_id: str, result: Shareable,
                                       fl_ctx: FLContext) -> None:
        """A result that arrives after its round ended (timeout): the round is aggregated already, so drop it."""
        self.log_warning(fl_ctx, f"late {task_name} result from {client.name} dropped (its round has ended)")

    # --- evaluation -------------------------------------------------------------------------------------------
    def _evaluate(self, round_index: int, abort_signal: Signal, fl_ctx: FLContext) -> dict | None:
        self._counts = {}
        targets = sorted(self._connected_sites(fl_ctx) & {p.site for p in self.plans})
        task = Task(name=self.evaluate_task_name, data=evaluate_request(self.state.global_state, round_index),
                    timeout=self._train_timeout, result_received_cb=self._on_evaluate_result)
        self._broadcast_and_collect([(task, targets)], abort_signal, fl_ctx)
        if abort_signal.triggered:
            return None
        missing = sorted(set(targets) - set(self._counts))
        if missing:
            self.log_warning(fl_ctx, f"no evaluation from {', '.join(missing)}: their test shards are not counted")
        results = build_results(self.cfg, sum_counts(self._counts[s] for s in sorted(self._counts)))
        for scope in ("seen_domains", "unseen_domain"):
            for split, value in results["accuracy"][scope].items():
                self._scalar(fl_ctx, f"eval_{scope}/{split}", value, round_index)
        unseen, zs = results["accuracy"]["unseen_domain"], results["zero_shot"]["unseen_domain"]
        self.log_info(fl_ctx, f"evaluation after round {round_index + 1}: unseen domain new classes "
                              f"{unseen['new']:.2f}% (zero-shot {zs['new']:.2f}%), HM {unseen['hm']:.2f}%")
        return results

    def _on_evaluate_result(self, client_task: ClientTask, fl_ctx: FLContext) -> None:
        site, result = client_task.client.name, client_task.result
        client_task.result = None
        if not self._result_ok(site, result, fl_ctx):
            return
        try:
            self._counts[site] = parse_evaluate_reply(result)
        except (ValueError, KeyError, TypeError) as err:
            self.log_warning(fl_ctx, f"{site}: unreadable evaluation result, dropped: {err}")

    def _scalar(self, fl_ctx: FLContext, tag: str, value: float, step: int) -> None:
        """A server-side TensorBoard scalar (written by the job's TBAnalyticsReceiver under tb_events/)."""
        if value is None or (isinstance(value, float) and math.isnan(value)):
            return
        dxo = create_analytic_dxo(tag, float(value), AnalyticsDataType.SCALAR, global_step=step)
        send_analytic_dxo(self, dxo, fl_ctx)

    # --- snapshot / resume (NVFlare's server restart) ---------------------------------------------------------
    def get_persist_state(self, fl_ctx: FLContext) -> dict:
        return {"next_round": self.state.next_round if self.state else 0}

    def restore(self, state_data: dict, fl_ctx: FLContext):
        # the persistor's state file is the source of truth; the snapshot only records how far we got
        self._current_round = self._start_round = int(state_data.get("next_round", 0))
