"""The GPU install (``make venv GPU=1``) resolves with every other pin.

Resolution only: pip's dry run reads each wheel's metadata, from the index's
metadata files (PEP 658) where it serves them and otherwise through HTTP
range requests into the wheel (``fast-deps``), so no CUDA wheel (cuDNN alone
is 700 MB) is downloaded. Needs the package index, like `make venv`; it
fails, saying so, without it (CI must prove the resolution).
"""

import os
import re
import socket
import subprocess
import sys

PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)(\[[^\]]+\])?==(\S+)$")


def _canonical(name):
    return re.sub(r"[-_.]+", "-", name).lower()


def _pins(path):
    pins = {}
    for line in path.read_text().splitlines():
        line = line.split("#")[0].strip()
        if not line:
            continue
        match = PIN.match(line)
        assert match, f"{path.name}: not an exact pin: {line!r}"
        pins[_canonical(match.group(1))] = match.group(3)
    return pins


def test_gpu_pins_agree_with_the_cpu_pins(root):
    cpu = _pins(root / "requirements.txt")
    gpu = _pins(root / "requirements-gpu.txt")
    assert gpu["tensorflow"] == cpu.pop("tensorflow-cpu")
    for name in set(cpu) & set(gpu):  # jax, with its cuda12 extra
        assert gpu[name] == cpu[name], name
    assert {"jax-cuda12-plugin", "nvidia-cudnn-cu12"} <= set(gpu)
    assert gpu["jax-cuda12-plugin"] == cpu["jaxlib"]


def _index_reachable(host="pypi.org"):
    try:
        socket.create_connection((host, 443), timeout=10).close()
        return True
    except OSError:
        return False


def test_gpu_requirements_resolve_with_the_rest(root, tmp_path):
    assert _index_reachable(), (
        "pypi.org is not reachable: this test needs the package index, "
        "as `make venv` does"
    )
    cpu = root / "requirements.txt"
    without_cpu_tf = tmp_path / "requirements-cpu-less-tf.txt"
    without_cpu_tf.write_text(
        "".join(
            line + "\n"
            for line in cpu.read_text().splitlines()
            if not re.match(r"(?i)tensorflow[-_]cpu==", line)
        )
    )
    report, log = tmp_path / "report.json", tmp_path / "pip.log"
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "--dry-run",
            "--ignore-installed",
            "--use-feature=fast-deps",
            "--quiet",
            "--disable-pip-version-check",
            "--report",
            str(report),
            "--log",
            str(log),
            "-c",
            str(without_cpu_tf),
            "-r",
            str(root / "requirements-gpu.txt"),
        ],
        capture_output=True,
        text=True,
        timeout=600,
        env=dict(os.environ, PIP_NO_INPUT="1"),
    )
    assert done.returncode == 0, done.stderr[-3000:]
    import json

    resolved = {
        _canonical(item["metadata"]["name"]): item["metadata"]["version"]
        for item in json.loads(report.read_text())["install"]
    }
    pinned = _pins(without_cpu_tf) | _pins(root / "requirements-gpu.txt")
    unpinned = sorted(set(resolved) - set(pinned))
    assert not unpinned, f"resolved but pinned nowhere: {unpinned}"
    moved = {n: (pinned[n], v) for n, v in resolved.items() if pinned[n] != v}
    assert not moved, f"versions differ from the pins: {moved}"
    assert {"tensorflow", "jax-cuda12-plugin", "nvidia-cudnn-cu12"} <= set(
        resolved
    )
    downloads = re.findall(
        r"Downloading (\S+\.whl) \(([\d.]+) MB\)", log.read_text()
    )
    big = [name for name, mb in downloads if float(mb) > 20]
    assert not big, f"wheels downloaded in full: {big}"
