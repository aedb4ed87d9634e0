"""Every lab notebook runs start to finish under the smoke profile.

The stored outputs are not compared (they come from a cpu or full run);
only errors count. The files are never written.
"""

import ast

import nbformat
import pytest
from conftest import ROOT
from nbclient import NotebookClient

from cnnbook import labs

LABS = sorted((ROOT / "notebooks").glob("*.ipynb"))


def test_every_notebook_is_a_registered_lab():
    """notebooks/ and cnnbook.labs.LABS name the same labs."""
    on_disk = {p.stem for p in LABS}
    registered = set(labs.LABS)
    assert not on_disk - registered, (
        f"lab notebooks missing from cnnbook.labs.LABS: "
        f"{sorted(on_disk - registered)}"
    )
    assert not registered - on_disk, (
        f"cnnbook.labs.LABS names notebooks that do not exist: "
        f"{sorted(registered - on_disk)}"
    )


@pytest.mark.parametrize("path", LABS, ids=lambda p: p.stem)
def test_first_code_cell_sets_up_its_own_lab(path):
    """cfg = setup("<stem>"): the settings live in the registry only."""
    nb = nbformat.read(path, as_version=4)
    first = next(c for c in nb.cells if c.cell_type == "code")
    calls = [
        node
        for node in ast.walk(ast.parse(first.source))
        if isinstance(node, ast.Call)
        and getattr(node.func, "id", "") == "setup"
    ]
    assert len(calls) == 1, f"{path.name}: one setup() call in the first cell"
    [call] = calls
    entry = labs.LABS[path.stem]
    if entry.profiles:
        assert [ast.literal_eval(a) for a in call.args] == [path.stem]
        assert not call.keywords, f"{path.name}: overrides belong in LABS"
    else:  # the lab trains nothing and has no settings
        assert not call.args and not call.keywords


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
