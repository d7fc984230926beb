"""``snagkg report STUDY_DIR``: one self-contained HTML page of a study (:mod:`snagkg.api.study`).

The page holds the variants' metrics over seeds, the paired differences with their intervals (and
whether each is resolved), MRR against the noise intensity with error bars (one standard deviation
over seeds), and each robustness sweep as MRR against the share perturbed, one line per variant with
a band of one standard deviation over seeds. Plots are PNG data URIs: the page needs no network;
``figures=`` also writes them as PNG files.
Needs the ``report`` extra (jinja2 and matplotlib).
"""
from __future__ import annotations

from pathlib import Path
from typing import List, Optional, Tuple

from snagkg.api.report import _deps
from snagkg.api.report_plots import data_uri, png_bytes
from snagkg.api.study import SPEC_FILE
from snagkg.api.study_summary import StudySummary, summarize_study
from snagkg.runtime.errors import PathLike, SnagError
from snagkg.runtime.io import write_bytes, write_text
from snagkg.runtime.version import __version__

TEMPLATE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>snagkg study: {{ name }}</title>
<style>
body { font-family: system-ui, sans-serif; margin: 2rem auto; max-width: 70rem; color: #222; }
table { border-collapse: collapse; margin: 0.5rem 0 1.5rem; }
th, td { border: 1px solid #ccc; padding: 0.25rem 0.6rem; text-align: right; }
th:first-child, td:first-child { text-align: left; }
.no { color: #a33; } .yes { color: #262; } img { max-width: 100%; }
</style></head><body>
<h1>Study {{ name }}</h1>
<p>{{ runs }} runs finished{% if unfinished %}, {{ unfinished|length }} unfinished ({{ unfinished|join(", ") }}){% endif %}.
Test metrics in percent; mean &plusmn; standard deviation over seeds.</p>
<h2>Variants</h2>
<table><tr><th>variant</th><th>seeds</th><th>MRR</th><th>H@1</th><th>H@10</th><th>best at the last epoch</th></tr>
{% for v in variants %}<tr><td>{{ v.name }}</td><td>{{ v.seeds|join(", ") }}</td>
{% for k in ("mrr", "hits@1", "hits@10") %}<td>{% if k in v.metrics %}{{ "%.2f"|format(100 * v.metrics[k].mean) }} &plusmn; {{ "%.2f"|format(100 * v.metrics[k].std) }}{% else %}-{% endif %}</td>{% endfor %}
<td>{{ v.at_cap }} of {{ v.seeds|length }}</td></tr>
{% endfor %}</table>
{% if differences %}<h2>Differences</h2>
<p>MRR of a minus MRR of b; the interval is a 95% paired bootstrap over the test queries of every seed; the seed range
is the smallest and largest per-seed difference. A difference whose interval includes 0 is not shown by this study.</p>
<table><tr><th>a - b</th><th>mean</th><th>95% interval</th><th>seed range</th><th>resolved</th></tr>
{% for d in differences %}<tr><td>{{ d.a }} - {{ d.b }}</td><td>{{ "%+.2f"|format(100 * d.mean) }}</td>
<td>[{{ "%+.2f"|format(100 * d.low) }}, {{ "%+.2f"|format(100 * d.high) }}]</td>
<td>{{ "%+.2f"|format(100 * d.seed_low) }} to {{ "%+.2f"|format(100 * d.seed_high) }}</td>
<td class="{{ 'yes' if d.resolved else 'no' }}">{{ "yes" if d.resolved else "no: not shown" }}</td></tr>
{% endfor %}</table>{% endif %}
{% if intensity %}<h2>Noise intensity</h2><img alt="MRR against {{ intensity_key }}" src="{{ intensity }}">{% endif %}
{% if sweeps %}<h2>Robustness</h2>{% for title, img in sweeps %}<h3>{{ title }}</h3><img alt="{{ title }}" src="{{ img }}">{% endfor %}
{% if ratios %}<p>MRR lost by {{ ratio_of[0] }} as a share of that lost by {{ ratio_of[1] }} (mean over the levels above 0; 1: no difference):</p><ul>
{% for r in ratios %}<li>{{ r[0] }}, {{ r[1] }}: {{ "%.3f"|format(r[2].mean) }} (seeds {{ "%.3f"|format(r[2].low) }} to {{ "%.3f"|format(r[2].high) }})</li>{% endfor %}</ul>{% endif %}{% endif %}
<p><small>snagkg {{ version }}</small></p>
</body></html>
"""


def _intensity_plot(Figure, summary: StudySummary) -> Optional[bytes]:
    if not summary.intensity or not summary.intensity[1]:
        return None
    key, points = summary.intensity
    fig = Figure(figsize=(5.5, 3.5))
    ax = fig.add_subplot()
    xs, ys = [x for x, _, _ in points], [100 * s.mean for _, _, s in points]
    ax.errorbar(xs, ys, yerr=[100 * s.std for _, _, s in points], marker="o", capsize=4)
    counts = {s.count for _, _, s in points}
    if len(counts) > 1:  # say which points rest on fewer seeds
        for x, y, (_, _, s) in zip(xs, ys, points):
            ax.annotate(f"n={s.count}", (x, y), textcoords="offset points", xytext=(6, 4), fontsize=8)
    seeds = f"{counts.pop()} seeds" if len(counts) == 1 else "n seeds"
    ax.set_title(f"mean and standard deviation over {seeds}", fontsize=9)
    ax.set_xlabel(key)
    ax.set_ylabel("test MRR (%)")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    return png_bytes(fig)


def _sweep_plots(Figure, summary: StudySummary) -> List[Tuple[str, str, bytes]]:
    """(title, file name, PNG) of each (pattern, modality) sweep."""
    out = []
    keys = sorted({(s.pattern, s.modality) for s in summary.sweeps})
    for pattern, modality in keys:
        fig = Figure(figsize=(5.5, 3.5))
        ax = fig.add_subplot()
        for s in summary.sweeps:
            if (s.pattern, s.modality) != (pattern, modality):
                continue
            mean = [100 * m.mean for m in s.mrr]
            sd = [100 * m.std for m in s.mrr]
            ax.plot(s.levels, mean, marker="o", label=s.variant)
            ax.fill_between(s.levels, [a - b for a, b in zip(mean, sd)], [a + b for a, b in zip(mean, sd)], alpha=0.2)
        ax.set_title(f"{pattern}, {modality}: mean and one standard deviation over seeds", fontsize=9)
        ax.set_xlabel("share of entities perturbed")
        ax.set_ylabel("test MRR (%)")
        ax.legend()
        ax.grid(alpha=0.3)
        fig.tight_layout()
        out.append((f"{pattern}, {modality}", f"robustness-{pattern}-{modality}.png", png_bytes(fig)))
    return out


def write_study_report(folder: PathLike, output: PathLike, samples: int = 2000,
                       figures: Optional[PathLike] = None) -> Path:
    """Write the HTML page of the study in ``folder`` to ``output`` (atomically); returns its path.

    With ``figures``, each plot is also written there as a PNG file (``intensity.png``,
    ``robustness-<pattern>-<modality>.png``: the page's bytes), for a paper or a Markdown page."""
    folder = Path(folder)
    if not (folder / SPEC_FILE).is_file():
        raise SnagError(f"not a study folder (no {SPEC_FILE})", folder)
    jinja2, Figure = _deps()
    summary = summarize_study(folder, samples=samples)
    out = Path(output)
    if out.is_dir():
        raise SnagError("output path is a folder; give a file name such as report.html", out)
    if figures is not None and Path(figures).exists() and not Path(figures).is_dir():
        raise SnagError("the figures path exists and is not a folder", figures)
    intensity, sweeps = _intensity_plot(Figure, summary), _sweep_plots(Figure, summary)
    if figures is not None:
        Path(figures).mkdir(parents=True, exist_ok=True)
        named = ([("intensity.png", intensity)] if intensity else []) + [(name, data) for _, name, data in sweeps]
        for name, data in named:
            write_bytes(Path(figures) / name, data)
    env = jinja2.Environment(autoescape=True)
    html = env.from_string(TEMPLATE).render(
        name=folder.name, runs=sum(len(v.seeds) for v in summary.variants), unfinished=summary.unfinished,
        variants=summary.variants, differences=summary.differences,
        intensity=data_uri(intensity) if intensity else None,
        intensity_key=summary.intensity[0] if summary.intensity else "",
        sweeps=[(title, data_uri(data)) for title, _, data in sweeps], ratios=summary.lost_ratio,
        ratio_of=summary.ratio_of, version=__version__)
    write_text(out, html)
    return out
