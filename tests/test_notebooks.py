"""Every lab notebook runs start to finish under the smoke profile.

The stored outputs are not compared (they come from a cpu or full run);
only errors count. The files are never written.
"""

import nbformat
import pytest
from conftest import ROOT
from nbclient import NotebookClient

LABS = sorted((ROOT / "notebooks").glob("*.ipynb"))


@pytest.mark.slow
@pytest.mark.parametrize("path", LABS, ids=lambda p: p.stem)
def test_lab_runs_under_smoke(path, monkeypatch):
    monkeypatch.setenv("CNNBOOK_PROFILE", "smoke")
    nb = nbformat.read(path, as_version=4)
    stored = [c.get("outputs") for c in nb.cells if c.cell_type == "code"]
    assert any(stored), f"{path.name} has no stored outputs"
    text = "".join(o.get("text", "") for outs in stored for o in outs or [])
    assert "device:" in text and "backend:" in text, (
        f"{path.name}: stored outputs must show the setup banner"
    )
    assert "profile: smoke" not in text, (
        f"{path.name}: store a cpu or full run, not a smoke run"
    )
    stderr = [
        o
        for outs in stored
        for o in outs or []
        if o.get("output_type") == "stream" and o.get("name") == "stderr"
    ]
    assert not stderr, (
        f"{path.name}: library warnings on stderr are stored; "
        "run it with `python -m cnnbook execute`"
    )
    before = path.read_bytes()
    NotebookClient(
        nb,
        timeout=600,
        kernel_name="python3",
        resources={"metadata": {"path": str(path.parent)}},
    ).execute()
    assert path.read_bytes() == before
