"""``snagkg features {text,import,relations,image,attributes,numeric,names}``: build modality feature tables.

Each command writes ``features/<modality>.npy`` (float32, one row per entity
id, NaN rows for entities missing the modality) and ``<modality>.missing.txt``
(one id per line) inside the dataset folder, or beside a triples file: the
files the dataset loader reads. ``--dataset`` takes every form ``snagkg train
--dataset`` takes. Files are written atomically and only after every check has
passed; an existing table is replaced only with ``--overwrite``.
A one-line summary goes to stderr.
"""
from __future__ import annotations

import argparse
import sys

from snagkg.cli.features_raw import (
    RAW_COMMANDS,
    add_dataset_arguments,
    add_text_source_arguments,
    register_raw,
    target,
    text_from_descriptions,
)
from snagkg.features.extractors import DEFAULT_TEXT_ENCODER, FEATURE_EXTRACTORS
from snagkg.features.importing import import_features
from snagkg.features.relations import build_relation_features
from snagkg.features.text import build_text_features
from snagkg.runtime.errors import SnagError


def cmd_text(a: argparse.Namespace) -> int:

    s = text_from_descriptions(a) or build_text_features(
        target(a), output=a.output, batch_size=a.batch_size, device=a.device, encoder=a.encoder,
        progress=False if a.no_progress else None)
    print(s.line(), file=sys.stderr)
    return 0


def cmd_import(a: argparse.Namespace) -> int:

    s = import_features(target(a), a.modality, a.source, output=a.output, trust_pickle=a.trust_pickle, key=a.key)
    print(s.line(), file=sys.stderr)
    return 0


def cmd_relations(a: argparse.Namespace) -> int:

    s = build_relation_features(target(a), top=a.top, output=a.output, log1p=a.log1p,
                                valid_from_train=a.valid_from_train, split_seed=a.split_seed, split=a.split)
    print(s.line(), file=sys.stderr)
    return 0


def _no_subcommand(a: argparse.Namespace) -> int:
    raise SnagError("features: choose a sub-command: text, import, relations, image, attributes, numeric or names "
                    "(see snagkg features -h)")


def register(sub) -> None:
    """Add ``features`` to the ``snagkg`` sub-commands ``sub`` (called by :func:`snagkg.cli.build_parser`)."""

    f = sub.add_parser("features", help="build or import modality feature tables (features/<modality>.npy)",
                       description="Write features/<modality>.npy (float32, one row per entity id, NaN rows "
                                   "for entities missing the modality) and <modality>.missing.txt inside the dataset "
                                   "folder, or beside a triples file: the files the dataset loader reads; "
                                   "atomically, only after every check has passed, and over an existing table only "
                                   "with --overwrite.")
    f.set_defaults(func=_no_subcommand)
    names = ("text", "import", "relations") + RAW_COMMANDS
    fs = f.add_subparsers(dest="features_command", metavar="{" + ",".join(names) + "}", parser_class=type(f))

    t = fs.add_parser("text", help="encode entity names or descriptions with a frozen text encoder "
                                   "-> features/text.npy")
    add_dataset_arguments(t)
    t.add_argument("--output", help="output .npy (default: DATASET/features/text.npy)")
    t.add_argument("--batch-size", type=int, default=256)
    t.add_argument("--device", default="auto", help="auto (default), cpu, cuda or cuda:N")
    t.add_argument("--encoder", default=DEFAULT_TEXT_ENCODER,
                   help=f"feature extractor (default {DEFAULT_TEXT_ENCODER}; known: "
                        f"{', '.join(FEATURE_EXTRACTORS.names())})")
    t.add_argument("--no-progress", action="store_true")
    add_text_source_arguments(t)
    t.set_defaults(func=cmd_text)

    i = fs.add_parser("import", help="convert existing vectors (.npy/.npz/.pt/.pth/.pkl) into features/NAME.npy")
    add_dataset_arguments(i, alignment=True)
    i.add_argument("--modality", required=True, help="modality name, e.g. image (not 'structure')")
    i.add_argument("--from", dest="source", required=True, metavar="FILE",
                   help=".npy/.npz table [entities x width], torch tensor or dict, or a pickled dict")
    i.add_argument("--output", help="output .npy (default: DATASET/features/MODALITY.npy)")
    i.add_argument("--key", help="pick one array of an .npz archive, or one entry of a dict")
    i.add_argument("--trust-pickle", action="store_true",
                   help="allow unpickling (.pkl/.pickle, or a torch file weights_only refuses): it can run code")
    i.set_defaults(func=cmd_import)

    r = fs.add_parser("relations", help="relation-context counts from train -> features/relation.npy")
    add_dataset_arguments(r)
    r.add_argument("--split", metavar="TRAIN,VALID,TEST",
                   help="a single triples file's split, as given to `snagkg train --split` (with --split-seed)")
    r.add_argument("--top", type=int, default=1000, help="count over the TOP most frequent train relations")
    r.add_argument("--output", help="output .npy (default: DATASET/features/relation.npy)")
    r.add_argument("--log1p", action="store_true", help="write log(1 + count) instead of raw counts")
    r.add_argument("--valid-from-train", type=float, default=0.0, metavar="FRACTION",
                   help="count without the train triples that `snagkg train --valid-from-train FRACTION` holds "
                        "out as validation (same --split-seed), so they do not leak into the features")
    r.add_argument("--split-seed", type=int, default=0, help="seed of --valid-from-train (default 0, as in train)")
    r.set_defaults(func=cmd_relations)
    register_raw(fs)
