"""``snagkg features image``: the image modality from image files (SPEC section 1).

Which images belong to which entity (``--images``):

* a folder: a file ``<entity>.<suffix>`` directly in it, and every image file
  in a sub-folder ``<entity>/`` (any suffix Pillow reads: ``.jpg``, ``.png``,
  ``.webp``, ...). ``<entity>`` is the entity's name as in ``entity2id.txt``,
  another spelling of it (URI tail such as ``Barack_Obama``, display name) or
  its id. Hidden files and files with other suffixes are ignored; image files
  that name no entity are skipped and counted in a warning.
* a mapping file (any other file): lines ``entity<TAB>path`` (``#`` lines
  are comments), paths relative to the mapping file's folder, several lines
  per entity allowed; an entity the dataset does not have is a one-line error.

Each image is decoded with Pillow (RGB, shorter side resized to the encoder's
input size, centre crop), normalised, and encoded in batches by a frozen
encoder of :data:`~snagkg.features.image_encoders.IMAGE_ENCODERS`; an entity's
vector is the mean of its images' vectors. An image that cannot be read
(missing, corrupt, not an image) is counted and left out, with one warning
line; an entity with no readable image is missing the modality.
"""
from __future__ import annotations

import sys
from pathlib import Path
from typing import Callable, List, Optional, Tuple

import numpy as np
import torch
from tqdm import tqdm

from snagkg.data.lines import read_lines
from snagkg.data.name_index import NameIndex
from snagkg.data.tables import save_feature_table
from snagkg.features.common import (
    FeatureSummary,
    check_modality_name,
    dataset_folder,
    output_path,
    read_entity_names,
)
from snagkg.features.image_encoders import (
    DEFAULT_IMAGE_ENCODER,
    ImageEncoder,
    get_image_encoder,
)
from snagkg.runtime.devices import device_name
from snagkg.runtime.errors import SnagError


def _pil():
    try:
        from PIL import Image  # deferred: optional extra [image]
    except ImportError:
        raise SnagError("reading images needs Pillow: pip install 'snagkg[image]'") from None
    return Image


def image_suffixes() -> set:
    """The lower-case file suffixes Pillow can open (``.jpg``, ``.png``, ...)."""
    Image = _pil()
    return {s.lower() for s, fmt in Image.registered_extensions().items() if fmt in Image.OPEN}


def _is_image(p: Path, suffixes: set) -> bool:
    return p.is_file() and not p.name.startswith(".") and p.suffix.lower() in suffixes


def collect_images(source, index: NameIndex) -> Tuple[List[Tuple[int, Path]], int]:
    """``([(entity row, image path)], image files naming no entity)`` for ``--images`` (module docstring)."""
    source = Path(source)
    if not source.exists():
        raise SnagError("--images: no such folder or mapping file", source)
    suffixes = image_suffixes()
    pairs: List[Tuple[int, Path]] = []
    if source.is_file():
        for number, text in read_lines(source):
            if text.lstrip().startswith("#"):
                continue
            parts = text.split("\t")
            if len(parts) != 2 or not parts[0].strip() or not parts[1].strip():
                raise SnagError("expected 2 tab-separated columns (entity, image path)", source, number)
            row = index.lookup(parts[0], source, number)
            if row is None:
                raise SnagError(f"unknown entity {parts[0].strip()[:60]!r}: not a name or id of the dataset",
                                source, number)
            path = Path(parts[1].strip())
            pairs.append((row, path if path.is_absolute() else source.parent / path))
        if not pairs:
            raise SnagError("the mapping file lists no image", source)
        return pairs, 0
    unmatched = 0
    found = 0
    for entry in sorted(source.iterdir()):
        if entry.name.startswith("."):
            continue
        if entry.is_dir():
            files = [f for f in sorted(entry.iterdir()) if _is_image(f, suffixes)]
            key = entry.name
        elif _is_image(entry, suffixes):
            files, key = [entry], entry.name[:-len(entry.suffix)]
        else:
            continue
        found += len(files)
        row = index.lookup(key, entry) if files else None
        if row is None:
            unmatched += len(files)
            continue
        pairs.extend((row, f) for f in files)
    if not found:
        raise SnagError("no image files in the folder (expected <entity>.<suffix> files or <entity>/ sub-folders "
                        "of .jpg, .png, ... files)", source)
    if not pairs:
        raise SnagError(f"none of the {found} image files names an entity of the dataset (name a file by the "
                        "entity's name, URI tail or id, or give a mapping TSV entity<TAB>path)", source)
    return pairs, unmatched


def decode(path: Path, enc: ImageEncoder) -> np.ndarray:
    """``[3, size, size]`` float32: RGB, shorter side resized, centre crop, normalised (Pillow errors raise)."""
    Image = _pil()
    with Image.open(path) as im:
        im = im.convert("RGB")
        w, h = im.size
        if w < 1 or h < 1:
            raise ValueError("empty image")
        s = enc.size / min(w, h)
        nw, nh = max(enc.size, round(w * s)), max(enc.size, round(h * s))
        im = im.resize((nw, nh), Image.BILINEAR)
        left, top = (nw - enc.size) // 2, (nh - enc.size) // 2
        im = im.crop((left, top, left + enc.size, top + enc.size))
        arr = np.asarray(im, dtype=np.float32) / 255.0
    arr = (arr - np.asarray(enc.mean, dtype=np.float32)) / np.asarray(enc.std, dtype=np.float32)
    return np.ascontiguousarray(arr.transpose(2, 0, 1))


def build_image_features(dataset, images, encoder: str = DEFAULT_IMAGE_ENCODER, weights: Optional[str] = None,
                         batch_size: int = 64, device: str = "auto", seed: int = 0, modality: str = "image",
                         output: Optional[str] = None, progress: Optional[bool] = None,
                         warn: Optional[Callable[[str], None]] = None) -> FeatureSummary:
    """Write ``<modality>.npy`` (+ missing list) from image files (module docstring); warnings go to ``warn``
    (default: a line on stderr)."""

    warn = warn or (lambda s: print(s, file=sys.stderr))
    if batch_size < 1:
        raise SnagError(f"--batch-size must be at least 1, got {batch_size}")
    check_modality_name(modality)
    folder = dataset_folder(dataset, alignment=True)
    out = output_path(folder, modality, output)
    raw = read_entity_names(folder)
    pairs, unmatched = collect_images(images, NameIndex(raw))
    dev = device_name(device)
    enc = get_image_encoder(encoder)(None if weights is None else Path(weights), dev, seed)
    sums = np.zeros((len(raw), enc.dim), dtype=np.float64)
    counts = np.zeros(len(raw), dtype=np.int64)
    bad: List[Tuple[Path, str]] = []
    batch: List[np.ndarray] = []
    rows: List[int] = []

    def flush() -> None:
        if not batch:
            return
        vec = enc.encode(torch.from_numpy(np.stack(batch)).to(dev))
        if vec.shape != (len(batch), enc.dim):
            raise SnagError(f"image encoder {enc.name!r} returned shape {tuple(vec.shape)}, "
                            f"expected ({len(batch)}, {enc.dim})")
        if not np.isfinite(vec).all():
            raise SnagError(f"image encoder {enc.name!r} produced NaN/inf", weights)
        np.add.at(sums, np.asarray(rows), vec.astype(np.float64))
        np.add.at(counts, np.asarray(rows), 1)
        batch.clear()
        rows.clear()

    bar = tqdm(total=len(pairs), unit="image", desc=f"image ({enc.name})",
               disable=(None if progress is None else not progress))
    try:
        for row, path in pairs:
            try:
                arr = decode(path, enc)
            except Exception as exc:  # noqa: BLE001 - any unreadable image is counted, never a crash
                bad.append((path, (str(exc).splitlines() or [type(exc).__name__])[0][:100]))
            else:
                batch.append(arr)
                rows.append(row)
                if len(batch) >= batch_size:
                    flush()
            bar.update(1)
        flush()
    finally:
        bar.close()
    have = counts > 0
    if not have.any():
        raise SnagError(f"none of the {len(pairs)} images could be read (first: {bad[0][0]}: {bad[0][1]})", images)
    values = np.full((len(raw), enc.dim), np.nan, dtype=np.float32)
    values[have] = (sums[have] / counts[have, None]).astype(np.float32)
    lost = int(len({r for r, _ in pairs}) - have.sum())
    if bad:
        warn(f"warning: {len(bad)} of {len(pairs)} images could not be read and were left out "
             f"(first: {bad[0][0]}: {bad[0][1]}); {lost} entities have no readable image")
    if unmatched:
        warn(f"warning: {unmatched} image files name no entity of the dataset and were skipped")
    save_feature_table(out, values, ~have)
    note = (f"encoder {enc.name}, {int(counts.sum())} images" + (f", {len(bad)} unreadable" if bad else "")
            + (f", {unmatched} naming no entity" if unmatched else ""))
    return FeatureSummary(modality, out, len(raw), int(have.sum()), enc.dim, note=note)
