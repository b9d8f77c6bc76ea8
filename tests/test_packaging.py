"""What a `pip install`ed dcsim needs: one version, every module, and the example scenarios,
workloads and topologies inside the wheel, found by name outside a clone."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tomllib
import zipfile

import pytest

import sim
from sim.cli import main
from sim.scenario import examples
from sim.spec.errors import ScenarioError

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
EXAMPLE_FOLDERS = ("scenarios", "workloads", "topologies")
with open(os.path.join(ROOT, "pyproject.toml"), "rb") as _fh:
    PYPROJECT = tomllib.load(_fh)


# ---- one version ------------------------------------------------------------------------------

def test_the_version_is_written_once():
    assert "version" not in PYPROJECT["project"] and "version" in PYPROJECT["project"]["dynamic"]
    assert PYPROJECT["tool"]["setuptools"]["dynamic"]["version"] == {"attr": "sim.__version__"}


def test_dcsim_version(capsys):
    with pytest.raises(SystemExit) as done:
        main(["--version"])
    assert done.value.code == 0
    assert capsys.readouterr().out == f"dcsim {sim.__version__}\n"


# ---- every module in the wheel -----------------------------------------------------------------

def test_every_folder_of_modules_is_a_listed_package():
    """The packages are listed by hand (pyproject.toml says why): a new folder must join them."""
    listed = set(PYPROJECT["tool"]["setuptools"]["packages"])
    found = {os.path.relpath(folder, ROOT).replace(os.sep, ".")
             for folder, _, files in os.walk(os.path.join(ROOT, "sim"))
             if "__pycache__" not in folder and any(f.endswith(".py") for f in files)}
    found |= {"sim.examples." + os.path.relpath(folder, ROOT).replace(os.sep, ".")
              for top in EXAMPLE_FOLDERS for folder, _, _ in os.walk(os.path.join(ROOT, top))
              if "__pycache__" not in folder}
    assert found - listed == set(), "add these to [tool.setuptools] packages in pyproject.toml"
    assert [p for p in listed if not os.path.isdir(_folder_of(p))] == [], "listed packages whose folder is gone"
    assert _folder_of("sim.examples.scenarios.sweeps") == os.path.join(ROOT, "scenarios", "sweeps")


def _folder_of(package: str) -> str:
    """A package's folder as setuptools finds it: under its nearest package-dir entry."""
    mapped = PYPROJECT["tool"]["setuptools"]["package-dir"]
    parts = package.split(".")
    for n in range(len(parts), 0, -1):
        if ".".join(parts[:n]) in mapped:
            return os.path.join(ROOT, mapped[".".join(parts[:n])], *parts[n:])
    return os.path.join(ROOT, *parts)


# ---- examples by name ---------------------------------------------------------------------------

def test_a_bare_name_is_an_example(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert examples.path_of("quickstart") == os.path.join(ROOT, "scenarios", "quickstart.yaml")
    assert examples.path_of("quickstart-size-vs-load", examples.SWEEPS) == \
        os.path.join(ROOT, "scenarios", "sweeps", "quickstart-size-vs-load.yaml")
    assert examples.path_of("hgx-h100-node", examples.TOPOLOGIES) == \
        os.path.join(ROOT, "topologies", "hgx-h100-node.yaml")
    # anything else is a path, read as given
    for path in ("scenarios/quickstart.yaml", "mine.yaml", "./quickstart"):
        assert examples.path_of(path) == path
    (tmp_path / "quickstart").write_text("name: mine\n")
    assert examples.path_of("quickstart") == "quickstart"    # a file here wins over the example


def test_an_unknown_name_lists_the_examples():
    with pytest.raises(ScenarioError) as err:
        examples.path_of("quickstrat")
    assert str(err.value).startswith("quickstrat: no such scenario 'quickstrat'; did you mean 'quickstart'? "
                                     "valid examples: agent-levels, ")
    with pytest.raises(ScenarioError, match="no such sweep 'x'; valid examples: quickstart-size-vs-load$"):
        examples.path_of("x", examples.SWEEPS)


def test_the_commands_take_names(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert main(["validate", "quickstart"]) == 0
    assert capsys.readouterr().out.startswith("quickstart: ok: scenario 'quickstart'")
    assert main(["sweep", "quickstart-size-vs-load", "--list"]) == 0
    assert main(["topology", "hgx-h100-node"]) == 0
    capsys.readouterr()
    assert main(["run", "no-such-example"]) == 2
    assert capsys.readouterr().err.startswith(
        "error: no-such-example: no such scenario 'no-such-example'; valid examples: ")
    assert os.listdir(tmp_path) == []


def test_validate_model_outside_a_clone_says_where_the_cases_are(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert main(["validate-model", "--fast"]) == 2
    assert "validation/cases: no such folder of validation cases (they are in a clone" in capsys.readouterr().err


def test_catalog_scenarios_gives_each_example_its_purpose(capsys):
    import json
    assert main(["catalog", "scenarios", "--json"]) == 0
    found = json.loads(capsys.readouterr().out)
    assert set(found) == set(examples.names()) and len(found) > 10
    assert found["quickstart"] == {
        "file": os.path.join(ROOT, "scenarios", "quickstart.yaml"),
        "purpose": "Quickstart: chat traffic on one 8-GPU H100 node serving Llama 3.1 8B, one replica per GPU."}
    assert all(entry["purpose"] for entry in found.values())


def test_purpose_without_an_opening_comment_is_the_name(tmp_path):
    (tmp_path / "s.yaml").write_text("name: my-fleet\nseed: 1\n# a comment further down\n")
    assert examples.purpose(tmp_path / "s.yaml") == "my-fleet"


# ---- the wheel ----------------------------------------------------------------------------------

def test_the_wheel_carries_the_examples_and_runs_them_outside_a_clone(tmp_path):
    """`pip wheel` of the sources, installed into a folder of its own and run from another:
    `dcsim validate quickstart` finds the installed example, includes and all."""
    source = _mkdir(tmp_path / "src")      # what a build reads, without the clone's caches and results
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", "*.nbi", "*.nbc")
    for name in ("pyproject.toml", "README.md", "LICENSE"):
        shutil.copy(os.path.join(ROOT, name), source / name)
    for folder in ("sim", *EXAMPLE_FOLDERS):
        shutil.copytree(os.path.join(ROOT, folder), source / folder, ignore=ignore)
    built = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(tmp_path / "dist"),
                            str(source)], check=False, capture_output=True, text=True, timeout=240)
    if built.returncode != 0 and "No matching distribution found for setuptools" in built.stdout + built.stderr:
        pytest.skip("no package index to bring setuptools for the build")
    assert built.returncode == 0, built.stdout + built.stderr
    [wheel] = (tmp_path / "dist").glob("dcsim-*.whl")
    assert wheel.name.startswith(f"dcsim-{sim.__version__}-")
    with zipfile.ZipFile(wheel) as zf:
        inside = set(zf.namelist())
    expected = {f"sim/examples/{os.path.relpath(os.path.join(d, f), source).replace(os.sep, '/')}"
                for top in EXAMPLE_FOLDERS for d, _, files in os.walk(source / top) for f in files}
    expected |= {os.path.relpath(os.path.join(d, f), source).replace(os.sep, "/")
                 for d, _, files in os.walk(source / "sim") for f in files if f.endswith(".py")}
    assert expected - inside == set()

    target, elsewhere = tmp_path / "installed", _mkdir(tmp_path / "elsewhere")
    subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "-q", "--target", str(target), str(wheel)],
                   check=True, capture_output=True, timeout=120)
    env = dict(os.environ, PYTHONPATH=str(target))
    ran = subprocess.run([str(target / "bin" / "dcsim"), "validate", "quickstart"], cwd=elsewhere, env=env,
                         check=False, capture_output=True, text=True, timeout=120)
    assert ran.returncode == 0, ran.stderr
    assert ran.stdout.startswith("quickstart: ok: scenario 'quickstart'")
    assert "topology hgx-h100-1node" in ran.stdout        # its ../topologies/ include resolved
    where = subprocess.run([sys.executable, "-c",
                            "from sim.scenario import examples; print(examples.path_of('quickstart'))"],
                           cwd=elsewhere, env=env, capture_output=True, text=True, timeout=120, check=True)
    assert where.stdout.strip() == str(target / "sim" / "examples" / "scenarios" / "quickstart.yaml")


def _mkdir(path):
    path.mkdir(parents=True, exist_ok=True)
    return path
