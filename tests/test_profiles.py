"""Profile selection and the banner every notebook starts with."""

import keras
import pytest

from cnnbook import profiles

SETTINGS = {
    "smoke": {"epochs": 1},
    "cpu": {"epochs": 3},
    "full": {"epochs": 20},
    "gpu": {"epochs": 30},
}


@pytest.fixture(autouse=True)
def float32_afterwards():
    yield
    keras.mixed_precision.set_dtype_policy("float32")


@pytest.mark.parametrize("name", profiles.PROFILES)
def test_environment_chooses_profile(monkeypatch, capsys, name):
    monkeypatch.setenv("CNNBOOK_PROFILE", name)
    cfg = profiles.setup(SETTINGS, seed=3)
    assert cfg.profile == name and cfg.epochs == SETTINGS[name]["epochs"]
    banner = capsys.readouterr().out
    assert f"profile: {name}" in banner
    assert f"keras {keras.__version__}" in banner
    assert "device: CPU" in banner and "backend: tensorflow" in banner


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
    cfg = profiles.setup(SETTINGS)
    assert cfg.epochs == 30 and cfg.replicas == 1
    assert keras.mixed_precision.dtype_policy().name == "mixed_bfloat16"
    assert "precision: mixed_bfloat16" in capsys.readouterr().out
    monkeypatch.setenv("CNNBOOK_PROFILE", "full")
    profiles.setup(SETTINGS)
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


def test_settings_without_gpu_entry_fall_back_to_full(monkeypatch, capsys):
    monkeypatch.setenv("CNNBOOK_PROFILE", "gpu")
    old = {k: v for k, v in SETTINGS.items() if k != "gpu"}
    cfg = profiles.setup(old)
    assert cfg.profile == "gpu" and cfg.epochs == 20
    assert "no 'gpu' entry" in capsys.readouterr().out


def test_bad_profile_is_explained(monkeypatch):
    monkeypatch.setenv("CNNBOOK_PROFILE", "turbo")
    with pytest.raises(ValueError, match="smoke, cpu, full"):
        profiles.current_profile()


def test_settings_must_cover_every_profile(monkeypatch):
    monkeypatch.setenv("CNNBOOK_PROFILE", "smoke")
    with pytest.raises(ValueError, match="full"):
        profiles.setup({"smoke": {}, "cpu": {}})


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
