import pytest

from feddcg.config import ConfigError, load_config, write_config

from conftest import small_config


def test_repo_configs_load():
    cfg = load_config("app_configs/feddcg.yaml")
    assert cfg.name == "feddcg" and len(cfg.site_names) == cfg.data.num_sites


def test_unknown_key_names_file_and_key_with_a_suggestion(tmp_path):
    path = tmp_path / "exp.yaml"
    path.write_text("training:\n  lr_schedul: cosine\n")
    with pytest.raises(ConfigError, match=r"exp.yaml: unknown setting 'training.lr_schedul' \(did you mean 'lr_schedule'"):
        load_config(path)


def test_bad_type_names_the_key(tmp_path):
    path = tmp_path / "exp.yaml"
    path.write_text("training:\n  rounds: many\n")
    with pytest.raises(ConfigError, match="training.rounds must be int"):
        load_config(path)


@pytest.mark.parametrize("section,values,message", [
    ("data", {"held_out_domain": "photo"}, "also a training domain"),
    ("data", {"num_sites": 7}, "multiple"),
    ("data", {"sampling_rate": 0.0}, "sampling_rate"),
    ("training", {"stage_pattern": "ABC"}, "stage_pattern"),
    ("inference", {"mixer": "vote"}, "inference.mixer"),
    ("inference", {"global_weight": 1.5}, "global_weight"),
    ("aggregation", {"beta_a": 0}, "beta_a"),
])
def test_bad_values_are_rejected(section, values, message):
    with pytest.raises(ConfigError, match=message):
        small_config(**{section: values})


def test_missing_file_is_named(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "nope.yaml")


def test_written_config_reads_back_equal(tmp_path, cfg):
    write_config(cfg, tmp_path / "out.yaml")
    assert load_config(tmp_path / "out.yaml") == cfg


def test_yaml_scientific_notation_is_a_float(tmp_path):
    path = tmp_path / "exp.yaml"
    path.write_text("training:\n  weight_decay: 1e-5\n")
    assert load_config(path).training.weight_decay == 1e-5


def test_stage_pattern_repeats_over_rounds():
    cfg = small_config(training={"stage_pattern": "AAB"})
    assert [cfg.stage_of_round(r) for r in range(6)] == list("AABAAB")
