"""Running the labs on a GPU node without internet: the bundle and its runner.

``python -m cnnbook bundle`` (``make bundle``) writes one ``.tar.xz``
archive holding everything the labs need that a JAX GPU node lacks:

* ``wheels/``: the wheels of Keras, matplotlib and the notebook-execution
  stack (nbclient, ipykernel, ...) for one Python version and platform, at
  the versions ``requirements.txt`` pins, and ``requirements-bundle.txt``
  listing exactly them;
* ``cnnbook/``, ``notebooks/``: the helper package and the lab notebooks;
* ``data/``: the dataset cache (``mnist.npz``, ``fashion_mnist.npz``);
  :mod:`cnnbook.data` checks every array's SHA-256 when a lab loads it;
* ``run.sh``: the one command to run on the node, and ``BUNDLE.json``.

The node provides JAX with CUDA (jax, jaxlib, the CUDA plugin), numpy,
ml_dtypes, opt_einsum and scipy (:data:`NODE_PROVIDES`): they are not in the
archive. Nor are packages the labs never load (:data:`NOT_NEEDED`). To keep
the archive small (under 55 MB), the wheels are stored uncompressed inside
(a wheel is a zip file; pip installs it the same) so that xz compresses
them together with the data.

On the node::

    tar xf cnnbook-bundle-py312-manylinux_2_28_x86_64.tar.xz
    cnnbook-bundle/run.sh --profile gpu --results ~/cnnbook-results

``run.sh`` makes a virtual environment that sees the node's packages
(``--system-site-packages``), installs the wheels offline (``--no-index``),
then runs ``python -m cnnbook run-labs``: every lab notebook in a fresh
kernel, the executed notebooks written to ``RESULTS/notebooks/``, the run
records of :mod:`cnnbook.train` to ``RESULTS/runs/``, and a summary table
(``RESULTS/summary.csv`` too).
"""

from __future__ import annotations

import csv
import json
import lzma
import os
import pathlib
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
import zipfile

from tabulate import tabulate

from cnnbook import gpu_targets
from cnnbook.labs import LABS

ROOT = pathlib.Path(__file__).resolve().parent.parent
NAME = "cnnbook-bundle"
# What the labs import beyond the standard library and the node's packages.
TOP_LEVEL = (
    "keras",
    "matplotlib",
    "nbclient",
    "nbformat",
    "ipykernel",
    "tabulate",  # the package's tables (cnnbook.tables, setup's settings)
    "jsonschema",  # run records are validated before they are written
)
# The JAX GPU node's own packages, used through --system-site-packages.
NODE_PROVIDES = (
    "jax",
    "jaxlib",
    "numpy",
    "ml-dtypes",
    "opt-einsum",
    "scipy",
)
# Declared dependencies that executing the labs never imports; left out to
# keep the archive small (installed with --no-deps, so pip does not ask).
NOT_NEEDED = {
    "debugpy": "ipykernel's debugger; a notebook run never attaches one",
    "jedi": "IPython's tab completion",
    "parso": "jedi's parser",
    "h5py": "Keras's .h5/.keras weight files; the labs save no model",
    "tzdata": "time zones: Linux has its own (/usr/share/zoneinfo)",
}
# Their pure-Python wheels: the compiled ones only add speed-ups the labs do
# not need (fontTools' compiled wheel is four times the size).
PREFER_PURE = ("fonttools", "wcwidth")
DATASETS = {"mnist": "load_mnist", "fashion_mnist": "load_fashion_mnist"}
RUN_SH = """\
#!/usr/bin/env bash
# Install this bundle offline, then run the labs:
#   run.sh [--profile gpu] [--results DIR] [--labs ch02-lenet,...]
# PYTHON picks the interpreter (default python3; it must be Python {python}
# with the node's JAX and numpy); VENV the environment made from it.
set -euo pipefail
here=$(cd "$(dirname "${{BASH_SOURCE[0]}}")" && pwd)
python=${{PYTHON:-python3}}
venv=${{VENV:-$here/.venv}}
want={python}
have=$("$python" -c 'import sys; print("%d.%d" % sys.version_info[:2])')
if [ "$have" != "$want" ]; then
  echo "run.sh: this bundle is for Python $want, $python is $have;" \\
    "set PYTHON=python$want" >&2
  exit 2
fi
if [ ! -f "$venv/.cnnbook-installed" ]; then
  site=--system-site-packages
  [ "${{SYSTEM_SITE_PACKAGES:-1}}" = 0 ] && site=
  "$python" -m venv $site "$venv"
  "$venv/bin/python" -m pip install --quiet --disable-pip-version-check \\
    --no-index --no-deps --find-links "$here/wheels" \\
    -r "$here/requirements-bundle.txt"
  purelib=$("$venv/bin/python" -c \\
    'import sysconfig; print(sysconfig.get_paths()["purelib"])')
  echo "$here" > "$purelib/cnnbook-bundle.pth"
  touch "$venv/.cnnbook-installed"
fi
export CNNBOOK_DATA="$here/data"
export KERAS_BACKEND=${{KERAS_BACKEND:-jax}}
exec "$venv/bin/python" -m cnnbook run-labs --notebooks "$here/notebooks" "$@"
"""


class BundleError(RuntimeError):
    """The bundle cannot be built as asked; the message says why."""


def _canonical(name):
    return re.sub(r"[-_.]+", "-", name).lower()


def _pip(*args, quiet=True):
    command = [sys.executable, "-m", "pip", *args]
    if quiet:
        command.insert(3, "--quiet")
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode:
        said = [
            line
            for line in (done.stderr or done.stdout).splitlines()
            if not line.startswith("WARNING: Location")
        ]
        raise BundleError(f"pip {args[0]} failed:\n" + "\n".join(said[-40:]))
    return done


def platform_tags(platform):
    """``platform`` and the older tags its machines also run.

    pip takes ``--platform`` literally: a node with glibc 2.28 also runs
    wheels tagged manylinux_2_17 (manylinux2014) and older.
    """
    match = re.fullmatch(r"manylinux_2_(\d+)_(\w+)", platform)
    if not match:
        return [platform]
    glibc, arch = int(match.group(1)), match.group(2)
    tags = [f"manylinux_2_{minor}_{arch}" for minor in range(glibc, 4, -1)]
    legacy = {17: "manylinux2014", 12: "manylinux2010", 5: "manylinux1"}
    tags += [f"{name}_{arch}" for m, name in legacy.items() if m <= glibc]
    return tags


def _target_options(python, platform):
    digits = python.replace(".", "")
    platforms = []
    for tag in platform_tags(platform):
        platforms += ["--platform", tag]
    return [
        "--only-binary=:all:",
        "--python-version",
        python,
        "--implementation",
        "cp",
        "--abi",
        f"cp{digits}",
        *platforms,
    ]


def resolve(python, platform, constraints=ROOT / "requirements.txt"):
    """``{name: version}`` of every wheel the bundle holds.

    Resolved by pip for the target interpreter and platform (metadata only,
    nothing is downloaded), constrained to the pins of ``requirements.txt``,
    less :data:`NODE_PROVIDES` and :data:`NOT_NEEDED`.
    """
    with tempfile.TemporaryDirectory() as tmp:
        report = pathlib.Path(tmp) / "report.json"
        _pip(
            "install",
            "--dry-run",
            "--ignore-installed",
            "--target",
            str(pathlib.Path(tmp) / "target"),
            "--report",
            str(report),
            "-c",
            str(constraints),
            *_target_options(python, platform),
            *TOP_LEVEL,
        )
        installs = json.loads(report.read_text())["install"]
    skip = {_canonical(n) for n in (*NODE_PROVIDES, *NOT_NEEDED)}
    pins = {}
    for item in installs:
        meta = item["metadata"]
        if _canonical(meta["name"]) not in skip:
            pins[meta["name"]] = meta["version"]
    return dict(sorted(pins.items(), key=lambda kv: kv[0].lower()))


def _store_uncompressed(wheel, target):
    """Copy a wheel with its members stored, not deflated (xz does better)."""
    with (
        zipfile.ZipFile(wheel) as src,
        zipfile.ZipFile(target, "w", zipfile.ZIP_STORED) as dst,
    ):
        for info in src.infolist():
            data = src.read(info.filename)
            info.compress_type = zipfile.ZIP_STORED
            dst.writestr(info, data)


def _write_cleared(source, target):
    import nbformat  # delays nbformat

    nb = nbformat.read(source, as_version=4)
    for cell in nb.cells:
        if cell.cell_type == "code":
            cell.outputs = []
            cell.execution_count = None
    target.write_text(nbformat.writes(nb) + "\n")


def _lab_paths(labs):
    """The lab notebooks (all of :data:`cnnbook.labs.LABS`, or ``labs``)."""

    by_stem = {stem: ROOT / "notebooks" / f"{stem}.ipynb" for stem in LABS}
    if not labs:
        return list(by_stem.values())
    unknown = [lab for lab in labs if lab not in by_stem]
    if unknown:
        raise BundleError(
            f"no lab notebook {unknown}; the labs are {sorted(by_stem)}"
        )
    return [by_stem[lab] for lab in labs]


def datasets_used(paths):
    """The datasets (cache names) the notebooks at ``paths`` load."""
    text = "".join(pathlib.Path(p).read_text() for p in paths)
    found = []
    for name, loader in DATASETS.items():
        # data.load_mnist(), or data.split("mnist", ...) (quotes escaped
        # inside a notebook's JSON)
        split = re.compile(
            r"split\(\s*\\?[\"']" + re.escape(name) + r"\\?[\"']"
        )
        if loader in text or split.search(text):
            found.append(name)
    return found


def build(
    out_dir,
    python="3.12",
    platform="manylinux_2_28_x86_64",
    labs=None,
    fast=False,
):
    """Write the bundle archive into ``out_dir``; return its path.

    ``labs`` (notebook stems) limits the notebooks and so the datasets
    carried (the tests use one lab). ``fast`` compresses quickly (xz preset
    0, wheels kept as they come) for tests; the default (preset 9 extreme,
    wheels stored) makes the smallest archive.
    """

    from cnnbook import data  # delays numpy

    out_dir = pathlib.Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    notebooks = _lab_paths(labs)
    preset = 0 if fast else 9 | lzma.PRESET_EXTREME
    tag = f"py{python.replace('.', '')}-{platform}"
    archive = out_dir / f"{NAME}-{tag}.tar.xz"
    with tempfile.TemporaryDirectory() as tmp:
        stage = pathlib.Path(tmp) / NAME
        (stage / "wheels").mkdir(parents=True)
        pins = resolve(python, platform)
        download = pathlib.Path(tmp) / "download"
        pure = {n: v for n, v in pins.items() if _canonical(n) in PREFER_PURE}
        for chosen, options in [
            ({n: v for n, v in pins.items() if n not in pure}, None),
            (pure, ["--platform", "any", "--implementation", "py"]),
        ]:
            if options is not None:
                options = [
                    "--only-binary=:all:",
                    "--python-version",
                    python,
                    "--abi",
                    "none",
                    *options,
                ]
            _pip(
                "download",
                "--no-deps",
                "--dest",
                str(download),
                *(options or _target_options(python, platform)),
                *(f"{n}=={v}" for n, v in chosen.items()),
            )
        for wheel in sorted(download.glob("*.whl")):
            if fast:
                shutil.copy2(wheel, stage / "wheels" / wheel.name)
            else:
                _store_uncompressed(wheel, stage / "wheels" / wheel.name)
        (stage / "requirements-bundle.txt").write_text(
            f"# Wheels of this bundle (Python {python}, {platform}); the "
            "node provides "
            + ", ".join(NODE_PROVIDES)
            + "\n"
            + "".join(f"{n}=={v}\n" for n, v in pins.items())
        )
        shutil.copytree(
            ROOT / "cnnbook",
            stage / "cnnbook",
            ignore=shutil.ignore_patterns("__pycache__", "*.pyc"),
        )
        shutil.copy2(ROOT / "pyproject.toml", stage / "pyproject.toml")
        (stage / "notebooks").mkdir()
        for path in notebooks:  # without the stored outputs: re-run there
            _write_cleared(path, stage / "notebooks" / path.name)
        (stage / "data").mkdir()
        names = datasets_used(notebooks)
        for name in names:
            data._load(name)  # fills the cache and checks the sums
            shutil.copy2(
                data.cache_dir() / f"{name}.npz",
                stage / "data" / f"{name}.npz",
            )
        run_sh = stage / "run.sh"
        run_sh.write_text(RUN_SH.format(python=python))
        run_sh.chmod(0o755)
        manifest = {
            "python": python,
            "platform": platform,
            "backend": "jax",
            "labs": [p.stem for p in notebooks],
            "datasets": names,
            "wheels": pins,
            "node_provides": list(NODE_PROVIDES),
            "left_out": NOT_NEEDED,
            "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        }
        (stage / "BUNDLE.json").write_text(json.dumps(manifest, indent=2))
        partial = archive.with_suffix(".partial")
        with tarfile.open(partial, "w:xz", preset=preset) as tar:
            tar.add(stage, arcname=NAME)
        partial.replace(archive)
    return archive


# --------------------------------------------------------------- the runner


def _kernel_dir(tmp):
    """A kernelspec 'python3' for this very interpreter, on JUPYTER_PATH.

    A user-level 'python3' kernelspec elsewhere could point at another
    Python; this one comes first.
    """
    spec = pathlib.Path(tmp) / "kernels" / "python3"
    spec.mkdir(parents=True)
    (spec / "kernel.json").write_text(
        json.dumps(
            {
                "argv": [
                    sys.executable,
                    "-m",
                    "ipykernel_launcher",
                    "-f",
                    "{connection_file}",
                ],
                "display_name": "Python 3 (cnnbook bundle)",
                "language": "python",
            }
        )
    )
    return str(tmp)


def _execute(source, target, timeout):
    """Run one notebook from its folder; write it, executed, to ``target``.

    Returns ``(ok, seconds, error)``; a failing notebook is written too,
    with the outputs up to the failing cell.
    """
    import nbformat  # delays nbformat

    from cnnbook import execution  # delays nbclient

    nb = nbformat.read(source, as_version=4)
    start = time.perf_counter()
    error = None
    try:
        execution.run(nb, source.parent, timeout)
    except Exception as exc:  # noqa: BLE001 - record it, run the next lab
        error = f"{type(exc).__name__}: {str(exc)[-1500:]}"
    seconds = time.perf_counter() - start
    target.write_text(nbformat.writes(nb) + "\n")
    return error is None, seconds, error


def read_records(folder, since=0.0):
    """Run records (``*.json`` under ``folder``) written at or after ``since``.

    Tolerant: unreadable files and missing keys are skipped; each record
    gets ``_mtime``.
    """
    records = []
    for path in sorted(pathlib.Path(folder).glob("**/*.json")):
        try:
            mtime = path.stat().st_mtime
            if mtime + 1 < since:
                continue
            record = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        if isinstance(record, dict):
            record["_mtime"] = mtime
            records.append(record)
    return sorted(records, key=lambda r: r["_mtime"])


def _number(record, *keys):
    for key in keys:
        value = record.get(key)
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
    return None


def summarise(labs, records, profile):
    """One row per run record, or per lab when the lab wrote none.

    ``labs`` holds ``(stem, ok, started, ended, seconds)``; a record belongs
    to the lab it names (``lab``), else to the lab that was running
    when it was written.
    """

    rows = []
    for stem, ok, started, ended, seconds in labs:
        mine = []
        for record in records:
            named = str(record.get("lab") or "")
            if named:
                if named == stem:
                    mine.append(record)
            elif started - 1 <= record["_mtime"] <= ended + 1:
                mine.append(record)
        target = gpu_targets.target(stem) if profile == "gpu" else None
        base = {"lab": stem, "status": "ok" if ok else "FAILED"}
        base["lab_seconds"] = round(seconds, 1)
        base["target"] = target
        if not mine:
            rows.append(
                {
                    **base,
                    "model": "",
                    "test_accuracy": None,
                    "seconds": round(seconds, 1),
                    "images_per_second": None,
                }
            )
        for record in mine:
            rows.append(
                {
                    **base,
                    "model": str(record.get("model") or ""),
                    "test_accuracy": _number(
                        record, "test_accuracy", "accuracy"
                    ),
                    "seconds": _number(record, "seconds"),
                    "images_per_second": _number(
                        record, "images_per_second", "step_images_per_second"
                    ),
                }
            )
    return rows


def format_table(rows):
    """The summary as a plain-text table."""
    header = ["lab", "model", "status", "accuracy", "target", "seconds"]
    header += ["images/s", "lab s"]
    lines = []
    for row in rows:
        acc, target = row["test_accuracy"], row["target"]
        verdict = ""
        if target is not None and acc is not None:
            verdict = " ok" if acc >= target else " MISSED"
        lines.append(
            [
                row["lab"],
                row["model"] or "-",
                row["status"],
                "-" if acc is None else f"{acc:.2%}",
                "-" if target is None else f"{target:.1%}{verdict}",
                "-" if row["seconds"] is None else f"{row['seconds']:.1f}",
                "-"
                if row["images_per_second"] is None
                else f"{row['images_per_second']:,.0f}",
                f"{row['lab_seconds']:.1f}",
            ]
        )

    align = ["left"] * 3 + ["right"] * 5
    return tabulate(
        lines, headers=header, colalign=align, disable_numparse=True
    )


def run_labs(notebooks, results, profile, labs=None, timeout=3600):
    """Execute the lab notebooks under ``profile``; return (rows, failed).

    Executed notebooks go to ``RESULTS/notebooks``, run records to
    ``RESULTS/runs`` (``$CNNBOOK_RESULTS``), the summary to
    ``RESULTS/summary.csv`` and ``RESULTS/summary.json``.
    """
    notebooks = pathlib.Path(notebooks)
    results = pathlib.Path(results).resolve()
    paths = sorted(notebooks.glob("*.ipynb"))
    if labs:
        wanted = set(labs)
        paths = [p for p in paths if p.stem in wanted]
        missing = wanted - {p.stem for p in paths}
        if missing:
            raise BundleError(f"no lab notebook {sorted(missing)}")
    if not paths:
        raise BundleError(f"no lab notebooks in {notebooks}")
    (results / "notebooks").mkdir(parents=True, exist_ok=True)
    (results / "runs").mkdir(parents=True, exist_ok=True)
    os.environ["CNNBOOK_RESULTS"] = str(results)
    os.environ["CNNBOOK_PROFILE"] = profile
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    begun = time.time()
    done = []
    with tempfile.TemporaryDirectory() as kernels:
        os.environ["JUPYTER_PATH"] = _kernel_dir(kernels)
        for path in paths:
            print(f"{path.stem}: running under {profile} ...", flush=True)
            started = time.time()
            ok, seconds, error = _execute(
                path, results / "notebooks" / path.name, timeout
            )
            done.append((path.stem, ok, started, time.time(), seconds))
            print(
                f"{path.stem}: {'done' if ok else 'FAILED'} in "
                f"{seconds:.1f} s" + ("" if ok else f"\n{error}"),
                flush=True,
            )
    records = read_records(results / "runs", since=begun)
    rows = summarise(done, records, profile)
    with open(results / "summary.csv", "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    (results / "summary.json").write_text(json.dumps(rows, indent=2) + "\n")
    total = time.time() - begun
    print()
    print(format_table(rows))
    print(f"\n{len(paths)} lab(s) in {total:.0f} s; results in {results}")
    failed = [stem for stem, ok, *_ in done if not ok]
    return rows, failed
