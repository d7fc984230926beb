"""Command line of the ``snagkg features`` commands that build modalities from raw data.

``features text --from/--property`` (descriptions), ``features image``,
``features attributes``, ``features numeric`` and ``features names``;
registered by :func:`snagkg.features.cli.register`.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from snagkg.features.common import FeatureTarget
from snagkg.features.descriptions import build_description_features
from snagkg.features.extractors import DEFAULT_TEXT_ENCODER, FEATURE_EXTRACTORS
from snagkg.features.image_encoders import DEFAULT_IMAGE_ENCODER, IMAGE_ENCODERS
from snagkg.features.images import build_image_features
from snagkg.features.literal_features import (
    build_attribute_features,
    build_numeric_features,
)
from snagkg.features.name_features import build_name_features
from snagkg.runtime.errors import SnagError

RAW_COMMANDS = ("image", "attributes", "numeric", "names")
DATASET_HELP = ("the dataset as `snagkg train --dataset` takes it: an OpenKE folder, a labelled (TSV/CSV) or RDF "
                "triples file, or a folder of train/valid/test files; the table goes to features/ beside the "
                "triples file (inside a folder), where train reads it")


def add_dataset_arguments(p: argparse.ArgumentParser, alignment: bool = False) -> None:
    """``--dataset``, ``--columns`` and ``--overwrite``, shared by every ``features`` command."""
    p.add_argument("--dataset", required=True,
                   help=DATASET_HELP + (" (or a DBP15K/OpenEA folder for alignment)" if alignment else ""))
    p.add_argument("--columns", metavar="h,r,t",
                   help="the column roles of a labelled triples file, as given to `snagkg train --columns`")
    p.add_argument("--overwrite", action="store_true", help="replace an existing table (default: refuse)")


def target(a: argparse.Namespace) -> FeatureTarget:
    """The dataset the command writes for, from ``--dataset``, ``--columns`` and ``--overwrite``."""
    return FeatureTarget(Path(a.dataset), columns=a.columns, overwrite=a.overwrite)


def add_text_source_arguments(t: argparse.ArgumentParser) -> None:
    """The ``features text`` options that read descriptions instead of entity names."""
    t.add_argument("--from", dest="source", metavar="FILE",
                   help="descriptions: a TSV entity<TAB>text (entity by name or id; '#' lines are comments); "
                        "an unknown entity is an error")
    t.add_argument("--property", metavar="P",
                   help="descriptions: the literal rows of property P (rdfs:comment, schema:description or a "
                        "full IRI) of an entity<TAB>property<TAB>value table (--literals, default "
                        "DATASET/literals.tsv)")
    t.add_argument("--literals", metavar="FILE", help="the entity<TAB>property<TAB>value table read by --property")
    t.add_argument("--fallback", choices=("none", "names"), default="none",
                   help="entities without a description: missing (none, default) or their name encoded (names)")
    t.add_argument("--aggregate", choices=("join", "mean"), default="join",
                   help="several descriptions of one entity: joined with a space and encoded once (join, default) "
                        "or encoded one by one and their vectors averaged (mean)")


def text_from_descriptions(a: argparse.Namespace):
    """``features text`` with ``--from`` or ``--property``: the summary, else ``None`` (plain names)."""
    if a.source is None and a.property is None:
        if a.literals is not None or a.fallback != "none" or a.aggregate != "join":
            raise SnagError("--literals, --fallback and --aggregate apply to descriptions: add --from FILE or "
                            "--property P")
        return None

    return build_description_features(target(a), source=a.source, prop=a.property, literals=a.literals,
                                      fallback=a.fallback, aggregate=a.aggregate, output=a.output,
                                      batch_size=a.batch_size, device=a.device, encoder=a.encoder,
                                      progress=False if a.no_progress else None)


def _done(summary) -> int:
    print(summary.line(), file=sys.stderr)
    return 0


def cmd_image(a: argparse.Namespace) -> int:

    return _done(build_image_features(target(a), a.images, encoder=a.encoder, weights=a.weights,
                                      batch_size=a.batch_size, device=a.device, seed=a.seed, modality=a.modality,
                                      output=a.output, progress=False if a.no_progress else None))


def cmd_attributes(a: argparse.Namespace) -> int:

    return _done(build_attribute_features(target(a), literals=a.literals, top=a.top, output=a.output))


def cmd_numeric(a: argparse.Namespace) -> int:

    return _done(build_numeric_features(target(a), source=a.source, top=a.top, scale=a.scale, output=a.output))


def cmd_names(a: argparse.Namespace) -> int:

    return _done(build_name_features(target(a), source=a.source, encoder=a.encoder, batch_size=a.batch_size,
                                     device=a.device, output=a.output,
                                     progress=False if a.no_progress else None))


def register_raw(fs) -> None:
    """Add ``image``, ``attributes``, ``numeric`` and ``names`` to the ``features`` sub-commands ``fs``."""

    im = fs.add_parser("image", help="encode image files with a frozen image encoder -> features/image.npy")
    add_dataset_arguments(im, alignment=True)
    im.add_argument("--images", required=True, metavar="DIR|MAPPING",
                    help="a folder of <entity>.<suffix> files and <entity>/ sub-folders, or a TSV entity<TAB>path")
    im.add_argument("--encoder", default=DEFAULT_IMAGE_ENCODER,
                    help=f"image encoder (default {DEFAULT_IMAGE_ENCODER}; known: {', '.join(IMAGE_ENCODERS.names())})")
    im.add_argument("--weights", metavar="FILE",
                    help="a local state_dict for the encoder (torch.save(model.state_dict(), FILE)); nothing is "
                         "downloaded; tiny-cnn without it is randomly initialised from --seed")
    im.add_argument("--seed", type=int, default=0, help="random init of tiny-cnn without --weights")
    im.add_argument("--batch-size", type=int, default=64)
    im.add_argument("--device", default="auto", help="auto (default), cpu, cuda or cuda:N")
    im.add_argument("--modality", default="image", help="modality name (default image)")
    im.add_argument("--output", help="output .npy (default: DATASET/features/MODALITY.npy)")
    im.add_argument("--no-progress", action="store_true")
    im.set_defaults(func=cmd_image)

    at = fs.add_parser("attributes", help="0/1 bag of the most frequent literal properties -> features/attribute.npy")
    add_dataset_arguments(at, alignment=True)
    at.add_argument("--literals", metavar="FILE",
                    help="entity<TAB>property<TAB>value table (default: DATASET/literals.tsv)")
    at.add_argument("--top", type=int, default=1000, help="the TOP properties with the most rows")
    at.add_argument("--output", help="output .npy (default: DATASET/features/attribute.npy)")
    at.set_defaults(func=cmd_attributes)

    nu = fs.add_parser("numeric", help="normalised numeric literals + presence -> features/numeric.npy")
    add_dataset_arguments(nu, alignment=True)
    nu.add_argument("--from", dest="source", metavar="FILE",
                    help="entity<TAB>property<TAB>value table (default: DATASET/literals.tsv); non-numbers skipped")
    nu.add_argument("--top", type=int, default=1000, help="the TOP properties with the most entities")
    nu.add_argument("--scale", choices=("zscore", "minmax"), default="zscore",
                    help="per-property normalisation (default zscore)")
    nu.add_argument("--output", help="output .npy (default: DATASET/features/numeric.npy)")
    nu.set_defaults(func=cmd_numeric)

    na = fs.add_parser("names", help="encode entity names (a names file, or the URIs) -> features/name.npy")
    add_dataset_arguments(na, alignment=True)
    na.add_argument("--from", dest="source", metavar="FILE",
                    help="JSON list of [id, [tokens]] (e.g. translated_ent_name/dbp_zh_en.json) or a TSV "
                         "entity<TAB>name; default: names from the entity URIs")
    na.add_argument("--encoder", default=DEFAULT_TEXT_ENCODER,
                    help=f"text encoder (default {DEFAULT_TEXT_ENCODER}; known: "
                         f"{', '.join(FEATURE_EXTRACTORS.names())})")
    na.add_argument("--batch-size", type=int, default=256)
    na.add_argument("--device", default="auto", help="auto (default), cpu, cuda or cuda:N")
    na.add_argument("--output", help="output .npy (default: DATASET/features/name.npy)")
    na.add_argument("--no-progress", action="store_true")
    na.set_defaults(func=cmd_names)
