"""``snagkg convert``: a graph in any readable form to an OpenKE folder."""
from __future__ import annotations

import sys

from snagkg.data.convert import convert


def cmd_convert(a) -> int:
    """``snagkg convert``: write the input in the OpenKE layout; notes on stderr, a summary on stdout."""
    kg = convert(a.input, a.output, split=a.split, columns=a.columns, seed=a.seed, overwrite=a.overwrite)
    for note in kg.notes:
        print(note, file=sys.stderr)
    extra = f", {len(kg.literals)} literals" if kg.literals else ""
    mods = f", features {','.join(sorted(kg.features))}" if kg.features else ""
    print(f"wrote {a.output}: {kg.num_entities} entities, {kg.num_relations} relations, train {len(kg.train)} / "
          f"valid {len(kg.valid)} / test {len(kg.test)}{extra}{mods}")
    return 0


def register(sub) -> None:
    """Add ``snagkg convert`` to the sub-command parsers ``sub``."""
    c = sub.add_parser("convert", help="write a dataset (TSV/CSV triples, RDF, OpenKE) in the OpenKE layout")
    c.add_argument("input", help="triples file (.tsv, .csv, .txt, .nt, .ttl, .nq, optionally .gz), a folder of "
                                 "train/valid/test triples files, or an OpenKE folder")
    c.add_argument("--output", required=True, help="the OpenKE folder to write")
    c.add_argument("--split", help="one triples file: train,valid,test shares (default 0.8,0.1,0.1)")
    c.add_argument("--columns", help="TSV/CSV: the role of each column, a permutation of h,r,t (e.g. h,t,r)")
    c.add_argument("--seed", type=int, default=0, help="seed of the split (default 0)")
    c.add_argument("--overwrite", action="store_true", help="replace a non-empty output folder")
    c.set_defaults(func=cmd_convert)
