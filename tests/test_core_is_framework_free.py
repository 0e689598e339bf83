import subprocess
import sys

CORE = ["feddcg.backbone", "feddcg.prompts", "feddcg.aggregation", "feddcg.inference", "feddcg.config",
        "feddcg.data.synthetic_world", "feddcg.data.partition", "feddcg.data.datasets", "feddcg.data.feature_cache",
        "feddcg.methods.feddcg", "feddcg.methods.common", "feddcg.tiny_clip"]


def test_core_imports_no_nvflare():
    code = "import sys\n" + "".join(f"import {m}\n" for m in CORE) + \
        "bad = [m for m in sys.modules if m == 'nvflare' or m.startswith('nvflare.')]\nprint(bad)\nassert not bad\n"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
