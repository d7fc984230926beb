"""``snagkg convert``: any completion dataset the CLI reads, written in the OpenKE layout.

    snagkg convert triples.tsv --output data/mygraph [--split 0.8,0.1,0.1] [--columns h,t,r] [--seed 0]

Inputs: a labelled TSV/CSV file or folder, an RDF file or folder, or an OpenKE
folder (:func:`snagkg.datasets.load_completion_dataset`). The output holds
``entity2id.txt``, ``relation2id.txt``, ``train2id.txt``, ``valid2id.txt``,
``test2id.txt`` (:func:`snagkg.datasets.write_openke`), the ``features/``
tables when the input has any, and ``literals.tsv`` (``entity<TAB>property<TAB>value``)
when the input has literal values. The folder is written next to its final
place and renamed into it at the end, so a failure leaves nothing behind; a
non-empty output folder is refused unless ``--overwrite``.
"""
from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Iterable, Optional, Tuple

from snagkg.data.datasets import load_completion_dataset, write_openke
from snagkg.runtime.errors import SnagError
from snagkg.runtime.file_sets import restore_folder, swap_in_folder
from snagkg.runtime.io import write_text


def escape_value(text: str) -> str:
    r"""A literal value on one TSV line: ``\`` -> ``\\``, tab -> ``\t``, line breaks -> ``\n`` / ``\r``."""
    return text.replace("\\", "\\\\").replace("\t", "\\t").replace("\n", "\\n").replace("\r", "\\r")


def literals_text(rows: Iterable[Tuple[str, str, str]]) -> str:
    """``literals.tsv``: one ``entity<TAB>property<TAB>value`` line per literal (values escaped)."""
    return "".join(f"{e}\t{p}\t{escape_value(v)}\n" for e, p, v in rows)


def _check_output(out: Path, overwrite: bool) -> None:
    if out.exists() and not out.is_dir():
        raise SnagError("output path exists and is not a folder", out)
    if out.is_dir() and any(out.iterdir()) and not overwrite:
        raise SnagError("output folder already exists and is not empty; pass --overwrite to replace it", out)


def convert(source, output, split: Optional[str] = None, columns: Optional[str] = None, seed: int = 0,
            overwrite: bool = False):
    """Read ``source`` and write it to ``output`` in the OpenKE layout; returns the graph written.

    ``split``/``columns`` as for ``snagkg train`` (one triples file; TSV/CSV); ``seed`` seeds the split.
    """

    out = Path(output)
    _check_output(out, overwrite)
    kg = load_completion_dataset(str(source), split=split, columns=columns, split_seed=seed)
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise SnagError(f"cannot create the output folder: {exc.strerror or exc}", out.parent) from None
    restore_folder(out)  # what a killed convert left: its temp folder, or the old output moved aside
    tmp = out.parent / f".{out.name}.convert-{os.getpid()}.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        write_openke(kg, tmp)
        if kg.literals:
            write_text(tmp / "literals.tsv", literals_text(kg.literals))
        _check_output(out, overwrite)  # again: something may have appeared meanwhile
        swap_in_folder(tmp, out)  # a reader sees the old folder or the new one, never a mix
    except OSError as exc:
        raise SnagError(f"cannot write: {exc.strerror or exc}", out) from None
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return kg
