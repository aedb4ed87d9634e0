"""The GPU dry run (issue #21, item 5): every lab's ``gpu`` settings (the
networks at the width the gpu profile trains, its mixed precision, the
data-parallel path) trained for two small batches on the CPU, each in a
subprocess, writing records marked as dry runs into a temporary folder.

JAX + ``mixed_bfloat16`` on two virtual devices for every lab; TensorFlow
+ ``mixed_float16`` (the path of the most common free GPUs) for LeNet-5,
AlexNet and ResNet-18.
"""

import fcntl
import json
import os
import subprocess
import sys

import pytest

from cnnbook import labs, records

ROOT = records.REPO
# one worker runs the module, so each backend's subprocess runs once
pytestmark = pytest.mark.xdist_group("gpu-dry-run")


def _expected(stem):
    entry = labs.LABS[stem]
    capped = labs.dry_run_settings(entry, entry.settings("gpu"), 2)
    return [
        name
        for network in entry.networks
        if network.dry_run
        for name in network.names_for(capped)
    ]


def _dry_run(folder, stems, **env):
    """One subprocess for ``stems`` (its imports and the backend start are
    paid once); per lab, its record rows or the error it ended with.

    Kept in ``folder`` for the rest of the session, for every worker:
    pytest-xdist tears a module's fixtures down whenever a worker's queue
    runs dry, ``--dist loadgroup`` still sent this module to both workers,
    and the subprocess takes minutes. The first worker to take the lock runs
    it; the other waits for its result."""
    with open(folder / "lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            return _run_once(folder, stems, env)
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def _run_once(folder, stems, env):
    results = folder / "results"
    kept = folder / "found.json"
    if kept.exists():
        return results, json.loads(kept.read_text())
    done = subprocess.run(
        [sys.executable, "-m", "cnnbook.dry_run", "--results", str(results)]
        + list(stems),
        cwd=ROOT,
        env={**os.environ, "MPLBACKEND": "Agg", **env},
        capture_output=True,
        text=True,
        timeout=1200,
    )
    found = {stem: {"rows": [], "error": None} for stem in stems}
    for line in done.stdout.splitlines():
        kind, _, payload = line.partition(" ")
        if kind == "DRYRUN-NET":
            row = json.loads(payload)
            found[row["lab"]]["rows"].append(row)
        elif kind == "DRYRUN-FAIL":
            row = json.loads(payload)
            found[row["lab"]]["error"] = row["error"]
        elif kind == "DRYRUN":
            found[json.loads(payload)["lab"]]["done"] = True
    for got in found.values():
        if not got.get("done") and got["error"] is None:
            got["error"] = (
                f"exit {done.returncode}, never reached:\n"
                + (done.stdout + done.stderr)[-4000:]
            )
    kept.write_text(json.dumps(found))
    return results, found


def _folder(factory, name):
    # the parent of a worker's basetemp is the session's, shared by workers
    base = factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):
        base = base.parent
    folder = base / f"gpu-dry-run-{name}"
    folder.mkdir(exist_ok=True)
    return folder


TF_LABS = ["ch02-lenet", "ch03-alexnet", "ch05-resnet18"]
DRY_RUN_XLA_FLAGS = (
    "--xla_force_host_platform_device_count=2",
    "--xla_backend_optimization_level=0",
    "--xla_llvm_disable_expensive_passes=true",
)


@pytest.fixture(scope="module")
def jax_runs(tmp_path_factory):
    return _dry_run(
        _folder(tmp_path_factory, "jax"),
        list(labs.LABS),
        KERAS_BACKEND="jax",
        JAX_PLATFORMS="cpu",
        # two virtual devices for the data-parallel path; XLA's CPU
        # backend compiles without LLVM's optimisations (the run checks
        # that every path trains, not how fast)
        XLA_FLAGS=" ".join(DRY_RUN_XLA_FLAGS),
        CNNBOOK_DISTRIBUTE="on",
        CNNBOOK_PRECISION="mixed_bfloat16",
    )


@pytest.fixture(scope="module")
def tf_runs(tmp_path_factory):
    return _dry_run(
        _folder(tmp_path_factory, "tf"),
        TF_LABS,
        KERAS_BACKEND="tensorflow",
        CNNBOOK_PRECISION="mixed_float16",
    )


def _check(stem, results, rows, policy, replicas):
    assert [r["model"] for r in rows] == _expected(stem)
    gpu = labs.LABS[stem].settings("gpu")
    for row in rows:
        assert (row["policy"], row["replicas"]) == (policy, replicas)
        record = records.load(row["record"])
        assert row["record"].startswith(str(results))
        assert record["dry_run"] is True and record["profile"] == "gpu"
        for kept in ("width", "input_size", "depths"):
            if kept in gpu:  # the gpu profile's networks, not smaller ones
                value = gpu[kept]
                expect = list(value) if isinstance(value, tuple) else value
                assert record["settings"][kept] == expect
        batch = record["batch_size"]
        assert record["data"]["train_images"] == 2 * batch
        assert record["data"]["test_images"] == batch


@pytest.mark.parametrize("stem", list(labs.LABS))
def test_gpu_dry_run_jax_bfloat16_two_devices(stem, jax_runs):
    results, found = jax_runs
    assert found[stem]["error"] is None, found[stem]["error"]
    _check(stem, results, found[stem]["rows"], "mixed_bfloat16", 2)


@pytest.mark.parametrize("stem", TF_LABS)
def test_gpu_dry_run_tensorflow_float16(stem, tf_runs):
    results, found = tf_runs
    assert found[stem]["error"] is None, found[stem]["error"]
    _check(stem, results, found[stem]["rows"], "mixed_float16", 1)


def test_dry_run_refuses_the_book_folder():
    done = subprocess.run(
        [sys.executable, "-m", "cnnbook.dry_run", "ch02-lenet"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2 and "--results" in done.stderr
