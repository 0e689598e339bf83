"""The real NVFlare simulator, end to end, on generated job folders (the same generation as jobs/).

The default job runs exactly as the README's first command does (18 sites, default -t: a new process per client
task), and must reproduce the in-process runner's numbers. A 3-site job is run with -t 1 and -t 3 to show that the
result does not depend on how the simulator schedules sites onto processes.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from feddcg.config import load_config
from feddcg.flare.jobgen import REPO_ROOT, generate
from feddcg.local_runner import run_federation

NVFLARE = str(Path(sys.executable).with_name("nvflare"))
SIM_TIMEOUT = 1500


def simulate(config: Path, jobs: Path, workspace: Path, sites: int, threads: int | None = None) -> Path:
    job = generate(config, jobs)
    command = [NVFLARE, "simulator", str(job), "-n", str(sites), "-w", str(workspace)]
    if threads:
        command += ["-t", str(threads)]
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    run = subprocess.run(command, capture_output=True, text=True, timeout=SIM_TIMEOUT, env=env)
    server_log = workspace / "server/log.txt"
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    assert "results written to" in server_log.read_text(), server_log.read_text()[-5000:]
    return workspace / "server/simulate_job"


def read_results(server_job: Path) -> dict:
    return json.loads((server_job / "app_server/results.json").read_text())


@pytest.fixture(scope="module")
def default_run(tmp_path_factory):
    config = REPO_ROOT / "app_configs/feddcg.yaml"
    server_job = simulate(config, tmp_path_factory.mktemp("jobs"), tmp_path_factory.mktemp("ws"), 18)
    return load_config(config), server_job


def assert_table_shape(table, domains):
    assert set(table) >= {"seen_domains", "unseen_domain", "per_domain"}
    for row in (table["seen_domains"], table["unseen_domain"], *table["per_domain"].values()):
        assert set(row) == {"base", "new", "hm"} and all(0 <= v <= 100 for v in row.values())
    assert set(table["per_domain"]) == set(domains)


def test_results_json_has_the_published_shape(default_run):
    cfg, server_job = default_run
    results = read_results(server_job)
    assert results["method"] == "feddcg" and results["held_out_domain"] == cfg.data.held_out_domain
    domains = [*cfg.data.training_domains, cfg.data.held_out_domain]
    assert_table_shape(results["accuracy"], domains)
    assert_table_shape(results["zero_shot"], domains)
    assert (server_job / "app_server/results.md").read_text().startswith("# feddcg results")


def test_default_job_learns_beyond_zero_shot_on_new_classes_of_the_unseen_domain(default_run):
    results = read_results(default_run[1])
    assert results["accuracy"]["unseen_domain"]["new"] > results["zero_shot"]["unseen_domain"]["new"]


def test_simulator_equals_the_in_process_runner(default_run, tmp_path):
    cfg, server_job = default_run
    assert read_results(server_job)["rows"] == run_federation(cfg, tmp_path, log=lambda *_: None)["rows"]


def test_global_model_file_holds_the_final_prompts(default_run):
    cfg, server_job = default_run
    saved = torch.load(server_job / "app_server/FL_global_model.pt", weights_only=True)
    assert saved["next_round"] == cfg.training.rounds
    names = set(saved["model"])
    assert "global_prompt" in names and {f"domains.{m}.prompt" for m in range(3)} <= names
    assert not any("visual" in n or "transformer" in n.split(".")[0] for n in names)


def test_tensorboard_event_files_per_site_and_server(default_run):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    cfg, server_job = default_run
    tb = server_job / "tb_events"
    for site in cfg.site_names:
        events = EventAccumulator(str(tb / site))
        events.Reload()
        assert {"train_loss/stage_A", "train_loss/stage_B"} <= set(events.Tags()["scalars"]), site
    server_dirs = [d for d in tb.iterdir() if not d.name.startswith("site-")]
    assert server_dirs, "no server-side event folder"
    events = EventAccumulator(str(server_dirs[0]))
    events.Reload()
    assert "eval_unseen_domain/new" in events.Tags()["scalars"]


def test_progress_lines_and_results_table_in_the_server_log(default_run):
    log = (default_run[1].parent / "log.txt").read_text()
    assert "round 1/2 stage A: 18 sites" in log and "round 2/2 stage B: 18 sites" in log
    assert "| Eq. 7, domain-guided weights (FedDCG) |" in log


def test_features_are_encoded_once_per_site(default_run):
    log = (default_run[1].parent.parent / "site-1/log.txt").read_text()
    # every task runs in a new process (-t 1); the second training task finds the features on disk
    assert "feature cache hits 0)" in log and "feature cache hits 1)" in log


def test_result_does_not_depend_on_simulator_threads(tmp_path):
    config = REPO_ROOT / "tests/configs/three_sites.yaml"
    one = read_results(simulate(config, tmp_path / "jobs1", tmp_path / "ws1", 3, threads=1))
    three = read_results(simulate(config, tmp_path / "jobs3", tmp_path / "ws3", 3, threads=3))
    assert one["rows"] == three["rows"]
    assert one["rows"] == run_federation(load_config(config), tmp_path / "cache", log=lambda *_: None)["rows"]
