"""Defaults for an unseen graph: the starting configuration of a completion run without a preset.

A run resolved with neither a preset nor a config file (``snagkg train --dataset FILE``,
``snagkg.resolve_config(overrides=...)``) records the keys its caller set
(``RunConfig.explicit``); :func:`snagkg.api.run.train` then reads the graph, describes it as
:class:`GraphStats` and fills every other key that :func:`graph_defaults` names with the rule's
value, before the model is built. The values are ordinary config values: ``config.yaml`` and
``results.json`` hold them, a resumed run reads them back. A preset or a config file turns the
rule off; a key the caller set always keeps the caller's value.

The rule (every threshold from a measured run in BENCHMARKS.md; CPU, one seed each):

===================  =====================  ==============================  ====================
graph                entities < 5,000       5,000 to 99,999                 100,000 and more
===================  =====================  ==============================  ====================
hidden, lr, batch    128, 2e-3, 512         256, 1e-3, 1024                 128, 1e-3, 1024
epochs, eval, pat.   200, every 5, 4        300, every 10, 8                30, every 3, 4
validation triples   all                    all                             first 1,000
with features        SNAG fusion            gated plug-in                   SNAG fusion
negatives            per triple             shared below 4 triples/entity   shared
structure alone      SNAG fusion            plain RotatE                    plain RotatE
===================  =====================  ==============================  ====================

* **Sizes.** ``synthetic`` (2,000 entities: 59.41 test MRR) measured hidden 128, lr 2e-3, batch
  512, validation every 5 epochs, patience 4; ``db15k-cpu`` and ``mkg-w-cpu`` (12,842 and 15,000
  entities: 33.50, 34.48) hidden 256, lr 1e-3, batch 1024, at most 300 epochs, every 10,
  patience 8. :data:`SMALL_BELOW` (5,000) lies between them (their geometric mean, 5,068).
  The library's own defaults (lr 1e-4, 1,000 epochs: the paper's) gave test MRR 0.015 after 3
  epochs on DBP15K's Japanese graph (19,814 entities), hidden 64 with lr 1e-2 0.10 after 4.
* **Epochs.** The synthetic preset stopped at its 40-epoch cap with validation still rising
  (best epoch 35); a small graph's epoch costs seconds (2.4 s), so the rule allows 200 and
  leaves the end to early stopping (20 epochs without a gain, the preset's). Both CPU presets
  ran their 300 epochs to the cap (best epochs 280 and 300).
* **From 100,000 entities** (:data:`LARGE_FROM`) an epoch of the ``synthetic`` preset on the
  synthetic 100k graph cost 668 s on 2 threads idle (1,132 to 1,848 s on 1 thread beside another
  run) and a full validation 267 s (31-33 ns a ranked pair): the rule uses the width of
  the large-graph measurements (128; 5.1 GiB peak at 1M entities), trains 30 epochs (at 100k,
  781 steps each: the 23,000 steps of DB15K's 300 epochs) and validates on the first 1,000
  triples (``train.eval_limit``; the final valid/test metrics still rank every triple).
* **Modalities.** With feature tables and 5,000 to 99,999 entities the run is SNAG's fusion as a
  gated plug-in to RotatE (``structure_residual``, ``residual_gate``, GMNM on the feature tables
  only: ``noise.structure_scale`` 0), the best measured model on both DB15K (33.50 against 33.35
  for plain RotatE) and MKG-W (34.48 against 34.05). Below 5,000 it is the synthetic preset's
  SNAG fusion (the library's defaults for those keys): on the 2,000-entity synthetic graph the
  gated plug-in had validation MRR 0.076 after 15 epochs, the fusion 0.594 (the plug-in starts
  from RotatE and opens its gate slowly; the fusion reads the informative features at once).
  From 100,000 entities, where the rule trains 30 epochs, it is the fusion again: on the
  synthetic 100k graph (the rule's other values, seed 1, the first 2,000 test queries) the
  fusion tested 10.62 after 3 epochs against the plug-in's 6.58 (the ``synthetic`` preset:
  8.99) and the two were level at 30 (14.78 and 14.48; full validation 14.77 and 15.07); on
  MKG-W the study's fusion (structure noise 0.5, entity lr x4: BENCHMARKS.md, "What the encoder
  and the noise add") led the plug-in's validation through epoch 30 (27.1 to 27.9 against 21.3 to
  21.8 at epoch 20, over 3 seeds) and until about epoch 160 of 300. Its epoch cost 1.4 to 2.4
  times the plug-in's on that graph (132 s against 92 s median over 30 epochs, both beside
  other jobs).
  With the structure alone and 5,000 entities or more it is plain RotatE
  (``encoder.fusion`` false, ``noise.ratio`` 0): the fusion encoder adds nothing there and GMNM
  on the structure embedding cost DB15K 2.96 MRR (30.39 against 33.35). Below 5,000 it stays
  the synthetic preset's fusion: on the synthetic graph without feature tables (2,000 entities,
  40 epochs) plain RotatE tested 21.18, the preset's fusion of the structure alone 43.61.
* **Negatives** (:data:`SHARED_BELOW`): shared (one draw of 32 per 64 positives) from 5,000
  entities when a fused run has fewer than 4 train triples per entity, or from 100,000 entities:
  MKG-W (2.3 per entity) tested 34.48 shared against 34.13 per-triple at an epoch 5.8x cheaper;
  DB15K (6.2) 33.18 against 33.50 per-triple, 4.8x cheaper; below 5,000 entities a batch touches
  most of the graph either way and shared negatives saved nothing (synthetic: 2.98 s against
  2.83 s an epoch). ``fusion_scope`` stays ``auto`` (the batch path whenever a batch touches at
  most half of the graph).
* **Machine.** ``precision`` bf16 when the run fuses and the device multiplies bfloat16 in
  hardware (AMX or AVX512-BF16; CUDA that supports it): on MKG-W the same model (epoch-1 loss
  2.571055 fp32, 2.571061 bf16), DB15K's epoch 18.5 s against 33 s. Measured on CPUs only. The
  core count changes nothing: no measured setting depended on it.

Alignment runs keep their preset (``dbp15k``, chosen by ``snagkg train --task alignment``); no
rule applies to them (:meth:`snagkg.training.trainer.Task.graph_stats` returns ``None``).
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any, Callable, Dict, Iterable, Optional, Tuple

from snagkg.config.schema import RunConfig, _checked, apply_mapping

#: below this many entities: the synthetic preset's sizes (2,000 entities); from it: the CPU presets' (12,842, 15,000)
SMALL_BELOW = 5_000
#: from this many entities: a budget of about 23,000 steps and validation on the first LARGE_EVAL_LIMIT triples
LARGE_FROM = 100_000
LARGE_EVAL_LIMIT = 1_000
#: train triples per entity below which a fused run of 5,000+ entities shares its negatives (MKG-W 2.3, DB15K 6.2)
SHARED_BELOW = 4.0
SOURCE = "graph defaults"


@dataclass(frozen=True)
class GraphStats:
    """What the rule reads: the graph's size, the modalities the run uses and the machine."""
    entities: int
    relations: int
    train_triples: int
    modalities: Tuple[str, ...]      # the run's (its --modalities, else structure + every feature table)
    device: str = "cpu"              # "cpu" or "cuda"
    native_bf16: bool = False        # the device multiplies bfloat16 matrices in hardware

    @property
    def triples_per_entity(self) -> float:
        """Train triples per entity (MKG-W 2.3, DB15K 6.2, the synthetic graph 9.6)."""
        return self.train_triples / max(self.entities, 1)

    @property
    def features(self) -> Tuple[str, ...]:
        """The run's modalities other than the structure."""
        return tuple(m for m in self.modalities if m != "structure")


def graph_defaults(stats: GraphStats) -> Dict[str, Any]:
    """The rule: dotted config key -> value for a graph described by ``stats`` (see the module doc)."""
    out: Dict[str, Any] = {}
    if stats.entities < SMALL_BELOW:
        out.update({"encoder.hidden": 128, "train.lr": 0.002, "train.batch_size": 512,
                    "train.epochs": 200, "train.eval_every": 5, "train.patience": 4})
    elif stats.entities < LARGE_FROM:
        out.update({"encoder.hidden": 256, "train.lr": 0.001, "train.batch_size": 1024,
                    "train.epochs": 300, "train.eval_every": 10, "train.patience": 8})
    else:
        out.update({"encoder.hidden": 128, "train.lr": 0.001, "train.batch_size": 1024,
                    "train.epochs": 30, "train.eval_every": 3, "train.patience": 4,
                    "train.eval_limit": LARGE_EVAL_LIMIT})
    if stats.features:
        if SMALL_BELOW <= stats.entities < LARGE_FROM:  # SNAG's fusion as a gated plug-in to RotatE (the CPU presets)
            out.update({"completion.structure_residual": True, "completion.residual_gate": True,
                        "noise.structure_scale": 0.0})
        shared = stats.entities >= LARGE_FROM or (
            stats.entities >= SMALL_BELOW and stats.triples_per_entity < SHARED_BELOW)
        out.update({"completion.negatives_scheme": "shared" if shared else "per_triple",
                    "precision": "bf16" if stats.native_bf16 else "fp32"})
    elif stats.entities >= SMALL_BELOW:  # the structure alone: plain RotatE (the rotate CPU presets)
        out.update({"modalities": ("structure",), "encoder.fusion": False, "noise.ratio": 0.0,
                    "completion.negatives_scheme": "per_triple"})
    else:  # the synthetic preset's SNAG fusion, here of the structure alone
        out.update({"completion.negatives_scheme": "per_triple",
                    "precision": "bf16" if stats.native_bf16 else "fp32"})
    return out


#: a rule value is kept only while the merged config satisfies its condition (a key the caller set
#: may contradict it: ``--no-structure-residual`` leaves no gate to open, ``--modalities structure
#: --structure-residual`` keeps the encoder)
_REQUIRES: Dict[str, Callable[[RunConfig], bool]] = {
    "completion.residual_gate": lambda c: c.completion.structure_residual,
    "noise.structure_scale": lambda c: c.completion.structure_residual,
    "encoder.fusion": lambda c: not c.completion.structure_residual and tuple(c.modalities or ()) == ("structure",),
    "noise.ratio": lambda c: not c.encoder.fusion,
    "precision": lambda c: c.encoder.fusion,
}


def _merged(cfg: RunConfig, values: Dict[str, Any]) -> RunConfig:
    nested: Dict[str, Any] = {}
    for key, value in values.items():
        section, _, name = key.rpartition(".")
        if section:
            nested.setdefault(section, {})[name] = list(value) if isinstance(value, tuple) else value
        else:
            nested[name] = list(value) if isinstance(value, tuple) else value
    return apply_mapping(cfg, nested, SOURCE)


def apply_graph_defaults(cfg: RunConfig, stats: GraphStats,
                         explicit: Optional[Iterable[str]] = None) -> Tuple[RunConfig, Dict[str, Any]]:
    """``cfg`` with the rule's values for ``stats`` on every key not in ``explicit`` (default:
    ``cfg.explicit``), and those values (dotted key -> value, in the rule's order).

    A config that does not ask for the rule (``explicit`` and ``cfg.explicit`` both ``None``: a
    preset, a config file, a saved run) is returned as it is, and so is the returned config: it
    no longer asks, so applying the rule twice changes nothing."""
    if explicit is None and cfg.explicit is None:
        return cfg, {}
    given = set(cfg.explicit if explicit is None else explicit)
    chosen = {k: v for k, v in graph_defaults(stats).items() if k not in given}
    while True:  # drop a value whose condition the merged config breaks, until none does
        merged = _merged(cfg, chosen)
        broken = [k for k in chosen if k in _REQUIRES and not _REQUIRES[k](merged)]
        if not broken:
            break
        for k in broken:
            del chosen[k]
    merged = _checked(replace(merged, explicit=None), [(SOURCE, {}, {})], SOURCE)
    return merged, chosen


def _text(value: Any) -> str:
    if isinstance(value, bool):
        return "on" if value else "off"
    if isinstance(value, tuple):
        return ",".join(value)
    if isinstance(value, float):
        return f"{value:g}"
    return f"{value:,}" if isinstance(value, int) else str(value)


#: how the one line names each key (dotted key -> words)
LABELS = {"encoder.hidden": "hidden", "train.lr": "lr", "train.batch_size": "batch", "train.epochs": "epochs",
          "train.eval_every": "eval every", "train.patience": "patience", "train.eval_limit": "validation triples",
          "completion.structure_residual": "structure residual", "completion.residual_gate": "residual gate",
          "noise.structure_scale": "structure noise", "completion.negatives_scheme": "negatives",
          "precision": "precision", "modalities": "modalities", "encoder.fusion": "fusion",
          "noise.ratio": "noise"}


def describe(stats: GraphStats, chosen: Dict[str, Any]) -> str:
    """One line: the graph's statistics and the values the rule chose for it."""
    values = ", ".join(f"{LABELS.get(k, k)} {_text(v)}" for k, v in chosen.items())
    return (f"defaults for this graph ({stats.entities:,} entities, {stats.triples_per_entity:.1f} train "
            f"triples/entity, {stats.relations:,} relations, modalities {','.join(stats.modalities)}; "
            f"{stats.device}{', bf16 units' if stats.native_bf16 else ''}): {values} "
            f"(a preset or explicit settings change them)")


def stats_dict(stats: GraphStats) -> Dict[str, Any]:
    """``stats`` as plain JSON values (what ``results.json`` keeps under ``extra.graph_defaults``)."""
    return {"entities": stats.entities, "relations": stats.relations, "train_triples": stats.train_triples,
            "triples_per_entity": round(stats.triples_per_entity, 3), "modalities": list(stats.modalities),
            "device": stats.device, "native_bf16": stats.native_bf16}
