"""docs/readme_outputs.py: the README's shown outputs are regenerated from a real demo run, and
the README holds what that run prints (slow: trains the demo)."""
from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
_spec = importlib.util.spec_from_file_location("readme_outputs", ROOT / "docs" / "readme_outputs.py")
readme_outputs = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(readme_outputs)
MARKER = readme_outputs.MARKER


def _fake(outputs):
    calls = []

    def run(command):
        calls.append(command)
        return outputs[command]
    run.calls = calls
    return run


def test_outputs_after_a_command_are_replaced_and_comments_dropped():
    text = "\n".join(["intro", MARKER, "```bash", "snagkg a --x 1   # says a", "# old 1", "# old 2",
                      "snagkg b", "```", "# not in a block", "snagkg c", ""])
    run = _fake({"snagkg a --x 1": (0, "new 1\n\nnew 3  \n"), "snagkg b": (0, "b prints\n")})
    new = readme_outputs.regenerate(text, run)
    assert new.split("\n") == ["intro", MARKER, "```bash", "snagkg a --x 1   # says a", "# new 1", "#",
                               "# new 3", "snagkg b", "```", "# not in a block", "snagkg c", ""]
    assert run.calls == ["snagkg a --x 1", "snagkg b"]   # b is run (must work) but shows nothing


def test_a_shortened_output_keeps_its_length():
    text = "\n".join([MARKER, "```bash", "snagkg a", "# 1", "# ...", "```"])
    new = readme_outputs.regenerate(text, _fake({"snagkg a": (0, "x\ny\nz\n")}))
    assert new.split("\n")[3:5] == ["# x", "# ..."]


def test_a_failing_command_names_its_line_and_an_error_output_is_shown():
    text = "\n".join(["a", MARKER, "```bash", "snagkg bad", "```"])
    with pytest.raises(ValueError, match=r"README.md:4: `snagkg bad` failed \(1\)"):
        readme_outputs.regenerate(text, _fake({"snagkg bad": (1, "Traceback\n")}))
    text = "\n".join([MARKER, "```bash", "snagkg typo", "# old", "```"])
    new = readme_outputs.regenerate(text, _fake({"snagkg typo": (2, "error: unknown relation\n")}))
    assert "# error: unknown relation" in new


def test_a_marker_needs_a_bash_block():
    with pytest.raises(ValueError, match="README.md:2"):
        readme_outputs.regenerate(f"{MARKER}\ntext\n", _fake({}))


def test_the_readme_marks_its_demo_outputs():
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    assert text.count(MARKER) >= 3
    assert readme_outputs.regenerate(text, lambda c: (0, "")) != text   # the marked blocks show outputs


@pytest.mark.slow
def test_the_readme_outputs_are_what_the_demo_run_prints(tmp_path, capsys):
    """Trains ``snagkg demo`` (seed 1, 2 threads, as the README says) and regenerates every marked
    block: the README must already hold those outputs."""
    status = readme_outputs.main(["--check"])
    assert status == 0, capsys.readouterr().out
