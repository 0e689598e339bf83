"""The whole federation in one process, with the same Site and ServerState code the NVFlare job runs.

    python -m feddcg.local_runner app_configs/feddcg.yaml --out runs/feddcg
    python -m feddcg.local_runner app_configs/feddcg.yaml --seeds 0 1 2     # mean +- std over seeds

For sweeps and tables: no process per client task, no messaging, the same numbers. Every round's messages are
the same parameter subsets the NVFlare controller sends, and sites still see only their own data.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import statistics
import time
from pathlib import Path

from feddcg.config import ExperimentConfig, load_config
from feddcg.evaluation import ROW_TITLES, build_results, results_markdown, sum_counts
from feddcg.methods.feddcg import build_prompts
from feddcg.server import ServerState, SiteUpdate
from feddcg.site import Site, shared_backbone


def run_federation(cfg: ExperimentConfig, cache_dir: str | Path | None = None, log=print) -> dict:
    sites = [Site(cfg, name, cache_dir) for name in cfg.site_names]
    server = ServerState(cfg, build_prompts(cfg, shared_backbone(cfg)).state_dict())
    start = time.time()
    for round_index in range(server.next_round, cfg.training.rounds):
        stage = cfg.stage_of_round(round_index)
        updates = []
        for site in sites:
            outcome = site.train(stage, round_index, server.payload(stage, site.plan.domain_index))
            updates.append(SiteUpdate(site.name, outcome.domain_index, outcome.num_samples, outcome.update,
                                      outcome.result.loss, outcome.result.accuracy))
        log(server.apply_round(stage, round_index, updates).line(cfg.training.rounds))
    counts = sum_counts(site.evaluate(server.global_state) for site in sites)
    return build_results(cfg, counts, rounds=cfg.training.rounds, sites=len(sites),
                         wall_seconds=round(time.time() - start, 1), runner="in-process")


def seeds_table(rows_by_seed: list[dict]) -> str:
    """Markdown: each evaluation row as mean +- std over seeds (unseen base / new / HM, seen-domains HM)."""
    columns = (("unseen_domain", "base"), ("unseen_domain", "new"), ("unseen_domain", "hm"), ("seen_domains", "hm"))
    lines = ["| method | unseen base | unseen new | unseen HM | seen-domains HM |", "|---|---:|---:|---:|---:|"]
    for method, title in ROW_TITLES.items():
        cells = []
        for scope, key in columns:
            values = [rows[method][scope][key] for rows in rows_by_seed]
            cells.append(f"{statistics.mean(values):.1f} ± {statistics.pstdev(values):.1f}")
        lines.append(f"| {title} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("config")
    parser.add_argument("--out", type=Path, default=None, help="folder for results.json / results.md")
    parser.add_argument("--cache", type=Path, default=Path("runs/feature_cache"))
    parser.add_argument("--seeds", type=int, nargs="+", default=None, help="run once per seed, print mean +- std")
    args = parser.parse_args(argv)
    cfg = load_config(args.config)
    if args.seeds:
        rows = [run_federation(dataclasses.replace(cfg, seed=seed), args.cache)["rows"] for seed in args.seeds]
        print(f"seeds {args.seeds}\n\n" + seeds_table(rows))
        return
    results = run_federation(cfg, args.cache)
    markdown = results_markdown(results)
    print(markdown)
    if args.out:
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "results.json").write_text(json.dumps(results, indent=2) + "\n")
        (args.out / "results.md").write_text(markdown)


if __name__ == "__main__":
    main()
