"""The user documentation (README.md, BENCHMARKS.md, docs/*.md) against the code: every documented
``snagkg`` command line parses, every dotted ``snagkg.`` name resolves, and the README's Python
examples run."""
from __future__ import annotations

import importlib
import os
import re
import shlex
from pathlib import Path

import pytest

from snagkg.cli.main import build_parser
from snagkg.runtime.errors import SnagError

ROOT = Path(__file__).resolve().parents[1]
DOCS = [ROOT / "README.md", ROOT / "BENCHMARKS.md", *sorted((ROOT / "docs").glob("*.md"))]
FENCE = re.compile(r"^```(\w*)\n(.*?)^```", re.S | re.M)
INLINE = re.compile(r"`(snagkg [^`]+)`")
NAME = re.compile(r"(?<![\w./-])snagkg(?:\.[A-Za-z_][A-Za-z0-9_]*)+")


def _command_lines():
    """``(file, command)`` for each ``snagkg ...`` command in a bash block or an inline code span."""
    out = []
    for doc in DOCS:
        text = doc.read_text(encoding="utf-8")
        for lang, body in FENCE.findall(text):
            if lang not in ("bash", "sh", ""):
                continue
            for line in body.replace("\\\n", " ").splitlines():
                for part in line.split("&&"):
                    part = part.split(" #")[0].strip()
                    if part.startswith("snagkg ") and "|" not in part and "[--" not in part:  # not a synopsis
                        out.append((doc.name, part))
        for span in INLINE.findall(text):  # the tables' training commands, which leave out --output
            span = " ".join(span.split())
            if span.startswith("snagkg train --dataset ") and "[" not in span and "|" not in span:
                out.append((doc.name, span + ("" if "--output" in span else " --output OUT")))
    return out


COMMANDS = _command_lines()


def test_the_docs_hold_commands():
    assert len(COMMANDS) > 40 and any(c.startswith("snagkg study ") for _, c in COMMANDS)


@pytest.mark.parametrize("doc,command", COMMANDS, ids=[f"{d}:{c[:60]}" for d, c in COMMANDS])
def test_documented_command_parses(doc, command):
    argv = shlex.split(command)[1:]
    try:
        build_parser().parse_args(argv)
    except SnagError as exc:
        pytest.fail(f"{doc}: `{command}` does not parse: {exc}")


def _resolve(dotted: str):
    parts = dotted.split(".")
    for i in range(len(parts), 0, -1):
        try:
            obj = importlib.import_module(".".join(parts[:i]))
        except ModuleNotFoundError:
            continue
        for attr in parts[i:]:
            obj = getattr(obj, attr)
        return obj
    raise ModuleNotFoundError(dotted)


NAMES = sorted({(doc.name, n) for doc in DOCS for n in NAME.findall(doc.read_text(encoding="utf-8"))})


@pytest.mark.parametrize("doc,name", NAMES, ids=[n for _, n in NAMES])
def test_documented_name_resolves(doc, name):
    try:
        _resolve(name)
    except (ModuleNotFoundError, AttributeError) as exc:
        pytest.fail(f"{doc} names {name}, which does not exist: {exc}")


def _python_blocks():
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    return [body for lang, body in FENCE.findall(text) if lang == "python"]


def test_readme_noise_and_generator_examples_run(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    blocks = [b for b in _python_blocks() if "gauss_modality_noise" in b or "SyntheticConfig" in b]
    assert len(blocks) == 2
    for block in blocks:
        exec(compile(block, "README.md", "exec"), {})
    assert (tmp_path / "triples.tsv").read_text().startswith("head\trelation\ttail\n")


@pytest.mark.slow
def test_readme_api_examples_run(tmp_path, monkeypatch):
    """The API walk-through (train, evaluate, load, predict, export, weights) at 2 epochs."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("OMP_NUM_THREADS", os.environ.get("OMP_NUM_THREADS", "2"))
    api = next(b for b in _python_blocks() if "snagkg.resolve_config" in b)
    use = next(b for b in _python_blocks() if "task.predict(" in b)
    assert '"train.epochs": 20' in api
    exec(compile(api.replace('"train.epochs": 20', '"train.epochs": 2'), "README.md", "exec"), {})
    exec(compile("import snagkg\n" + use.replace("runs/demo", "runs/api"), "README.md", "exec"), {})
    assert (tmp_path / "runs" / "api" / "results.json").is_file() and (tmp_path / "vectors.npz").is_file()
