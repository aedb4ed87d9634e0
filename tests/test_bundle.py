"""The offline bundle for GPU nodes: built here, installed without an index,
one lab run under smoke on the CPU with the JAX backend, summary printed.

The "node" is simulated: a fresh interpreter whose only third-party
packages are the ones a JAX node provides (jax, jaxlib, numpy, ...), made
visible through PYTHONPATH, and pip without any configured index.
"""

import importlib.metadata
import json
import os
import pathlib
import platform
import sys
import tarfile
import time

import pytest
from conftest import run_cli

from cnnbook import bundle

LAB = "ch02-lenet"


def _node_site(folder):
    """Links to the node-provided packages of this environment."""
    folder.mkdir()
    for name in bundle.NODE_PROVIDES:
        dist = importlib.metadata.distribution(name)
        tops = {pathlib.Path(str(f)).parts[0] for f in dist.files or []}
        for top in tops:
            source = pathlib.Path(dist.locate_file(top))
            if top.endswith(".pth") or top == ".." or not source.exists():
                continue
            target = folder / top
            if not target.exists():
                target.symlink_to(source)
    return folder


@pytest.mark.slow
@pytest.mark.skipif(
    sys.platform != "linux" or platform.machine() != "x86_64",
    reason="the bundle is built for manylinux x86_64",
)
def test_bundle_installs_offline_and_runs_labs(tmp_path):
    python = "{}.{}".format(*sys.version_info[:2])
    start = time.perf_counter()
    built = run_cli(
        "bundle",
        "--out",
        tmp_path / "dist",
        "--python",
        python,
        "--labs",
        LAB,
        "--fast",
        timeout=600,
    )
    assert built.returncode == 0, built.stderr[-3000:]
    archive = next((tmp_path / "dist").glob("*.tar.xz"))
    build_seconds = time.perf_counter() - start
    with tarfile.open(archive) as tar:
        tar.extractall(tmp_path / "node", filter="data")
    here = tmp_path / "node" / bundle.NAME
    manifest = json.loads((here / "BUNDLE.json").read_text())
    assert manifest["labs"] == [LAB] and manifest["datasets"] == ["mnist"]
    wheels = {p.name.split("-")[0].lower() for p in here.glob("wheels/*")}
    assert {"keras", "matplotlib", "nbclient", "ipykernel"} <= wheels
    assert not {"jax", "jaxlib", "numpy", "debugpy"} & wheels

    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("PIP_", "VIRTUAL_ENV", "PYTHON"))
    }
    env.update(
        PYTHON=getattr(sys, "_base_executable", sys.executable),
        SYSTEM_SITE_PACKAGES="0",
        PYTHONPATH=str(_node_site(tmp_path / "node-site")),
        PIP_CONFIG_FILE=os.devnull,  # no index, no find-links but ours
        KERAS_BACKEND="jax",
        JAX_PLATFORMS="cpu",
        CNNBOOK_DATA=str(tmp_path / "elsewhere"),  # run.sh sets its own
    )
    results = tmp_path / "results"
    import subprocess

    done = subprocess.run(
        ["bash", str(here / "run.sh"), "--profile", "smoke"]
        + ["--results", str(results)],
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert done.returncode == 0, (done.stdout + done.stderr)[-4000:]
    executed = (results / "notebooks" / f"{LAB}.ipynb").read_text()
    assert "profile: smoke" in executed and "backend: jax" in executed
    assert "test accuracy" in executed
    table = done.stdout.split("\n\n")[-2]
    print(table)
    assert table.splitlines()[0].split()[:3] == ["lab", "model", "status"]
    assert LAB in table and " ok " in table
    summary = json.loads((results / "summary.json").read_text())
    assert summary and all(row["status"] == "ok" for row in summary)
    assert (results / "summary.csv").exists()
    print(
        f"bundle built in {build_seconds:.0f} s "
        f"({archive.stat().st_size / 1e6:.1f} MB with --fast)"
    )


def test_summary_reads_run_records_tolerantly(tmp_path):
    runs = tmp_path / "runs"
    runs.mkdir()
    (runs / "a.json").write_text(
        json.dumps(
            {
                "schema": 1,
                "lab": "ch02-lenet",
                "model": "lenet5",
                "test_accuracy": 0.9931,
                "seconds": 41.5,
                "images_per_second": 29000.0,
            }
        )
    )
    (runs / "b.json").write_text(json.dumps({"model": "resnet18"}))
    (runs / "broken.json").write_text("{not json")
    records = bundle.read_records(runs)
    assert [r.get("model") for r in records] == ["lenet5", "resnet18"]
    now = time.time()
    labs = [
        ("ch01-layer-arithmetic", True, now - 600, now - 590, 10.0),
        ("ch02-lenet", True, now - 590, now - 500, 88.0),
        # b.json names no lab: it belongs to the lab running then
        ("ch05-resnet18", False, now - 100, now + 100, 95.0),
    ]
    rows = bundle.summarise(labs, records, "gpu")
    assert [(r["lab"], r["model"]) for r in rows] == [
        ("ch01-layer-arithmetic", ""),
        ("ch02-lenet", "lenet5"),
        ("ch05-resnet18", "resnet18"),
    ]
    assert rows[0]["seconds"] == 10.0  # no record: the lab's own time
    assert rows[1]["target"] == 0.993 and rows[1]["test_accuracy"] == 0.9931
    assert rows[2]["test_accuracy"] is None
    table = bundle.format_table(rows)
    assert "99.31%" in table and "99.3% ok" in table and "29,000" in table
    assert "FAILED" in table


def test_every_lab_has_a_gpu_target():
    from cnnbook import gpu_targets, labs

    assert [p.stem for p in bundle._lab_paths([])] == list(labs.LABS)
    assert (
        set(labs.LABS)
        == set(gpu_targets.TARGETS)
        == set(gpu_targets.ESTIMATED_SECONDS)
    )
    estimates = list(gpu_targets.ESTIMATED_SECONDS.values())
    assert max(estimates) <= gpu_targets.LAB_SECONDS
    assert sum(estimates) <= gpu_targets.TOTAL_SECONDS
    assert gpu_targets.target("ch05-resnet18") == 0.945
    with pytest.raises(bundle.BundleError, match="ch99-nothing"):
        bundle._lab_paths(["ch99-nothing"])


def test_every_training_lab_has_gpu_settings():
    """A lab with a gpu target trains registered networks under its own
    gpu settings; a lab without networks promises no accuracy."""
    from cnnbook import labs

    for stem, entry in labs.LABS.items():
        if entry.gpu.target_accuracy is not None:
            assert entry.networks, f"{stem}: a target but no network"
        if entry.networks:
            assert entry.gpu.trains, stem
            gpu = entry.settings("gpu")
            assert gpu and gpu != entry.settings("full"), stem
            for network in entry.networks:
                assert network.names_for(gpu), (stem, network.pattern)


def test_datasets_used_finds_loaders_and_splits(tmp_path):
    from cnnbook import bundle

    lab = tmp_path / "lab.ipynb"
    lab.write_text('{"source": ["split = data.split(\\"mnist\\", 10, 10)"]}')
    other = tmp_path / "other.ipynb"
    other.write_text('{"source": ["data.load_fashion_mnist()"]}')
    assert bundle.datasets_used([lab]) == ["mnist"]
    assert bundle.datasets_used([other]) == ["fashion_mnist"]
    assert bundle.datasets_used([lab, other]) == ["mnist", "fashion_mnist"]
