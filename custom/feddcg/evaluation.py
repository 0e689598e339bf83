"""From per-site correct/total counts to the tables users read (results.json, results.md).

Sites evaluate their shard of the test set and send back only counts; summing counts (not averaging accuracies)
makes the federated figure identical to evaluating the whole test set in one place.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Iterable, Mapping

from feddcg.config import ExperimentConfig

Counts = Mapping[str, tuple[int, int]]  # "domain/split/method" -> (correct, total)
METHOD_ROWS = ("zero_shot", "global_prompt", "average", "uncertainty", "domain_guided")


def count_key(domain: str, split: str, method: str) -> str:
    return f"{domain}/{split}/{method}"


def sum_counts(site_counts: Iterable[Counts]) -> dict[str, tuple[int, int]]:
    total: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    for counts in site_counts:
        for key, (correct, seen) in counts.items():
            total[key][0] += int(correct)
            total[key][1] += int(seen)
    return {key: (c, t) for key, (c, t) in sorted(total.items())}


def harmonic_mean(a: float, b: float) -> float:
    return 0.0 if a + b == 0 else 2 * a * b / (a + b)


def _accuracy(counts: Counts, domains: Iterable[str], split: str, method: str) -> float:
    correct = seen = 0
    for domain in domains:
        c, t = counts.get(count_key(domain, split, method), (0, 0))
        correct, seen = correct + c, seen + t
    return round(100.0 * correct / seen, 2) if seen else float("nan")


def _row(counts: Counts, domains, method) -> dict[str, float]:
    base, new = _accuracy(counts, domains, "base", method), _accuracy(counts, domains, "new", method)
    return {"base": base, "new": new, "hm": round(harmonic_mean(base, new), 2)}


def accuracy_table(cfg: ExperimentConfig, counts: Counts, method: str) -> dict:
    """{"seen_domains": {base, new, hm}, "unseen_domain": {...}, "per_domain": {domain: {...}}}, in percent.
    Seen domains pool the training domains' test images; unseen is the held-out domain."""
    d = cfg.data
    return {
        "seen_domains": _row(counts, d.training_domains, method),
        "unseen_domain": _row(counts, [d.held_out_domain], method),
        "per_domain": {dom: _row(counts, [dom], method) for dom in (*d.training_domains, d.held_out_domain)},
    }


def build_results(cfg: ExperimentConfig, counts: Counts, **extra) -> dict:
    """results.json: the configured mixer's table under "accuracy", zero-shot CLIP for comparison, every row."""
    return {
        "method": cfg.method,
        "held_out_domain": cfg.data.held_out_domain,
        "mixer": cfg.inference.mixer,
        "accuracy": accuracy_table(cfg, counts, cfg.inference.mixer),
        "zero_shot": accuracy_table(cfg, counts, "zero_shot"),
        "rows": {method: accuracy_table(cfg, counts, method) for method in METHOD_ROWS},
        **extra,
    }


ROW_TITLES = {
    "zero_shot": "zero-shot CLIP",
    "global_prompt": "global prompt P_G alone",
    "average": "Eq. 7, average weights (Table 2 M1)",
    "uncertainty": "Eq. 7, uncertainty weights (Table 2 M2)",
    "domain_guided": "Eq. 7, domain-guided weights (FedDCG)",
}


def results_markdown(results: dict) -> str:
    """A table per evaluation setting: rows are methods, columns base / new / harmonic mean."""
    held = results["held_out_domain"]
    lines = [f"# {results['method']} results (held-out domain: {held}, mixer: {results['mixer']})", ""]
    for scope, title in (("unseen_domain", f"Unseen domain ({held})"), ("seen_domains", "Seen (training) domains")):
        lines += [f"## {title}", "", "| method | base | new | HM |", "|---|---:|---:|---:|"]
        for method, row_title in ROW_TITLES.items():
            row = results["rows"][method][scope]
            lines.append(f"| {row_title} | {row['base']:.2f} | {row['new']:.2f} | {row['hm']:.2f} |")
        lines.append("")
    lines += ["## Per domain (configured mixer; zero-shot in brackets)", "", "| domain | base | new | HM |",
              "|---|---:|---:|---:|"]
    for domain, row in results["accuracy"]["per_domain"].items():
        zs = results["zero_shot"]["per_domain"][domain]
        marker = " (held out)" if domain == held else ""
        lines.append(f"| {domain}{marker} | {row['base']:.2f} ({zs['base']:.2f}) | {row['new']:.2f} "
                     f"({zs['new']:.2f}) | {row['hm']:.2f} ({zs['hm']:.2f}) |")
    return "\n".join(lines) + "\n"
