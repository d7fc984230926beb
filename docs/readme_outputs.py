"""Regenerate (or check) the outputs the README shows, from a real run.

A bash block in README.md preceded by the line ``<!-- outputs: docs/readme_outputs.py -->`` is
generated: every ``snagkg ...`` line in it is run (in a scratch folder whose ``runs/demo`` is the
``snagkg demo`` run, seed 1, plus the small input files the commands name), and the ``# `` lines
that follow a command are replaced by what it printed (stdout and stderr, in order). A command
followed by no ``# `` lines is still run and must succeed. A command's exit status must be 0,
unless what it prints starts with ``error:`` (the README shows the one-line error). An output
that ends with ``# ...`` is shown shortened: the same number of lines as before, then ``# ...``.

    python docs/readme_outputs.py --write                 # trains the demo run, rewrites README.md
    python docs/readme_outputs.py --check --run runs/demo # exit 1 and a diff when README.md is stale

The demo's scores depend on the torch thread count; the run is made with 2 threads (what
``make demo`` uses on a 2-core machine) unless ``--threads`` says otherwise.
"""
from __future__ import annotations

import argparse
import difflib
import os
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Callable, List, Sequence, Tuple

ROOT = Path(__file__).resolve().parents[1]
MARKER = "<!-- outputs: docs/readme_outputs.py -->"
ELLIPSIS = "# ..."

# Inputs the generated commands name, written into the scratch folder before they run.
INPUTS = {
    "triples.tsv": "entity_0\trelation_3\tentity_36\nentity_0\trelation_3\tentity_1353\n",
    "queries.tsv": "entity_0\trelation_3\t?\n?\trelation_3\tentity_36\n",
    "candidates.txt": "entity_36\nentity_1353\nentity_7\n",
}

Runner = Callable[[str], Tuple[int, str]]


def _command(line: str) -> str:
    """The command of a README line: its trailing ``# comment`` dropped."""
    words = shlex.split(line, comments=True)
    return shlex.join(words)


def regenerate(text: str, run: Runner) -> str:
    """``text`` (a README) with every marked block's outputs replaced by what ``run`` prints.

    ``run(command)`` returns ``(exit status, printed text)``. Raises ``ValueError`` naming the
    README line of a command that failed or of a marked block that is not a bash block."""
    lines = text.split("\n")
    out: List[str] = []
    i = 0
    while i < len(lines):
        out.append(lines[i])
        if lines[i].strip() != MARKER:
            i += 1
            continue
        i += 1
        if i >= len(lines) or lines[i].strip() != "```bash":
            raise ValueError(f"README.md:{i + 1}: {MARKER} must be followed by a ```bash block")
        out.append(lines[i])
        i += 1
        while i < len(lines) and lines[i].strip() != "```":
            line = lines[i]
            out.append(line)
            i += 1
            if not line.startswith("snagkg "):
                continue
            number = i
            old = []
            while i < len(lines) and lines[i].startswith("#"):
                old.append(lines[i])
                i += 1
            status, printed = run(_command(line))
            new = [f"# {s}".rstrip() for s in printed.rstrip("\n").split("\n")] if printed.strip() else []
            if status != 0 and not printed.startswith("error:"):
                raise ValueError(f"README.md:{number}: `{_command(line)}` failed ({status}): {printed.strip()}")
            if not old:
                continue
            if old[-1] == ELLIPSIS and len(new) >= len(old):
                new = new[:len(old) - 1] + [ELLIPSIS]
            out.extend(new)
        if i < len(lines):
            out.append(lines[i])
        i += 1
    return "\n".join(out)


def scratch_runner(folder: Path, demo_run: Path, threads: int) -> Runner:
    """A runner executing ``snagkg`` commands in ``folder`` (``runs/demo`` linked to ``demo_run``)."""
    (folder / "runs").mkdir(parents=True, exist_ok=True)
    link = folder / "runs" / "demo"
    if not link.exists():
        link.symlink_to(demo_run.resolve(), target_is_directory=True)
    for name, body in INPUTS.items():
        (folder / name).write_text(body, encoding="utf-8")
    env = dict(os.environ, OMP_NUM_THREADS=str(threads), COLUMNS="100", PYTHONWARNINGS="ignore")

    def run(command: str) -> Tuple[int, str]:
        argv = [sys.executable, "-m", "snagkg", *shlex.split(command)[1:]]
        done = subprocess.run(argv, cwd=folder, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                              text=True, timeout=900)
        return done.returncode, done.stdout

    return run


def train_demo(folder: Path, threads: int) -> Path:
    """Train the demo run (``snagkg demo``, seed 1) into ``folder/demo``."""
    env = dict(os.environ, OMP_NUM_THREADS=str(threads))
    subprocess.run([sys.executable, "-m", "snagkg", "demo", "--output", str(folder / "demo")], env=env,
                   check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=3600)
    return folder / "demo"


def main(argv: Sequence[str] = ()) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    mode = p.add_mutually_exclusive_group(required=True)
    mode.add_argument("--write", action="store_true", help="rewrite README.md")
    mode.add_argument("--check", action="store_true", help="exit 1 with a diff when README.md differs")
    p.add_argument("--run", type=Path, help="an existing `snagkg demo` run (default: train one)")
    p.add_argument("--readme", type=Path, default=ROOT / "README.md")
    p.add_argument("--threads", type=int, default=2)
    a = p.parse_args(list(argv) or None)
    old = a.readme.read_text(encoding="utf-8")
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        demo = a.run if a.run is not None else train_demo(tmp, a.threads)
        try:
            new = regenerate(old, scratch_runner(tmp / "work", demo, a.threads))
        except ValueError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
        finally:
            shutil.rmtree(tmp / "work", ignore_errors=True)
    if a.write:
        if new != old:
            a.readme.write_text(new, encoding="utf-8")
        print(f"{a.readme}: {'rewritten' if new != old else 'already current'}")
        return 0
    diff = list(difflib.unified_diff(old.split("\n"), new.split("\n"), "README.md", "generated", lineterm=""))
    print("\n".join(diff) if diff else "README.md outputs are current")
    return 1 if diff else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
