"""``python -m cnnbook bench`` and the timing helpers of cnnbook.bench."""

import copy
import json

import keras
import numpy as np
import pytest

from cnnbook import bench, records


def _fake_prepare(entry):
    """Stands in for building and compiling: a one-layer model."""
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)])
    return model, 2_500_000


def _no_warm_up(model, entry, data):
    x, _ = data
    assert x.shape[1:] == model.input_shape[1:]


def _timed_in_order(names, rounds):
    """Run the bench with the timing replaced by a log of the calls; the
    n-th timing returns the rate n and busy share n/100."""
    calls = []

    def measure(model, entry, data, seconds):
        calls.append(entry.name)
        return float(len(calls)), len(calls) / 100

    found = bench.run(
        names,
        rounds=rounds,
        seconds=0.5,
        batches=1,
        prepare=_fake_prepare,
        warm_up=_no_warm_up,
        measure=measure,
    )
    return found, calls


def test_bench_times_networks_interleaved_round_by_round():
    names = ["resnet18", "mobilenet_v2", "lenet5"]
    found, calls = _timed_in_order(names, rounds=3)
    assert calls == names * 3
    assert bench.schedule(names, 2) == [
        (1, "resnet18"),
        (1, "mobilenet_v2"),
        (1, "lenet5"),
        (2, "resnet18"),
        (2, "mobilenet_v2"),
        (2, "lenet5"),
    ]
    # each network's rates are its own calls: the 1st, 4th, 7th, ...
    assert [t.entry.name for t in found] == names
    assert found[0].rates == [1.0, 4.0, 7.0]
    assert found[1].busy == [0.02, 0.05, 0.08]
    assert found[2].entry.lab == "ch02-lenet"


def _record(rounds=2):
    found, _ = _timed_in_order(["lenet5", "mobilenet_v2"], rounds=rounds)
    return bench.make_record(found, rounds, 0.5, commit="abc123")


def test_bench_record_follows_its_schema_and_is_read_back(tmp_path):
    record = _record()
    assert record["schema"] == bench.SCHEMA
    assert {"keras", "numpy", "python", record["backend"]} <= set(
        record["versions"]
    )
    path = bench.write(record, tmp_path / "bench")
    assert path.name == f"cpu.{record['backend']}.json"
    assert bench.find(f"cpu.{record['backend']}", tmp_path) == record
    [lenet, mobilenet] = record["networks"]
    assert lenet["images_per_second"] == [1.0, 3.0]
    assert mobilenet["model"] == "mobilenet_v2_small_w0.5"


@pytest.mark.parametrize(
    "spoil, told",
    [
        (lambda r: r.pop("commit"), "'commit' is a required property"),
        (lambda r: r.update(rounds=0), "rounds must be a whole number"),
        (
            lambda r: r["networks"][0]["images_per_second"].pop(),
            "networks/0/images_per_second: 1 values for 2 rounds",
        ),
        (
            lambda r: r["networks"][1].pop("macs"),
            "networks/1: 'macs' is a required property",
        ),
        (
            lambda r: r.update(schema="cnnbook.run/1"),
            "expected 'cnnbook.bench",
        ),
        (lambda r: r.update(created="yesterday"), "is not a time"),
    ],
)
def test_a_corrupt_bench_record_fails_with_a_clear_message(
    tmp_path, spoil, told
):
    record = copy.deepcopy(_record())
    spoil(record)
    with pytest.raises(bench.BenchError, match="bench record") as raised:
        bench.validate(record)
    assert told in str(raised.value)
    path = tmp_path / "bench" / "cpu.tensorflow.json"
    path.parent.mkdir()
    path.write_text(json.dumps(record))
    with pytest.raises(bench.BenchError, match="cpu.tensorflow.json"):
        bench.find("cpu.tensorflow", tmp_path)
    with pytest.raises(bench.BenchError):
        bench.write(record, tmp_path / "out")


def test_bench_role_quotes_the_median_and_the_round_extremes(tmp_path):
    from cnnbook import sphinxext

    record = _record(rounds=3)
    record["networks"][0]["images_per_second"] = [900.0, 1500.5, 1200.25]
    record["networks"][0]["cores_busy"] = [0.5, 0.25, 0.75]
    bench.write(record, tmp_path / "bench")
    key = f"cpu.{record['backend']}"

    def quote(text):
        return sphinxext.resolve_bench(f"{key}/{text}", tmp_path)

    assert quote("lenet5:images_per_second") == "1,200"
    assert quote("lenet5:images_per_second.min") == "900"
    assert quote("lenet5:images_per_second.max") == "1,500"
    assert quote("lenet5:cores_busy") == "50.00%"
    parameters = record["networks"][0]["parameters"]
    assert quote("lenet5:parameters") == f"{parameters:,}"
    assert quote("lenet5:batch_size") == "64"
    assert quote("lenet5:macs_millions") == "2.50"  # the stand-in's
    assert quote("mobilenet_v2:rounds") == "3"
    assert quote("mobilenet_v2:seconds") == "0.5"
    assert (
        sphinxext.resolve_bench(f"{key}:date", tmp_path)
        == (record["created"][:10])
    )
    with pytest.raises(bench.BenchError, match="resnet99"):
        quote("resnet99:images_per_second")
    with pytest.raises(records.RecordError, match="no field"):
        quote("lenet5:accuracy")
    with pytest.raises(LookupError, match="no bench record"):
        sphinxext.resolve_bench("gpu.jax/lenet5:rounds", tmp_path)


def test_bench_rejects_unknown_networks():
    with pytest.raises(ValueError, match="lenet7"):
        bench.run(["lenet7"])


def test_bench_cli_refuses_unknown_networks(capsys):
    from cnnbook.__main__ import main

    assert main(["bench", "lenet5", "lenet7"]) == 2
    told = capsys.readouterr().err
    assert "lenet7" in told and "mobilenet_v2" in told


def test_bench_cli_prints_a_table_and_stores_a_record(
    capsys, tmp_path, monkeypatch
):
    """LeNet-5, the one network built for real, timed briefly."""
    from cnnbook.__main__ import main

    out = tmp_path / "mine"
    argv = ["bench", "lenet5", "--rounds", "2", "--seconds", "0.2"]
    assert main([*argv, "--out", str(out)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert "2 rounds of 0.2 s a network, interleaved" in lines[0]
    assert "cores busy" in lines[1]
    assert lines[3].split()[:4] == ["lenet5", "61,706", "416,520", "64"]
    [path] = out.glob("*.json")
    [lenet] = bench.load(path)["networks"]
    assert len(lenet["images_per_second"]) == 2
    assert all(rate > 0 for rate in lenet["images_per_second"])


def test_forward_seconds_is_a_median_of_positive_times():
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2)])
    batch = np.zeros((3, 4), np.float32)
    assert bench.forward_seconds(model, batch, repeats=3) > 0
