"""``benchmarks/robustness_sides.py``: an alignment drop split by the sides of each test link that lost rows."""
import os
import re
import subprocess
import sys
from pathlib import Path

import snagkg

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "benchmarks" / "robustness_sides.py"


def _rows(out: str):
    """``{level: (mrr, {group: (mrr, links)})}`` from the script's Markdown table."""
    table = {}
    for line in out.splitlines():
        m = re.match(r"\| ([0-9.]+) \| ([0-9.]+) \| (.*) \| (.*) \| (.*) \|$", line)
        if not m:
            continue
        groups = {}
        for name, cell in zip(("neither", "one", "both"), m.groups()[2:]):
            if cell != "-":
                v, k = re.match(r"([0-9.]+) \((\d+)\)", cell).groups()
                groups[name] = (float(v), int(k))
        table[float(m.group(1))] = (float(m.group(2)), groups)
    return table


def test_groups_partition_the_links_and_match_the_robustness_sweep(alignment_run):
    env = {**os.environ, "PYTHONPATH": str(SCRIPT.parent)}
    out = subprocess.run([sys.executable, str(SCRIPT), str(alignment_run), "--modality", "relation",
                          "--levels", "0,0.5,1"], capture_output=True, text=True, env=env, check=True).stdout
    table = _rows(out)
    assert sorted(table) == [0.0, 0.5, 1.0]
    sweep = snagkg.robustness(alignment_run, modality="relation", levels=[0, 0.5, 1], write=False)
    links = sum(k for _, k in table[0.0][1].values())
    for level, metrics in zip(sweep.levels, sweep.metrics):
        mrr, groups = table[level]
        assert abs(mrr - 100 * metrics["mrr"]) < 0.051          # the same drop as `snagkg robustness`
        assert sum(k for _, k in groups.values()) == links      # every link in exactly one group
        # the link-weighted mean of the groups is the overall MRR (up to the table's rounding)
        assert abs(sum(v * k for v, k in groups.values()) / links - mrr) < 0.1
    assert set(table[0.0][1]) == {"neither"}                    # nothing dropped at level 0
    assert set(table[0.5][1]) == {"neither", "one", "both"}


def test_a_completion_run_is_refused_in_one_line(run):
    res = subprocess.run([sys.executable, str(SCRIPT), str(run)], capture_output=True, text=True,
                         env={**os.environ, "PYTHONPATH": str(SCRIPT.parent)})
    assert res.returncode != 0 and res.stderr.strip().startswith("error:") and "alignment run" in res.stderr
