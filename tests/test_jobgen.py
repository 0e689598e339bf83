import importlib
import json

from feddcg.flare.jobgen import REPO_ROOT, differences, generate

CONFIGS = sorted((REPO_ROOT / "app_configs").glob("*.yaml"))


def test_committed_jobs_equal_what_generation_produces():
    stale = [d for c in CONFIGS for d in differences(c, REPO_ROOT / "jobs")]
    assert not stale, f"jobs out of date, run feddcg-jobgen --all: {stale}"


def test_every_component_class_of_a_generated_job_imports(tmp_path):
    job = generate(REPO_ROOT / "app_configs/feddcg.yaml", tmp_path, with_custom=False)
    paths = []
    for name in ("config_fed_server.json", "config_fed_client.json"):
        config = json.loads((job / "app/config" / name).read_text())
        for section in ("workflows", "components"):
            paths += [c["path"] for c in config.get(section, [])]
        paths += [e["executor"]["path"] for e in config.get("executors", [])]
    for path in paths:
        module, cls = path.rsplit(".", 1)
        assert hasattr(importlib.import_module(module), cls), path


def test_byoc_copy_carries_the_package_and_weights(tmp_path):
    job = generate(REPO_ROOT / "app_configs/feddcg.yaml", tmp_path)
    custom = job / "app/custom/feddcg"
    assert (custom / "flare/executor.py").is_file()
    assert (custom / "tiny_clip/model/compact_weights.safetensors").is_file()
    assert not list(custom.rglob("__pycache__"))
