"""The ``snagkg train`` flags: ONE table of config keys and the flags that set them.

Each :class:`Flag` names a dotted config key, its flag (``--`` + the last part
of the key, ``_`` -> ``-``, unless given), how it reads its value, its help
text and the tasks it applies to. :func:`snagkg.cli.build_parser` adds the
flags from :data:`TRAIN_FLAGS`, :func:`snagkg.cli._train_overrides` turns
the parsed flags into config overrides, and :func:`snagkg.config.cli_flag`
names the flag of a key in error messages. Nothing here imports the rest
of :mod:`snagkg`.
"""
from __future__ import annotations

import argparse
from dataclasses import dataclass
from typing import Any, Callable, Dict, Optional, Tuple

COMPLETION = ("completion",)
ALIGNMENT = ("alignment",)


def int_list(text: str) -> Tuple[int, ...]:
    """``"15,10"`` -> ``(15, 10)`` (a ValueError, which argparse reports, for anything else)."""
    return tuple(int(part) for part in text.split(","))


@dataclass(frozen=True)
class Flag:
    """One ``snagkg train`` flag and the config key it sets."""

    key: str                                   # dotted config key (``train.lr``)
    help: str
    type: Optional[Callable[[str], Any]] = str  # parses the flag's value; None: a switch without a value
    sets: Any = True                            # a switch: the value it gives the key (``--no-*``: False)
    flag: str = ""                              # default: "--" + last part of the key, "_" -> "-"
    choices: Optional[Tuple[str, ...]] = None
    tasks: Optional[Tuple[str, ...]] = None     # the tasks it applies to (None: every task)
    negatable: bool = False                     # a switch with a --no-* twin (turns off what a preset set)

    def __post_init__(self) -> None:
        if not self.flag:
            object.__setattr__(self, "flag", "--" + self.key.split(".")[-1].replace("_", "-"))

    @property
    def dest(self) -> str:
        """The attribute of the parsed namespace (``--no-fusion`` -> ``no_fusion``)."""
        return self.flag[2:].replace("-", "_")

    def applies_to(self, task: str) -> bool:
        """Whether the flag means anything for ``task``."""
        return self.tasks is None or task in self.tasks

    def add_to(self, parser: argparse.ArgumentParser) -> None:
        """Add the flag to ``parser`` (absent: ``None``, so a preset or a config file decides)."""
        text = f"{' or '.join(self.tasks)} only: {self.help}" if self.tasks else self.help
        if self.type is None and self.negatable:
            parser.add_argument(self.flag, dest=self.dest, action=argparse.BooleanOptionalAction, default=None,
                                help=text)
        elif self.type is None:
            parser.add_argument(self.flag, dest=self.dest, action="store_const", const=self.sets, help=text)
        else:
            parser.add_argument(self.flag, dest=self.dest, type=self.type, choices=self.choices, help=text)

    def value(self, args: argparse.Namespace) -> Any:
        """The value the flag gives its key in ``args``; ``None`` if it was not given."""
        return getattr(args, self.dest, None)


#: every ``snagkg train`` flag that sets a config key, in ``--help`` order
TRAIN_FLAGS: Tuple[Flag, ...] = (
    Flag("task", "completion (default) or alignment (default preset: dbp15k)"),  # choices: the task registry
    Flag("dataset", "dataset: 'synthetic', an OpenKE folder, a triples file (.tsv, .csv, .txt, .nt, .ttl, .nq, "
         "optionally .gz) or a folder of train/valid/test triples files"),
    Flag("dataset_split", "one triples file: train,valid,test shares (default 0.8,0.1,0.1)", flag="--split",
         tasks=COMPLETION),
    Flag("dataset_columns", "TSV/CSV triples: the role of each column as a permutation of h,r,t, e.g. h,t,r "
         "(default: the header's order, else h,r,t)", flag="--columns", tasks=COMPLETION),
    Flag("valid_from_train", "hold out this share of train as the validation split, replacing the dataset's "
         "own (test is never touched)", float, tasks=COMPLETION),
    Flag("split_seed", "seed of --split and --valid-from-train (default 0, whatever --seed)", int,
         tasks=COMPLETION),
    Flag("train.epochs", "most epochs to train", int),
    Flag("train.lr", "learning rate", float),
    Flag("completion.embedding_lr_scale", "learning rate of the structure embedding table as a multiple of --lr",
         float, tasks=COMPLETION),
    Flag("completion.encoder_lr_scale", "learning rate of the encoder (projections, fusion) as a multiple of --lr",
         float, tasks=COMPLETION),
    Flag("completion.relation_lr_scale", "learning rate of the scorer's relation parameters as a multiple of --lr",
         float, tasks=COMPLETION),
    Flag("completion.structure_residual", "add the structure embedding row to the fused vector (SNAG's fusion "
         "plugged into RotatE; --no-structure-residual turns a preset's off)", None, tasks=COMPLETION,
         negatable=True),
    Flag("completion.residual_gate", "with --structure-residual: scale the fused vector by a learned gate that "
         "starts at 0, so training starts from plain RotatE (--no-residual-gate: off)", None, tasks=COMPLETION,
         negatable=True),
    Flag("completion.fusion_scope", "which entities a training step fuses: auto (default), batch (only those "
         "the batch touches) or table (all)", choices=("auto", "batch", "table"), tasks=COMPLETION),
    Flag("completion.feature_storage", "feature tables of an OpenKE folder: auto (default; mmap above 1 GiB), "
         "memory or mmap (numpy memory maps, read on demand)", choices=("auto", "memory", "mmap"), tasks=COMPLETION),
    Flag("completion.entity_updates", "entity table updates: auto (default), dense (Adam, every row) or sparse "
         "(only the rows a batch touches)", choices=("auto", "dense", "sparse"), tasks=COMPLETION),
    Flag("completion.negatives_scheme", "training negatives: per_triple (default; K entities drawn per "
         "positive) or shared (one draw of K entities per chunk of --shared-chunk positives, PyTorch-BigGraph)",
         choices=("per_triple", "shared"), tasks=COMPLETION),
    Flag("completion.shared_chunk", "with --negatives-scheme shared: positives that share one draw of "
         "negatives (default 64)", int, tasks=COMPLETION),
    Flag("train.batch_size", "training batch size (triples, or links for alignment)", int),
    Flag("train.eval_every", "evaluate on the validation split every N epochs", int),
    Flag("train.patience", "stop after N evaluations without a better validation MRR", int),
    Flag("train.eval_limit", "rank only the first N validation triples during training, for the selection "
         "(the final valid/test metrics rank every triple; 0: all)", int, tasks=COMPLETION),
    Flag("train.eval_candidates", "rank validation and the final valid/test metrics against N sampled filtered "
         "candidates per query instead of every entity (results carry \"sampled\": N; 0: every entity)", int,
         tasks=COMPLETION),
    Flag("train.test_limit", "rank only the first N test queries in the final metrics (a sample on large "
         "graphs: the loaders shuffle the splits; results carry \"limit\": N; 0: all)", int),
    Flag("encoder.hidden", "width of the encoder (and of the RotatE entity vectors)", int),
    Flag("encoder.readout", "graph, mean, attention_weighted or global_weighted"),
    Flag("modalities", "comma-separated, e.g. structure,image,text"),
    Flag("noise.ratio", "rho: probability that a modality row is noised (0 disables)", float, flag="--noise-ratio"),
    Flag("noise.mask", "eps: how much of a noised row is replaced", float, flag="--mask-ratio"),
    Flag("noise.structure_scale", "the structure embedding is noised with (rho, eps) times this (SPEC: 1 for "
         "completion, 0.5 in the alignment code; 0 keeps it clean)", float, flag="--structure-noise-scale"),
    Flag("ties", "how ties are ranked in the metrics", choices=("realistic", "optimistic")),
    Flag("alignment.iterative", "turn iterative learning (adding mutual nearest neighbours as links) off", None,
         sets=False, flag="--no-iterative", tasks=ALIGNMENT),
    Flag("alignment.batching", "what a training step runs the GAT over: auto (default; sampled from 20,000 "
         "entities in both graphs together), whole (both whole graphs) or sampled (only the batch's entities and "
         "their sampled neighbourhoods)", choices=("auto", "whole", "sampled"), tasks=ALIGNMENT),
    Flag("alignment.gat_fanout", "with sampled batching: neighbours drawn per entity and hop, one value per GAT "
         "layer (hop 1 first) or one for all, e.g. 15,10 (default 10)", int_list, tasks=ALIGNMENT),
    Flag("seed", "random seed", int),
    Flag("device", "auto (default), cpu, cuda or cuda:N"),
    Flag("encoder.fusion", "with --modalities structure: no encoder, the structure embedding is the entity vector "
         "(the structure-only baseline, plain RotatE for completion; noise masking still applies)", None,
         sets=False, flag="--no-fusion"),
    Flag("precision", "fp32 (default), or bf16 for the encoder's matrix products (autocast; faster on CPUs with AMX "
         "and on recent GPUs, much slower on CPUs without bfloat16 units, which get a warning)",
         choices=("fp32", "bf16")),
)

_BY_KEY: Dict[str, Flag] = {f.key: f for f in TRAIN_FLAGS}


def flag_for(key: str) -> Optional[Flag]:
    """The :class:`Flag` that sets the dotted config ``key``, or ``None`` if no flag does."""
    return _BY_KEY.get(key)
