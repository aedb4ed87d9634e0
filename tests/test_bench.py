"""``python -m cnnbook bench`` and the timing helpers of cnnbook.bench."""

import keras
import numpy as np
import pytest

from cnnbook import bench


def test_bench_measures_a_network():
    [(name, params, batch, rate, busy)] = bench.run(
        ["lenet5"], seconds=0.2, batches=4
    )
    assert (name, params, batch) == ("lenet5", 61_706, 64)
    assert rate > 0 and 0 < busy <= 1.05


def test_bench_rejects_unknown_networks():
    with pytest.raises(ValueError, match="lenet7"):
        bench.run(["lenet7"])


def test_bench_cli_prints_one_row_a_network(capsys):
    from cnnbook.__main__ import main

    assert main(["bench", "lenet5", "--seconds", "0.2"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert "cores busy" in lines[1]
    assert lines[2].split()[:3] == ["lenet5", "61,706", "64"]


def test_forward_seconds_is_a_median_of_positive_times():
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2)])
    batch = np.zeros((3, 4), np.float32)
    assert bench.forward_seconds(model, batch, repeats=3) > 0
