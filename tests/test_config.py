"""The typed config: defaults, presets, overrides, and one-line errors naming key and allowed values."""

from __future__ import annotations

import re

import pytest
import yaml
from pydantic import ValidationError

from mentor_ray.common import config
from mentor_ray.common.errors import ConfigError
from tests.conftest import REPO


def test_defaults_are_the_papers():
    cfg = config.TrainConfig()
    assert (cfg.lr, cfg.batch_size, cfg.embedding_dim, cfg.n_layers, cfg.knn_k, cfg.patience, cfg.max_epochs) == (
        1e-4, 2048, 64, 2, 40, 20, 1000)


def test_layering_preset_flags_overrides(tmp_path):
    preset = tmp_path / "p.yaml"
    preset.write_text("lambda_g: 0.01\ntau: 0.5\nseed: 3\n")
    cfg = config.make_config(str(preset), {"seed": 7, "dataset": None}, ["tau=0.3", "infonce_scope=batch"])
    assert cfg.lambda_g == 0.01 and cfg.seed == 7 and cfg.tau == 0.3 and cfg.infonce_scope == "batch"
    assert cfg.dataset == "synth-small"  # a None flag leaves the default


def test_override_values_are_typed():
    cfg = config.make_config(overrides=["lambda_g=1e-3", "normalize_input=false", "max_epochs=5"])
    assert cfg.lambda_g == 1e-3 and cfg.normalize_input is False and cfg.max_epochs == 5


def test_variant_flags_are_derived():
    assert config.VARIANTS["mentor_f"].feature_masking is False and config.VARIANTS["mentor_f"].graph_perturbation
    assert config.VARIANTS["mentor_g"].graph_perturbation is False and config.VARIANTS["mentor_g"].feature_masking
    assert config.VARIANTS["mentor_base"].align_levels == 0
    assert [config.VARIANTS[v].align_levels for v in ("mentor_l1", "mentor_l2", "mentor")] == [1, 2, 3]
    assert {"lightgcn", "mf_bpr", "most_pop"} <= set(config.BASELINES)
    assert not set(config.BASELINES) & set(config.MENTOR_VARIANTS)


def test_baseline_defaults_yield_to_explicit_settings():
    assert config.make_config(flags={"variant": "lightgcn"}).lr == 1e-3
    assert config.make_config(flags={"variant": "lightgcn"}).n_layers == 3
    assert config.make_config(flags={"variant": "lightgcn"}, overrides=["lr=0.01"]).lr == 0.01
    assert config.make_config(flags={"variant": "mentor"}).lr == 1e-4


@pytest.mark.parametrize(
    "override, fragment",
    [
        ("lamda_g=1", "override: unknown key 'lamda_g'; did you mean 'lambda_g'? closest allowed keys: lambda_g,"),
        ("infonce_scope=some", "infonce_scope = 'some' is not allowed"),
        ("infonce_scope=some", "allowed: all or batch"),
        ("variant=mentor_x", "mentor_fg, mentor_f, mentor_g"),
        ("dropout=1.5", "dropout = 1.5 is not allowed"),
        ("dropout=1.5", "less than 1"),
        ("tau=0", "greater than 0"),
        ("lambda_g", "expected key=value"),
    ],
)
def test_bad_settings_name_the_key_and_what_is_allowed(override, fragment):
    with pytest.raises(ConfigError) as exc:
        config.make_config(overrides=[override])
    msg = str(exc.value)
    assert fragment in msg and "\n" not in msg, msg


def test_unknown_preset_lists_presets():
    with pytest.raises(ConfigError, match="no such preset or file .presets: .*paper"):
        config.make_config("nope")


def _repo_yaml_files():
    skip = {".venv", ".git", "node_modules"}
    return [p for p in REPO.rglob("*.y*ml") if not skip & set(p.relative_to(REPO).parts)]


def test_every_yaml_file_in_the_repository_parses():
    files = _repo_yaml_files()
    assert any(p.parent.name == "presets" for p in files)
    for path in files:
        yaml.safe_load(path.read_text())  # raises on a syntax error


@pytest.mark.parametrize("preset", sorted(p.stem for p in config.PRESET_DIR.glob("*.yaml")))
def test_every_preset_is_a_valid_config(preset):
    config.make_config(preset)


def test_every_key_has_one_role_and_the_model_gets_a_frozen_config():
    assert {config.role_of(k) for k in config.TrainConfig.model_fields} == set(config.ROLES)
    assert config.keys_with("runtime") == ("infonce_chunk", "infonce_threads", "eval_batch_size", "device")
    cfg = config.make_config(overrides=["lambda_align=0.3", "infonce_chunk=64"])
    model_cfg = cfg.model_part()
    assert model_cfg.lambda_align == 0.3 and "infonce_chunk" not in type(model_cfg).model_fields
    with pytest.raises(ValidationError):
        model_cfg.lambda_align = 0.5  # frozen


def test_runtime_keys_change_no_run_name_and_no_config_hash():
    from mentor_ray.report.results import config_hash
    from mentor_ray.training.ray_train import run_name

    base = config.make_config(flags={"dataset": "synth-tiny"})
    for override in ("infonce_chunk=64", "infonce_threads=1", "eval_batch_size=128", "device=cpu", "max_epochs=3"):
        other = config.make_config(flags={"dataset": "synth-tiny"}, overrides=[override])
        assert run_name(other) == run_name(base), override
        assert config_hash(other.model_dump()) == config_hash(base.model_dump()), override
    for override in ("lambda_align=0.3", "knn_k=10", "lr=1e-3"):  # these change what is learned
        other = config.make_config(flags={"dataset": "synth-tiny"}, overrides=[override])
        assert run_name(other) != run_name(base) and config_hash(other.model_dump()) != config_hash(base.model_dump())


# --------------------------------------------------------------------------- strict types and upper bounds

BATCH = "a whole number at least 1 and at most 1048576"
RATE = "a finite number greater than 0 and at most 1e+30"
WEIGHT = "a finite number at least 0 and at most 1e+30"


@pytest.mark.parametrize(
    "override, expected",
    [
        ("batch_size=true", f"batch_size = True is not allowed (int); allowed: {BATCH}"),
        ("batch_size=1.5", f"batch_size = 1.5 is not allowed (int); allowed: {BATCH}"),
        ("batch_size=abc", f"batch_size = 'abc' is not allowed (int); allowed: {BATCH}"),
        ("knn_k=40.0", "knn_k = 40.0 is not allowed (int); allowed: a whole number at least 1 and at most 4096"),
        ("seed=18446744073709551616",
         "seed = 18446744073709551616 is not allowed (int); allowed: a whole number at least 0 and at most 4294967295"),
        ("embedding_dim=1e8",
         "embedding_dim = 100000000.0 is not allowed (int); allowed: a whole number at least 1 and at most 4096"),
        ("max_epochs=10000000", "max_epochs = 10000000 is not allowed (int); allowed: a whole number at least 0 and "
                                "at most 1000000"),
        ("lr=nan", f"lr = nan is not allowed (float); allowed: {RATE}"),
        ("lr=.NaN", f"lr = nan is not allowed (float); allowed: {RATE}"),
        ("lr=1e300", f"lr = 1e+300 is not allowed (float); allowed: {RATE}"),  # past float32: torch cannot take it
        ("lambda_g=inf", f"lambda_g = inf is not allowed (float); allowed: {WEIGHT}"),
        ("tau=-.inf", f"tau = -inf is not allowed (float); allowed: {RATE}"),
        ("dropout=true", "dropout = True is not allowed (float); allowed: a finite number at least 0 and less than 1"),
    ],
)
def test_mistyped_or_unbounded_values_are_one_line_with_the_key_value_and_range(override, expected):
    with pytest.raises(ConfigError) as exc:
        config.make_config(overrides=[override])
    assert str(exc.value) == f"override: {expected}"


def test_every_number_key_has_an_upper_bound_and_takes_it():
    for key, field in config.TrainConfig.model_fields.items():
        if field.annotation not in (int, float):
            continue
        top = [(m.le, True) for m in field.metadata if getattr(m, "le", None) is not None]
        top += [(m.lt, False) for m in field.metadata if getattr(m, "lt", None) is not None]
        assert len(top) == 1, f"{key}: a number key without an upper bound"
        bound, inclusive = top[0]
        if not inclusive:
            continue  # dropout < 1: the existing range tests cover it
        assert getattr(config.make_config(overrides=[f"{key}={bound}"]), key) == bound
        above = bound + 1 if field.annotation is int else bound * 2
        with pytest.raises(ConfigError, match=re.escape(f"override: {key} = {above!r} is not allowed")):
            config.make_config(overrides=[f"{key}={above}"])


def test_numpy_whole_numbers_are_whole_numbers():
    np = pytest.importorskip("numpy")
    cfg = config.validate({"seed": np.int64(3), "batch_size": np.int32(64), "lr": np.float32(0.5)})
    assert (cfg.seed, cfg.batch_size, cfg.lr) == (3, 64, 0.5) and type(cfg.seed) is int


def test_text_keys_take_the_text_as_typed():
    assert config.make_config(overrides=["dataset=yes"]).dataset == "yes"  # YAML would read true
    assert config.make_config(overrides=["data_root=~"]).data_root == "~"  # YAML would read null
    assert config.make_config(overrides=["data_root="]).data_root is None  # unset, not the current directory
    assert config.make_config(overrides=["dataset=123"]).dataset == "123"


def test_a_long_value_is_cut_in_the_message():
    with pytest.raises(ConfigError) as exc:
        config.make_config(overrides=["dataset=" + "x" * 1000])
    msg = str(exc.value)
    assert msg.startswith("override: dataset = 'xxx") and "... (1,002 characters) is not allowed" in msg
    assert len(msg) < 600


def test_an_override_value_that_is_not_yaml_is_one_line_naming_it():
    with pytest.raises(ConfigError) as exc:
        config.make_config(overrides=["lr=[1"])
    assert str(exc.value).startswith("override lr=[1: not valid YAML at line 1, column 3")


@pytest.mark.parametrize("text, expected", [
    ("batch_size: yes\n", "batch_size = True is not allowed (int)"),
    ("lr: 1.0e-3\nlr: 1.0e-4\n", "key 'lr' appears twice (lines 1 and 2)"),
    ("- lr\n", "must be a mapping of key: value lines; found a list"),
    ("seed: .nan\n", "seed = nan is not allowed (int)"),
])
def test_a_bad_preset_file_is_one_line_naming_it(tmp_path, text, expected):
    path = tmp_path / "p.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError) as exc:
        config.make_config(str(path))
    assert str(exc.value).startswith(str(path)) and expected in str(exc.value), str(exc.value)


def test_a_preset_name_is_a_name_not_a_path():
    with pytest.raises(ConfigError, match=r"--preset '\.\./\.\./x': not allowed as a name"):
        config.make_config("../../x")


def test_an_unknown_key_is_one_short_line_however_many_keys_the_models_add():
    """Every model adds settings, so "allowed keys" is cut to the closest ones once the list would not fit an
    error line (the fuzz contract: at most 700 characters); a near miss is still named first."""
    from hypothesis import given, settings
    from hypothesis import strategies as st

    from mentor_ray.common.config import TrainConfig, check_keys
    from mentor_ray.common.errors import ALLOWED_CHARS, allowed_keys_text

    @settings(max_examples=80, deadline=None)
    @given(st.text(max_size=60))
    def check(key):
        if key in TrainConfig.model_fields:
            return
        with pytest.raises(ConfigError) as err:
            check_keys([key], "override")
        line = str(err.value)
        assert "\n" not in line and len(line) <= 700, line

    check()
    assert "lambda_f" in str(pytest.raises(ConfigError, check_keys, ["lamda_f"], "override").value).split("(and")[0]
    short = ["a", "b", "c"]
    assert allowed_keys_text(short, "x") == "allowed keys: a, b, c"
    many = [f"key_{i:03d}" for i in range(200)]
    text = allowed_keys_text(many, "key_150")
    assert text.startswith("closest allowed keys: key_150") and len(text) < ALLOWED_CHARS + 150


def test_each_layer_of_settings_is_checked_and_named_by_its_source(tmp_path):
    # a preset's value a flag replaces is still checked (and its file named); a merged rule names the layer
    # that set the key: the file, the flag or the override
    from mentor_ray.common.config import make_config
    from mentor_ray.common.errors import ConfigError

    bad = tmp_path / "p.yaml"
    bad.write_text("max_epochs: .inf\nlr: 0.001\n")
    with pytest.raises(ConfigError, match=r"^.*p\.yaml: max_epochs = inf is not allowed"):
        make_config(str(bad), {"max_epochs": 1})
    with pytest.raises(ConfigError, match=r"^.*p\.yaml: max_epochs = inf"):
        make_config(str(bad), {}, ["lr=0.01"])  # before: "override: max_epochs ..." (the file's value)
    with pytest.raises(ConfigError, match=r"^override: lr = -1"):
        make_config(None, {"max_epochs": 1}, ["lr=-1"])
    with pytest.raises(ConfigError, match=r"^--max-epochs: max_epochs = -3"):
        make_config(None, {"max_epochs": -3})
    good = tmp_path / "g.yaml"
    good.write_text("max_epochs: 5\nlr: 0.001\n")
    cfg = make_config(str(good), {"max_epochs": 2}, ["lr=0.01"])
    assert (cfg.max_epochs, cfg.lr) == (2, 0.01)  # later layers still win


def test_an_override_that_replaces_a_flag_says_so(caplog):
    from mentor_ray.common.config import make_config

    assert make_config(None, {"max_epochs": 2}, ["max_epochs=1"]).max_epochs == 1
    assert "max_epochs=1 overrides --max-epochs 2" in caplog.text
    caplog.clear()
    make_config(None, {"max_epochs": 1}, ["max_epochs=1"])
    assert "overrides" not in caplog.text  # the same value: nothing to say
