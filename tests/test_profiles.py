"""Profile selection and the banner every notebook starts with."""

import keras
import pytest

from cnnbook import profiles

SETTINGS = {
    "smoke": {"epochs": 1},
    "cpu": {"epochs": 3},
    "full": {"epochs": 20},
}


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
