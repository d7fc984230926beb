"""Shared helpers for the benchmarks: data preparation, PyKEEN models, timing, tables.

The benchmarks read DB15K from ``../shared/data/mkgc/DB15K`` (relative to the
project root) and never write there: they link its five text files into a
private folder (default ``/tmp/bench_db15k``) and build feature tables in that
copy. PyKEEN is a benchmark-only dependency (``pip install -e '.[bench]'``).
"""
from __future__ import annotations

import gc
import os
import resource
import statistics
import sys
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Dict, Iterable, List, Optional, Sequence

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
#: DB15K's OpenKE files: ../shared/data/mkgc/DB15K beside the project, or $SNAGKG_BENCH_DATA (a GPU machine,
#: where ../shared does not travel: benchmarks/gpu_check.sh)
SHARED_DB15K = Path(os.environ.get("SNAGKG_BENCH_DATA") or ROOT.parent / "shared" / "data" / "mkgc" / "DB15K")
OPENKE_FILES = ("entity2id.txt", "relation2id.txt", "train2id.txt", "valid2id.txt", "test2id.txt")


def set_threads(n: int) -> None:
    import torch
    torch.set_num_threads(n)


def prepare_dataset(folder: Path, source: Path = SHARED_DB15K, features: Sequence[str] = ()) -> Path:
    """Link ``source``'s OpenKE files (and its ``features/`` tables) into ``folder`` and build the
    requested feature tables that are still missing there.

    ``relation``: ``snagkg features relations`` (relation-context counts from train);
    ``text``: a random 384-wide table imported with ``snagkg features import`` (timing
    only: it has the shape of all-MiniLM-L6-v2 name embeddings, not their content).
    """
    source = Path(source).resolve()  # the links must not depend on where ``folder`` is
    if not source.is_dir():
        raise SystemExit(f"benchmark data not found: {source} (the benchmarks need ../shared/data)")
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    for name in OPENKE_FILES:
        link = folder / name
        if not link.exists():
            link.symlink_to(source / name)
    from snagkg.cli.main import main as snagkg_main
    feats = folder / "features"
    if (source / "features").is_dir():  # the source's own tables (e.g. `snagkg synthetic`'s image and text)
        feats.mkdir(exist_ok=True)
        for table in (source / "features").iterdir():
            if not (feats / table.name).exists():
                (feats / table.name).symlink_to(table.resolve())
    if "relation" in features and not (feats / "relation.npy").exists():
        if snagkg_main(["features", "relations", "--dataset", str(folder)]) != 0:
            raise SystemExit("snagkg features relations failed")
    if "text" in features and not (feats / "text.npy").exists():
        n = sum(1 for _ in open(folder / "entity2id.txt")) - 1
        rand = folder / "random_text_384.npy"
        np.save(rand, np.random.default_rng(0).standard_normal((n, 384)).astype(np.float32))
        if snagkg_main(["features", "import", "--dataset", str(folder), "--modality", "text",
                        "--from", str(rand)]) != 0:
            raise SystemExit("snagkg features import failed")
    return folder


def require_pykeen():
    try:
        import pykeen  # noqa: F401
    except ImportError:
        raise SystemExit("PyKEEN is not installed: pip install -e '.[bench]' (pykeen==1.11.*)") from None


def add_device_option(ap) -> None:
    ap.add_argument("--device", default="cpu",
                    help="cpu (default) or cuda[:N]: where both libraries run; CUDA timings synchronise "
                         "the device before reading the clock, and peak memory is then the device's")


def is_cuda(device: Optional[str]) -> bool:
    return bool(device) and str(device).startswith("cuda")


def check_device(name: str) -> str:
    import torch
    if is_cuda(name) and not torch.cuda.is_available():
        raise SystemExit(f"--device {name}: CUDA is not available (torch {torch.__version__})")
    return name


def synchronize(device: Optional[str]) -> None:
    if is_cuda(device):
        import torch
        torch.cuda.synchronize(device)


def cuda_peak_mb(device: Optional[str], reset: bool = False) -> float:
    """The device's peak allocated memory since the last reset (MiB); NaN off CUDA."""
    if not is_cuda(device):
        return float("nan")
    import torch
    peak = torch.cuda.max_memory_allocated(device) / 2 ** 20
    if reset:
        torch.cuda.reset_peak_memory_stats(device)
    return peak


def pykeen_rotate(kg, dim: int = 128, margin: float = 12.0, temperature: float = 2.0, seed: int = 1,
                  p: int = 2, device: str = "cpu"):
    """PyKEEN's RotatE (``embedding_dim`` complex numbers) with the NSSA loss, on ``kg``'s train triples.

    ``p``: the norm of ``h o r - t``. PyKEEN's default is 2 (the L2 norm of the complex
    vector); ``p=1`` is the sum of the coordinates' moduli, the distance of the RotatE paper
    and of snagkg, for which the margin of 12 was chosen.
    """
    import torch
    from pykeen.losses import NSSALoss
    from pykeen.models import RotatE
    from pykeen.triples import CoreTriplesFactory

    tf = CoreTriplesFactory.create(torch.from_numpy(kg.train).long(), num_entities=kg.num_entities,
                                   num_relations=kg.num_relations)
    model = RotatE(triples_factory=tf, embedding_dim=dim,
                   loss=NSSALoss(margin=margin, adversarial_temperature=temperature), random_seed=seed)
    if p != 2:
        model.interaction = _rotate_interaction_p(p)
    return model.to(device), tf


def add_pykeen_norm_option(parser, default: int) -> None:
    """``--pykeen-norm``: the norm of PyKEEN's RotatE (:func:`pykeen_rotate`'s ``p``)."""
    parser.add_argument("--pykeen-norm", type=int, default=default, choices=(1, 2),
                        help=f"PyKEEN RotatE's norm of h o r - t: 1 = the sum of moduli (snagkg's and the RotatE "
                             f"paper's distance), 2 = PyKEEN's default model (default here: {default})")


def _rotate_interaction_p(p: int):
    """PyKEEN's RotatE interaction with the norm ``p``.

    PyKEEN 1.11.1's ``RotatEInteraction`` takes ``p`` but its ``forward`` always computes
    the L2 norm (``negative_norm(h - t, p=2)``); this subclass changes only that call.
    Which side is rotated (the cheaper one) is decided as in PyKEEN.
    """
    import torch
    from pykeen.nn.modules import RotatEInteraction
    from pykeen.utils import ensure_complex, estimate_cost_of_sequence, negative_norm

    class RotatEInteractionP(RotatEInteraction):
        def forward(self, h, r, t):
            h, r, t = ensure_complex(h, r, t)
            if estimate_cost_of_sequence(h.shape, r.shape) < estimate_cost_of_sequence(r.shape, t.shape):
                h = h * r
            else:  # |h o r - t| = |h - conj(r) o t| for |r| = 1
                t = t * torch.conj(r)
            return negative_norm(h - t, p=self.p, power_norm=self.power_norm)

    return RotatEInteractionP(p=p)


def pykeen_rotate_tables(model, margin: float = 12.0):
    """A trained PyKEEN RotatE as snagkg's ranking inputs: ``(entity_vectors [N, 2k], scorer)``.

    The entity table becomes ``[re..., im...]`` rows and each relation its phases, so that
    :func:`snagkg.evaluation.rank_triples` computes ``sum_k |h_k r_k - t_k|`` (PyKEEN's
    distance with ``p=1``; heads are ranked by ``|h - t conj(r)|``, equal since ``|r| = 1``
    under PyKEEN's relation constrainer).
    """
    import math

    import torch

    from snagkg.tasks.completion.scorers import RotatE as SnagRotatE
    with torch.no_grad():
        ent = model.entity_representations[0](indices=None).detach().cpu()
        rel = model.relation_representations[0](indices=None).detach().cpu()
        if not torch.is_complex(ent):
            ent, rel = torch.view_as_complex(ent), torch.view_as_complex(rel)
        vecs = torch.cat([ent.real, ent.imag], dim=-1).float().contiguous()
        scorer = SnagRotatE(rel.shape[0], vecs.shape[1], margin=margin)
        scorer.relation.copy_(torch.angle(rel).float() * (scorer.embedding_range / math.pi))
    return vecs, scorer


def median(xs: Iterable[float]) -> float:
    xs = list(xs)
    return float(statistics.median(xs)) if xs else float("nan")


def timed(fn: Callable[[], object], device: Optional[str] = None) -> float:
    """Seconds ``fn`` takes (on CUDA, until the device has finished its work)."""
    gc.collect()
    synchronize(device)
    t0 = time.perf_counter()
    fn()
    synchronize(device)
    return time.perf_counter() - t0


def peak_rss_mb() -> float:
    """Peak resident set size of this process so far (MiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def rss_mb() -> float:
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20
    except OSError:  # pragma: no cover - not Linux
        return float("nan")


class RssSampler:
    """Samples this process's RSS every ``interval`` seconds in a thread: the peak during a block."""

    def __init__(self, interval: float = 0.005):
        self.interval = interval
        self.peak = 0.0
        self._stop = False

    def __enter__(self):
        import threading
        self.base = rss_mb()
        self.peak = self.base
        self._stop = False
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def _run(self):
        while not self._stop:
            self.peak = max(self.peak, rss_mb())
            time.sleep(self.interval)

    def __exit__(self, *exc):
        self._stop = True
        self._thread.join()
        self.peak = max(self.peak, rss_mb())


def table(rows: List[Dict[str, object]], columns: Sequence[str]) -> str:
    """A GitHub-markdown table."""
    def fmt(v):
        if isinstance(v, float):
            return f"{v:.3g}" if abs(v) < 100 else f"{v:.1f}"
        return str(v)
    cells = [[fmt(r.get(c, "")) for c in columns] for r in rows]
    widths = [max(len(c), *(len(row[i]) for row in cells)) for i, c in enumerate(columns)]
    line = lambda vals: "| " + " | ".join(v.ljust(w) for v, w in zip(vals, widths)) + " |"  # noqa: E731
    out = [line(list(columns)), "|" + "|".join("-" * (w + 2) for w in widths) + "|"]
    out += [line(r) for r in cells]
    return "\n".join(out)


def environment() -> str:
    import platform

    import torch
    try:
        from importlib.metadata import version
        pk = version("pykeen")
    except Exception:
        pk = "not installed"
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    gpu = f", GPU {torch.cuda.get_device_name()}" if torch.cuda.is_available() else ""
    return (f"python {platform.python_version()}, torch {torch.__version__}{gpu}, pykeen {pk}, "
            f"{torch.get_num_threads()} torch threads, {os.cpu_count()} CPUs, load average {load:.1f}, "
            f"SNAGKG_COMPILE={os.environ.get('SNAGKG_COMPILE', '1')}")


@contextmanager
def quiet():
    """Silence PyKEEN's logging and warnings during a block."""
    import logging
    import warnings
    level = logging.root.manager.disable
    logging.disable(logging.WARNING)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            yield
        finally:
            logging.disable(level)


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def first(xs: Optional[List[float]]) -> float:
    return xs[0] if xs else float("nan")
