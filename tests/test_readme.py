"""The README as a user runs it: every command of its shell code blocks, as written, in README
order, in one prepared workspace (a copy of this checkout on tiny params, committed, with a
bare git remote); and the first run of a fresh clone.

A README command is one `&&`-separated part of a line of a ```bash / ```sh / ```console block
(or of an unlabelled block whose first word is a program). Each one is either run or named in
SKIP with the reason (a network, a GPU, a download); the test fails on a command that is
neither, and on a SKIP entry the README no longer has. Placeholders (`<url>`, `<exp>`, the
example remote path) are replaced by real ones (SUBSTITUTE); a line that appears twice runs
once. A comment line `# on another machine` moves the rest of its block to a second directory.
"""

import json
import re
import shutil
import subprocess
import time
from pathlib import Path

import pytest
import yaml
from markdown_it import MarkdownIt

from tests.pipeline_copy import dvc_env

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(shutil.which("git") is None, reason="needs git"),
]

# Commands not run here, each with the reason.
SKIP = {
    "pip install -e '.[dev]'": "needs the network (PyPI); the test runs in the installed env",
    "pip install -e .": "needs the network (PyPI); the test runs in the installed env",
    ". .venv/bin/activate": "activates the venv that the skipped pip install fills",
    "pytest": "the test suite itself (CI runs it)",
    "dnas params use gdas-cifar10": "its runs need the CIFAR-10 download and a GPU",
    'git commit -am "preset gdas-cifar10"': "commits the skipped CIFAR-10 preset",
    "dnas params use gdas-nb201-cifar10": "needs CIFAR-10 and the NATS-Bench files",
    'git commit -am "preset gdas-nb201-cifar10"': "commits the skipped NB201 preset",
    "dvc exp run search --queue -S 'common.seed=range(0,3)' -S advanced.yaml:search.benchmark="
    "/data/NATS-tss-v1_0-3ffb9-simple": "needs the NATS-Bench benchmark files (a download)",
    "PYTHONPATH=src torchrun --standalone --nproc_per_node 4 -m stages.search": "needs 4 GPUs",
    "PYTHONPATH=src torchrun --standalone --nproc_per_node 4 -m stages.train": "needs 4 GPUs",
    "CUDA_VISIBLE_DEVICES=0 dvc exp run --temp -S common.seed=0 &": "needs 2 GPUs",
    "CUDA_VISIBLE_DEVICES=1 dvc exp run --temp -S common.seed=1 &": "needs 2 GPUs",
    "wait": "waits for the two GPU runs above",
    "dvc exp run --queue -S common.seed=0 -S advanced.yaml:common.device=cuda:0": "needs a GPU",
    "dvc exp run --queue -S common.seed=1 -S advanced.yaml:common.device=cuda:1": "needs 2 GPUs",
    "dvc queue start -j 2": "runs the two GPU experiments above",
}

# The tiny params of the workspace: the pipeline's shape, seconds per stage.
TINY = {
    "search": {"epochs": 1, "channels": 4, "layers": 3, "batch_size": 256},
    "train": {"epochs": 1, "channels": 4, "layers": 3, "batch_size": 256},
}
TINY_RNN = {
    "search": {"epochs": 1, "batch_size": 128, "rnn": {"emsize": 8, "nhid": 8}},
    "train": {"epochs": 1, "batch_size": 128, "rnn": {"emsize": 8, "nhid": 8}},
}

SHELL = ("bash", "sh", "shell", "console")


def _strip_comment(line: str) -> str:
    """`line` without a trailing `# comment` (a # after whitespace, outside quotes)."""
    quote = None
    for i, ch in enumerate(line):
        if quote:
            quote = None if ch == quote else quote
        elif ch in "'\"":
            quote = ch
        elif ch == "#" and (i == 0 or line[i - 1].isspace()):
            return line[:i].rstrip()
    return line.rstrip()


def split_and(line: str) -> list[str]:
    """The `&&`-separated parts of a shell line (outside quotes)."""
    parts, quote, start, i = [], None, 0, 0
    while i < len(line):
        ch = line[i]
        if quote:
            quote = None if ch == quote else quote
        elif ch in "'\"":
            quote = ch
        elif line.startswith("&&", i):
            parts.append(line[start:i].strip())
            start = i + 2
            i += 1
        i += 1
    parts.append(line[start:].strip())
    return [p for p in parts if p]


def _looks_like_shell(lines: list[str]) -> bool:
    """An unlabelled block is shell when its first word (after VAR=value) is a program."""
    words = next((x.split() for x in lines if x.strip()), [])
    while words and re.fullmatch(r"[A-Z_]+=\S*", words[0]):
        words = words[1:]
    return bool(words) and shutil.which(words[0]) is not None


def readme_blocks(text: str) -> list[list[str]]:
    """The shell code blocks of the README, each a list of its lines (comments included)."""
    blocks = []
    for token in MarkdownIt().parse(text):
        if token.type != "fence":
            continue
        lang = token.info.strip().split()[0] if token.info.strip() else ""
        lines = token.content.splitlines()
        if lang == "console":
            lines = [x[2:] for x in lines if x.startswith("$ ")]
        if lang in SHELL or (not lang and _looks_like_shell(lines)):
            blocks.append(lines)
    return blocks


def readme_commands(text: str) -> list[str]:
    return [
        p
        for block in readme_blocks(text)
        for line in block
        for p in split_and(_strip_comment(line))
    ]


def test_every_readme_command_is_run_or_skipped_with_a_reason():
    """The extraction itself, and that SKIP lists only commands the README has."""
    commands = readme_commands(README.read_text())
    assert "dvc repro" in commands and "dnas report" in commands
    assert any(c.startswith("dvc exp run -S \"train.genotype='|") for c in commands)
    assert not any(c.startswith("error:") for c in commands)  # the error block is output
    assert not set(SKIP) - set(commands), "SKIP names commands the README no longer has"
    sample = "a 'b && c' && d \"e # f\"  # g"
    assert split_and(_strip_comment(sample)) == ["a 'b && c'", 'd "e # f"']


def _copy_checkout(dst: Path) -> None:
    """The checkout's tracked files as they are now (uncommitted edits included)."""
    files = subprocess.run(
        ["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout.split("\0")
    for name in filter(None, files):
        src = ROOT / name
        if src.is_file():
            (dst / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dst / name)


def _deep_update(base: dict, over: dict) -> dict:
    for k, v in over.items():
        base[k] = _deep_update(base.get(k) or {}, v) if isinstance(v, dict) else v
    return base


def _env(home: Path, work: Path) -> dict:
    """`dvc_env` with `dnas` running the workspace's code and HOME under `home`, whose git
    config (DVC's pygit2 reads HOME's) names the author and the branch `main`."""
    (home / ".gitconfig").write_text(
        "[user]\n\tname = t\n\temail = t@example.invalid\n[init]\n\tdefaultBranch = main\n"
    )
    return dvc_env(
        home, PYTHONPATH=str(work / "src"), OMP_NUM_THREADS="1", HOME=str(home),
        GIT_CONFIG_GLOBAL=str(home / ".gitconfig"),
    )  # fmt: skip


class Workspace:
    def __init__(self, root: Path):
        self.root = root
        self.work = root / "work"
        self.home = root / "home"
        self.origin = root / "origin.git"
        for d in (self.work, self.home, root / "other"):
            d.mkdir()
        self.env = _env(self.home, self.work)
        _copy_checkout(self.work)
        params = yaml.safe_load((self.work / "params.yaml").read_text())
        (self.work / "params.yaml").write_text(yaml.safe_dump(_deep_update(params, TINY)))
        preset = self.work / "presets" / "rnn-pydoc.yaml"
        preset.write_text(
            yaml.safe_dump(_deep_update(yaml.safe_load(preset.read_text()), TINY_RNN))
        )
        self.sh("git init -q && git add -A && git commit -qm 'the project, tiny params'")
        self.sh(f"git init -q --bare {self.origin} && git remote add origin {self.origin}"
                " && git push -q -u origin main")  # fmt: skip

    def sh(self, script: str, cwd: Path | None = None, check: bool = True) -> str:
        # Output to a file, not a pipe: `dvc queue start` leaves a worker that keeps the
        # pipe open, and reading a pipe to its end would then wait for that worker.
        log = self.root / "sh.log"
        with open(log, "w") as f:
            proc = subprocess.run(["bash", "-c", f"set -eo pipefail\n{script}"],
                                  cwd=cwd or self.work, env=self.env, stdin=subprocess.DEVNULL,
                                  stdout=f, stderr=subprocess.STDOUT)  # fmt: skip
        out = log.read_text()
        if check and proc.returncode != 0:
            raise AssertionError(f"`{script}` failed ({proc.returncode}) in {cwd}:\n{out}")
        return out

    def first_experiment(self) -> str:
        rows = json.loads(self.sh("dvc exp show --json --all-commits"))
        return next(
            e["name"] for row in rows for e in row.get("experiments") or [] if e.get("name")
        )

    def wait_for_queue(self, timeout: float = 900) -> None:
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            status = self.sh("dvc queue status")
            if not re.search(r"\b(Queued|Running)\b", status):
                if "Failed" in status:  # the failed tasks' own output, to see why
                    failed = re.findall(r"^\S+\s+(\S+)\s+.*\bFailed\b", status, re.M)
                    logs = "\n".join(self.sh(f"dvc queue logs {name} || true") for name in failed)
                    raise AssertionError(f"{status}\n{logs[-4000:]}")
                return
            time.sleep(3)
        raise AssertionError(f"the queue did not finish:\n{status}")


def _table_ok(text: str) -> None:
    """Every markdown table in `text` has the header's column count in every row."""
    from tests.test_markdown import assert_tables_well_formed

    assert_tables_well_formed(text)


def test_readme_commands_as_written(tmp_path):
    """Every README command in README order (see the module docstring)."""
    ws = Workspace(tmp_path)
    try:
        _run_readme(ws, tmp_path)
    finally:  # the queue's workers wait for more work: stop them
        ws.sh("dvc queue stop", check=False)


def _run_readme(ws: "Workspace", tmp_path: Path) -> None:
    text = README.read_text()
    run: set[str] = set()
    outputs: dict[str, str] = {}
    for block in readme_blocks(text):
        cwd = ws.work
        for raw in block:
            if raw.strip().startswith("# on another machine"):
                cwd = tmp_path / "other"
                continue
            line = _strip_comment(raw)
            parts = split_and(line)
            todo = [p for p in parts if p not in SKIP]
            if not todo or line in outputs:
                run.update(todo)
                continue
            script = " && ".join(todo)
            if "<exp>" in script:
                script = script.replace("<exp>", ws.first_experiment())
            script = script.replace("<url>", str(ws.origin))
            script = script.replace("/mnt/shared/dnas-store", str(tmp_path / "store"))
            out = ws.sh(f"{script}\npwd > {tmp_path / 'cwd'}", cwd=cwd)
            cwd = Path((tmp_path / "cwd").read_text().strip())
            outputs[line] = out
            run.update(todo)
            if "dvc queue start" in todo:
                ws.wait_for_queue()
            if line == "pip install -e '.[dev]' && dvc repro":
                # "Commit first (DVC experiments need a commit)": the results of the first run.
                ws.sh("git add -A && git commit -qm results")
                shown = ws.sh("dvc exp show --md")
                _table_ok(shown)
            _check(line, out, raw, ws)
    missing = [c for c in readme_commands(text) if c not in run and c not in SKIP]
    assert not missing, f"README commands neither run nor in SKIP: {missing}"


def _check(line: str, out: str, raw: str, ws: Workspace) -> None:
    """What some commands must show, beyond succeeding."""
    if line.startswith("dnas genotype info") and "#" in raw:
        for number in re.findall(r"\d+\.\d+M", raw.split("#", 1)[1]):
            assert number.rstrip("M") in out, (line, number, out)
    if line == "dnas genotype table" or line.endswith("dnas report"):
        _table_ok(out)
    if line.startswith("git clone <url> dnas"):
        assert "Running stage" not in out, out  # `dvc pull` then `dvc repro`: nothing to run
    if line.startswith("dvc exp run --queue -S 'common.seed=range(0,4)'"):
        # four experiments that differ only in their seed (the sweep starts from the
        # workspace's params: the last experiment's)
        rows = json.loads(ws.sh("dvc exp show --json"))
        groups: dict[str, set] = {}
        for row in rows:
            for exp in row.get("experiments") or []:
                for rev in exp["revs"]:
                    params = rev["data"]["params"]["params.yaml"]["data"]
                    seed = params["common"].pop("seed")
                    groups.setdefault(json.dumps(params, sort_keys=True), set()).add(seed)
        assert any(seeds >= {0, 1, 2, 3} for seeds in groups.values()), groups
    if line.startswith("git checkout -- ."):
        assert ws.sh("git status --porcelain --untracked-files=no") == ""


def _first_run(source: Path, dst: Path, env: dict) -> tuple[str, str]:
    subprocess.run(["git", "clone", "-q", f"file://{source}", str(dst)], env=env, check=True)
    # Without the committed model the first repro would retrain it (minutes): say so at once.
    assert (dst / "models" / "model.pt").is_file(), "models/model.pt is not committed"
    proc = subprocess.run(["dvc", "repro"], cwd=dst, env=env, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    status = subprocess.run(["git", "status", "--porcelain"], cwd=dst, env=env,
                            capture_output=True, text=True, check=True).stdout  # fmt: skip
    return proc.stdout, status


@pytest.mark.skipif(not (ROOT / ".git").exists(), reason="needs this checkout's git history")
def test_a_fresh_clone_first_run_prepares_the_data_only_and_leaves_git_clean(tmp_path):
    """A fresh clone of this project (its HEAD): `dvc repro` runs only validate and prepare
    (the searched cells, the model, the metrics and plots are in git and match dvc.lock), and
    `git status` is clean after it. Then the README's recovery recipe, on that clone without
    the prepared data in its cache, brings back damaged results."""
    env = _env(tmp_path, tmp_path / "clone")
    env["PYTHONPATH"] = ""
    out, status = _first_run(ROOT, tmp_path / "clone", env)
    ran = re.findall(r"Running stage '([^']+)'", out)
    assert set(ran) <= {"validate"} | {s for s in ran if s.startswith("prepare@")}, out
    assert status == "", f"tracked files changed by the first dvc repro:\n{status}"
    recipe = next(
        _strip_comment(x) for block in readme_blocks(README.read_text()) for x in block
        if x.startswith("git checkout -- .")
    )  # fmt: skip
    clone = tmp_path / "clone"
    (clone / "metrics" / "eval.json").write_text("{}")
    (clone / "models" / "model.pt").write_bytes(b"damaged")
    shutil.rmtree(clone / ".dvc" / "cache")
    shutil.rmtree(clone / "data" / "prepared")
    proc = subprocess.run(["bash", "-c", recipe], cwd=clone, env=env, capture_output=True,
                          text=True)  # fmt: skip
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert subprocess.run(["git", "status", "--porcelain"], cwd=clone, capture_output=True,
                          text=True, check=True).stdout == ""  # fmt: skip
    dvc_status = subprocess.run(["dvc", "status", "--json"], cwd=clone, env=env,
                                capture_output=True, text=True, check=True).stdout  # fmt: skip
    assert json.loads(dvc_status) == {}, dvc_status


def test_readme_and_docs_point_only_inside_the_repository():
    """Every relative link of README.md and docs/*.md names a file of this repository, and no
    page sends the reader to a path outside it (the README once cited `../shared/DESIGN.md`)."""
    pages = [README, *sorted((ROOT / "docs").glob("*.md"))]
    for page in pages:
        text = page.read_text()
        for token in MarkdownIt().parse(text):
            for child in token.children or []:
                href = child.attrs.get("href") if child.type == "link_open" else None
                if not href or re.match(r"[a-z]+:|#", href):
                    continue
                target = (page.parent / href.split("#", 1)[0]).resolve()
                assert target.is_relative_to(ROOT) and target.exists(), (page.name, href)
                assert ".git" not in target.relative_to(ROOT).parts
            if token.type == "inline":
                for span in re.findall(r"`([^`]+)`", token.content):
                    assert not span.startswith("../"), (page.name, span)
        assert "DESIGN.md" not in text and "../shared" not in text, page.name


# `dvc exp show --md` of the default, without flags: at most this many columns (issue 21).
MAX_EXP_SHOW_COLUMNS = 60


def test_exp_show_md_of_the_default_is_at_most_60_well_formed_columns(tmp_path):
    """A copy of this checkout as committed (no `dvc repro`: exp show reads the files and
    dvc.lock), genotype.json written as the search stage writes it (with `cells_id`):
    `dvc exp show --md` has at most MAX_EXP_SHOW_COLUMNS columns, every row has the header's
    count, each key of params.yaml is a column, advanced.yaml and each stage's inputs file one
    column each (a hash), and neither the genotype's cell lists nor any source path is one."""
    from dnas.io import write_json
    from dnas.stage_inputs import cells_id
    from tests.test_config import _leaves

    work, home = tmp_path / "work", tmp_path / "home"
    work.mkdir()
    home.mkdir()
    env = _env(home, work)
    _copy_checkout(work)
    genotype = json.loads((work / "genotype.json").read_text())
    write_json(work / "genotype.json", {**genotype, "cells_id": cells_id(genotype)})

    def sh(script: str) -> str:
        proc = subprocess.run(["bash", "-c", f"set -e\n{script}"], cwd=work, env=env,
                              capture_output=True, text=True)  # fmt: skip
        assert proc.returncode == 0, proc.stdout + proc.stderr
        return proc.stdout

    sh("git init -q && git add -A && git commit -qm project")
    shown = sh("dvc exp show --md")
    _table_ok(shown)
    tokens = MarkdownIt("commonmark").enable("table").parse(shown)
    header = []
    for i, tok in enumerate(tokens):
        if tok.type == "th_open":
            header.append(tokens[i + 1].content.strip())
        if tok.type == "thead_close":
            break
    assert len(header) <= MAX_EXP_SHOW_COLUMNS, f"{len(header)} columns: {header}"
    assert header[:2] == ["Experiment", "Created"]
    ours = set(_leaves(yaml.safe_load((work / "params.yaml").read_text())))
    assert ours <= set(header), ours - set(header)
    stages = ["prepare", "search", "train", "evaluate", "plots"]
    assert {"advanced.yaml", "cells_id", *(f"data/stages/{s}.json" for s in stages)} <= set(header)
    assert not [c for c in header if c.startswith(("cells.", "src/dnas/", "stages/"))], header
    assert not set(_leaves(yaml.safe_load((work / "advanced.yaml").read_text()))) & set(header)
