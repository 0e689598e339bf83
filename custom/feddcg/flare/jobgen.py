"""Generate NVFlare job folders from the experiment YAMLs in app_configs/ (the single source of truth).

    feddcg-jobgen --all                       # every app_configs/*.yaml -> jobs/<name>/
    feddcg-jobgen app_configs/feddcg.yaml     # one job
    feddcg-jobgen --all --check               # exit 1 if a committed job differs from what generation gives
    feddcg-jobgen --all --custom-only         # only (re)write the BYOC copies in the jobs' app/custom/ (set-up)

A job folder holds NVFlare's wiring (meta.json, config_fed_server.json, config_fed_client.json), the resolved
experiment config (app/config/experiment.yaml, every default filled in) and, in app/custom/, a copy of this plugin
(Bring Your Own Code). The copy is generated, never committed: the job then runs unchanged in the simulator, in POC
mode and in a provisioned federation, where sites need only NVFlare, torch and open_clip installed and no site has
to edit its class allow-list (NVFlare 2.9 skips the allow-list for BYOC jobs; the submitter needs the byoc right).
"""

from __future__ import annotations

import argparse
import filecmp
import json
import shutil
import sys
import tempfile
from pathlib import Path

import feddcg
from feddcg.config import ExperimentConfig, load_config, write_config

REPO_ROOT = Path(__file__).resolve().parents[3]
PACKAGE_DIR = Path(feddcg.__file__).resolve().parent
EXPERIMENT_FILE = "experiment.yaml"
GENERATED = [Path("meta.json"), Path("app/config/config_fed_server.json"), Path("app/config/config_fed_client.json"),
             Path("app/config") / EXPERIMENT_FILE]


def server_config(cfg: ExperimentConfig) -> dict:
    return {
        "format_version": 2,
        "workflows": [{
            "id": "feddcg_controller",
            "path": "feddcg.flare.controller.FedDCGController",
            "args": {"config_file": EXPERIMENT_FILE, "persistor_id": "persistor", "train_task_name": "train",
                     "evaluate_task_name": "validate"},
        }],
        "components": [
            {"id": "persistor", "path": "feddcg.flare.persistor.FedDCGPersistor",
             "args": {"config_file": EXPERIMENT_FILE}},
            {"id": "tb_receiver", "path": "nvflare.app_opt.tracking.tb.tb_receiver.TBAnalyticsReceiver",
             "args": {"events": ["fed.analytix_log_stats", "analytix_log_stats"]}},
        ],
        "task_data_filters": [],
        "task_result_filters": [],
    }


def client_config(cfg: ExperimentConfig) -> dict:
    return {
        "format_version": 2,
        "executors": [{
            "tasks": ["train", "validate"],
            "executor": {"path": "feddcg.flare.executor.FedDCGExecutor",
                         "args": {"config_file": EXPERIMENT_FILE, "log_writer_id": "log_writer"}},
        }],
        "components": [
            {"id": "log_writer", "path": "nvflare.app_opt.tracking.tb.tb_writer.TBWriter", "args": {}},
            {"id": "event_to_fed", "path": "nvflare.app_common.widgets.convert_to_fed_event.ConvertToFedEvent",
             "args": {"events_to_convert": ["analytix_log_stats"], "fed_event_prefix": "fed."}},
        ],
        "task_data_filters": [],
        "task_result_filters": [],
    }


def meta(cfg: ExperimentConfig) -> dict:
    return {"name": cfg.name, "resource_spec": {}, "deploy_map": {"app": ["@ALL"]}, "min_clients": cfg.data.num_sites,
            "mandatory_clients": []}


def _write_json(path: Path, data: dict):
    path.write_text(json.dumps(data, indent=2) + "\n")


def copy_plugin(custom_dir: Path) -> None:
    """The BYOC copy: the package source and the bundled tiny CLIP, without caches."""
    target = custom_dir / "feddcg"
    if target.exists():
        shutil.rmtree(target)
    shutil.copytree(PACKAGE_DIR, target, ignore=shutil.ignore_patterns("__pycache__", "*.pyc", ".*"))


def generate(config_path: Path, jobs_dir: Path, with_custom: bool = True) -> Path:
    cfg = load_config(config_path)
    job = jobs_dir / cfg.name
    (job / "app/config").mkdir(parents=True, exist_ok=True)
    _write_json(job / "meta.json", meta(cfg))
    _write_json(job / "app/config/config_fed_server.json", server_config(cfg))
    _write_json(job / "app/config/config_fed_client.json", client_config(cfg))
    source = config_path.resolve()
    shown = source.relative_to(REPO_ROOT) if source.is_relative_to(REPO_ROOT) else source.name
    header = (f"# GENERATED from {shown} by feddcg-jobgen: edit that file and regenerate, not this one.\n"
              f"# Every setting, defaults included; the server and each site read this copy.\n")
    write_config(cfg, job / "app/config" / EXPERIMENT_FILE, header=header)
    if with_custom:
        copy_plugin(job / "app/custom")
    return job


def differences(config_path: Path, jobs_dir: Path) -> list[str]:
    """Generated files of the job that differ from (or are missing in) jobs_dir."""
    cfg = load_config(config_path)
    with tempfile.TemporaryDirectory() as tmp:
        fresh = generate(config_path, Path(tmp), with_custom=False)
        existing = jobs_dir / cfg.name
        return [str(existing / rel) for rel in GENERATED
                if not (existing / rel).is_file() or not filecmp.cmp(fresh / rel, existing / rel, shallow=False)]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("configs", nargs="*", type=Path)
    parser.add_argument("--all", action="store_true", help="every app_configs/*.yaml")
    parser.add_argument("--jobs-dir", type=Path, default=REPO_ROOT / "jobs")
    parser.add_argument("--check", action="store_true", help="only compare; exit 1 when a job is out of date")
    parser.add_argument("--custom-only", action="store_true",
                        help="only refresh the BYOC plugin copies (committed job files are left as they are)")
    args = parser.parse_args(argv)
    configs = list(args.configs) + (sorted((REPO_ROOT / "app_configs").glob("*.yaml")) if args.all else [])
    if not configs:
        parser.error("name config files or pass --all")
    if args.check:
        stale = [d for c in configs for d in differences(c, args.jobs_dir)]
        for path in stale:
            print(f"out of date: {path} (run feddcg-jobgen --all)", file=sys.stderr)
        return 1 if stale else 0
    for config in configs:
        if args.custom_only:
            custom = args.jobs_dir / load_config(config).name / "app/custom"
            copy_plugin(custom)
            print(f"refreshed {custom}")
        else:
            print(f"generated {generate(config, args.jobs_dir)} from {config}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
