"""Profile selection, the lab registry's typed settings and the banner
every notebook starts with."""

import dataclasses
import re

import keras
import pytest

from cnnbook import labs, profiles


@pytest.fixture(autouse=True)
def float32_afterwards():
    yield
    keras.mixed_precision.set_dtype_policy("float32")


@pytest.mark.parametrize("name", profiles.PROFILES)
def test_environment_chooses_profile(monkeypatch, capsys, name):
    monkeypatch.setenv("CNNBOOK_PROFILE", name)
    cfg = profiles.setup("ch02-lenet", seed=3)
    declared = labs.LABS["ch02-lenet"].profiles[name]
    assert cfg.profile == name and cfg.seed == 3
    assert cfg.settings() == declared
    banner = capsys.readouterr().out
    assert f"profile: {name}" in banner
    assert f"keras {keras.__version__}" in banner
    assert "device: CPU" in banner and "backend: tensorflow" in banner
    # the settings are shown as a table, not as a dict
    row = rf"\|\s*epochs\s*\|\s*{declared['epochs']}\s*\|"
    assert re.search(row, banner), banner


def test_settings_are_the_notebooks_values(monkeypatch):
    """Spot checks of values moved out of the notebooks unchanged."""
    monkeypatch.setenv("CNNBOOK_PROFILE", "cpu")
    cfg = profiles.setup("ch05-resnet18")
    assert (cfg.width, cfg.train_size, cfg.epochs, cfg.lr) == (
        16,
        20_000,
        5,
        0.1,
    )
    monkeypatch.setenv("CNNBOOK_PROFILE", "full")
    cfg = profiles.setup("ch06-googlenet")
    assert cfg.ablation_seeds == (0, 1, 2) and cfg.width == 0.25


def test_overrides_and_frozen(monkeypatch):
    monkeypatch.setenv("CNNBOOK_PROFILE", "cpu")
    cfg = profiles.setup("ch05-resnet18", epochs=2, train_size=64)
    assert (cfg.epochs, cfg.train_size, cfg.batch_size) == (2, 64, 128)
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.epochs = 3
    again = cfg.replace(epochs=4)
    assert again.epochs == 4 and cfg.epochs == 2
    with pytest.raises(labs.SettingsError, match="should be a int"):
        cfg.replace(epochs="4")


def test_unknown_settings_name_the_valid_ones(monkeypatch):
    monkeypatch.setenv("CNNBOOK_PROFILE", "smoke")
    with pytest.raises(labs.SettingsError) as caught:
        profiles.setup("ch05-resnet18", epoch=5)
    message = str(caught.value)
    assert "epoch" in message and "warmup_epochs" in message
    assert "train_size" in message and "ch05-resnet18" in message
    with pytest.raises(labs.SettingsError, match="should be a bool"):
        profiles.setup("ch05-resnet18", mirror=1)
    with pytest.raises(KeyError, match="ch02-lenet"):
        profiles.setup("ch99-nothing")


def test_setup_without_a_lab(monkeypatch):
    monkeypatch.setenv("CNNBOOK_PROFILE", "smoke")
    cfg = profiles.setup(seed=4)
    assert (cfg.lab, cfg.profile, cfg.seed, cfg.replicas) == (
        None,
        "smoke",
        4,
        1,
    )
    assert cfg.settings() == {}
    with pytest.raises(labs.SettingsError, match="without a lab"):
        profiles.setup(epochs=3)
    # the exercises' form: every profile empty
    assert profiles.setup({"smoke": {}, "cpu": {}, "full": {}}).lab is None
    with pytest.raises(labs.SettingsError, match="cnnbook.labs"):
        profiles.setup({"smoke": {"epochs": 1}, "cpu": {}, "full": {}})


def test_registry_refuses_undeclared_settings(monkeypatch):
    good = labs.LABS["ch02-lenet"]
    typo = {p: {**v, "epoch": 1} for p, v in good.profiles.items()}
    monkeypatch.setitem(
        labs.LABS, "ch02-lenet", dataclasses.replace(good, profiles=typo)
    )
    with pytest.raises(labs.SettingsError, match="epoch.*declare them"):
        labs.validate_registry()
    uneven = dict(good.profiles)
    uneven["gpu"] = {k: v for k, v in uneven["gpu"].items() if k != "lr"}
    monkeypatch.setitem(
        labs.LABS, "ch02-lenet", dataclasses.replace(good, profiles=uneven)
    )
    with pytest.raises(labs.SettingsError, match="'gpu' names"):
        labs.validate_registry()


def test_dry_run_caps_the_settings(monkeypatch, capsys):
    monkeypatch.setenv("CNNBOOK_PROFILE", "gpu")
    monkeypatch.setenv("CNNBOOK_PRECISION", "mixed_bfloat16")
    monkeypatch.setenv(labs.DRY_RUN_VAR, "1")
    cfg = profiles.setup("ch06-googlenet")
    assert cfg.dry_run and cfg.width == 1.0  # the paper's width stays
    assert cfg.batch_size == labs.DRY_RUN_BATCH
    assert cfg.train_size == 2 * cfg.batch_size == cfg.ablation_train_size
    assert cfg.test_size == cfg.batch_size
    assert cfg.epochs == cfg.ablation_epochs == 1
    assert cfg.ablation_seeds == (0,)
    assert "dry run" in capsys.readouterr().out


def test_detects_cpu_without_override(monkeypatch):
    monkeypatch.delenv("CNNBOOK_PROFILE", raising=False)
    assert profiles.current_profile() == "cpu"  # CI and this machine: no GPU


def test_detects_gpu_without_override(monkeypatch):
    monkeypatch.delenv("CNNBOOK_PROFILE", raising=False)
    monkeypatch.setattr(profiles, "_gpu_names", lambda: ["NVIDIA H100"])
    assert profiles.current_profile() == "gpu"


def test_gpu_profile_trains_in_mixed_precision(monkeypatch, capsys):
    monkeypatch.setenv("CNNBOOK_PROFILE", "gpu")
    monkeypatch.setattr(profiles, "_compute_capabilities", lambda: [(9, 0)])
    cfg = profiles.setup("ch02-lenet")
    assert cfg.epochs == 30 and cfg.replicas == 1
    assert keras.mixed_precision.dtype_policy().name == "mixed_bfloat16"
    assert "precision: mixed_bfloat16" in capsys.readouterr().out
    monkeypatch.setenv("CNNBOOK_PROFILE", "full")
    profiles.setup("ch02-lenet")
    assert keras.mixed_precision.dtype_policy().name == "float32"


@pytest.mark.parametrize(
    "capabilities, policy",
    [([(8, 0), (9, 0)], "mixed_bfloat16"), ([(7, 0)], "mixed_float16")],
)
def test_precision_follows_the_gpu(monkeypatch, capabilities, policy):
    monkeypatch.delenv("CNNBOOK_PRECISION", raising=False)
    monkeypatch.setattr(
        profiles, "_compute_capabilities", lambda: capabilities
    )
    assert profiles.precision("gpu") == policy
    assert profiles.precision("full") == "float32"
    monkeypatch.setenv("CNNBOOK_PRECISION", "float32")
    assert profiles.precision("gpu") == "float32"
    monkeypatch.setenv("CNNBOOK_PRECISION", "half")
    with pytest.raises(ValueError, match="mixed_bfloat16"):
        profiles.precision("gpu")


def test_bad_profile_is_explained(monkeypatch):
    monkeypatch.setenv("CNNBOOK_PROFILE", "turbo")
    with pytest.raises(ValueError, match="smoke, cpu, full"):
        profiles.current_profile()


def test_setup_seeds_reproducibly(monkeypatch):
    monkeypatch.setenv("CNNBOOK_PROFILE", "smoke")
    profiles.setup(seed=7)
    a = keras.random.normal((3,), seed=None)
    profiles.setup(seed=7)
    b = keras.random.normal((3,), seed=None)
    assert (
        keras.ops.convert_to_numpy(a).tolist()
        == keras.ops.convert_to_numpy(b).tolist()
    )


def test_smoke_runs_the_steps_eagerly_and_other_profiles_do_not(
    monkeypatch,
):
    """A lab under ``smoke`` runs TensorFlow's steps op by op (tracing was
    most of a smoke run's time); an exercise (setup() without a lab) and
    ``$CNNBOOK_SMOKE_EAGER=0`` keep graphs; under ``cpu`` setup() leaves
    the switch alone."""
    import keras
    import tensorflow as tf

    from cnnbook import machine, setup

    if keras.backend.backend() != "tensorflow":
        pytest.skip("the switch is TensorFlow's")
    before = tf.config.functions_run_eagerly()
    try:
        tf.config.run_functions_eagerly(False)
        monkeypatch.setenv("CNNBOOK_PROFILE", "cpu")
        setup()
        assert not tf.config.functions_run_eagerly()
        setup("ch02-lenet")
        assert not tf.config.functions_run_eagerly()
        monkeypatch.setenv(machine.EAGER_ENV, "0")
        monkeypatch.setenv("CNNBOOK_PROFILE", "smoke")
        setup("ch02-lenet")
        assert not tf.config.functions_run_eagerly()
        monkeypatch.delenv(machine.EAGER_ENV)
        setup()  # an exercise notebook: hundreds of steps, traced
        assert not tf.config.functions_run_eagerly()
        setup("ch02-lenet")
        assert tf.config.functions_run_eagerly()
    finally:
        tf.config.run_functions_eagerly(before)
