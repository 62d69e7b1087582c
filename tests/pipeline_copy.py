"""The project's DVC pipeline in a temporary git repository, for the tests that run real DVC
(test_pipeline.py, test_prepare_deps.py, test_hostile_params.py, test_readme.py,
test_sweep_remote.py): copying the pipeline's files, an environment that keeps git and DVC off
this machine's own config and caches, a command runner, and the first commit; and the
environment of a subprocess that runs this checkout's code (`checkout_env`)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# What `dvc repro` needs of the checkout: the code, the stages, dvc.yaml, the params file the
# tests do not rewrite, and DVC's own config (params.yaml each test writes itself).
PIPELINE = ("src", "stages", "dvc.yaml", "advanced.yaml", ".dvc/config", ".dvcignore",
            ".gitignore")  # fmt: skip
# What `dvc init` writes as .dvc/.gitignore (the copy takes .dvc/config only).
DVC_GITIGNORE = "/config.local\n/tmp\n/cache\n"


def copy_pipeline(dst: Path, items: tuple[str, ...] = PIPELINE) -> None:
    """Copy `items` (paths relative to the checkout, files or folders) to the same paths under
    `dst`, leaving out __pycache__."""
    for item in items:
        src, to = ROOT / item, dst / item
        to.parent.mkdir(parents=True, exist_ok=True)
        if src.is_dir():
            shutil.copytree(src, to, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy(src, to)


def checkout_env(**extra: str) -> dict[str, str]:
    """This process's environment with this checkout's code importable (`dnas`, `stages`,
    `tests`), one thread per process and no DVC analytics, then `extra`."""
    return {
        **os.environ,
        "PYTHONPATH": f"{ROOT / 'src'}{os.pathsep}{ROOT}",
        "OMP_NUM_THREADS": "1",
        "MKL_NUM_THREADS": "1",
        "DVC_NO_ANALYTICS": "1",
        **extra,
    }


def dvc_env(home: Path, **extra: str) -> dict[str, str]:
    """This process's environment for git and DVC in a copy: this interpreter's `dvc` first on
    PATH, DVC's site cache and global and system config under `home`, no global or system git
    config, a fixed author, no analytics, no PYTHONPATH (the stages import the copy's own
    code), then `extra` (which may set PYTHONPATH)."""
    env = {
        **{k: v for k, v in os.environ.items() if k != "PYTHONPATH"},
        "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}",
        "DVC_NO_ANALYTICS": "1",
        "DVC_SITE_CACHE_DIR": str(home / "site"),
        "DVC_GLOBAL_CONFIG_DIR": str(home / "global"),
        "DVC_SYSTEM_CONFIG_DIR": str(home / "system"),
        "GIT_CONFIG_GLOBAL": "/dev/null",
        "GIT_CONFIG_NOSYSTEM": "1",
        "GIT_AUTHOR_NAME": "t",
        "GIT_AUTHOR_EMAIL": "t@example.invalid",
        "GIT_COMMITTER_NAME": "t",
        "GIT_COMMITTER_EMAIL": "t@example.invalid",
        **extra,
    }
    return env


def runner(cwd: Path, env: dict[str, str], timeout: float | None = None):
    """`run(*cmd, check=True) -> (returncode, stdout + stderr)`, a command in `cwd` under
    `env`; with `check`, a non-zero exit fails the test with the command's output. `run.env`
    is `env`."""

    def run(*cmd: str, check: bool = True) -> tuple[int, str]:
        proc = subprocess.run(
            cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout
        )
        out = proc.stdout + proc.stderr
        if check and proc.returncode != 0:
            raise AssertionError(f"{' '.join(cmd)} failed ({proc.returncode}):\n{out}")
        return proc.returncode, out

    run.env = env
    return run


def commit_pipeline(path: Path, run) -> None:
    """Make the copy at `path` a git repository on branch main, with DVC's .dvc/.gitignore,
    and commit everything in it."""
    run("git", "init", "-q", "-b", "main")
    (path / ".dvc").mkdir(exist_ok=True)
    (path / ".dvc" / ".gitignore").write_text(DVC_GITIGNORE)
    run("git", "add", "-A")
    run("git", "commit", "-qm", "pipeline")
