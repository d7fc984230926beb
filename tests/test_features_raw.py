"""Features from raw data as a user runs them: descriptions and image files -> train -> evaluate."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from _helpers import run_main as run_cli
from conftest import make_openke

pytest.importorskip("PIL")
from PIL import Image  # noqa: E402

N = 120


@pytest.fixture
def graph(tmp_path: Path) -> Path:
    """A small graph in the OpenKE layout (entities entity_0 .. entity_119), no feature files."""
    return make_openke(tmp_path / "graph", num_entities=N, features=False)


def write_descriptions(path: Path) -> dict:
    """Descriptions for entities 0..79 (by name, or by id for the multiples of 10); 0..9 have two rows."""
    lines = ["# entity\tdescription"]
    texts = {}
    for i in range(80):
        key = str(i) if i % 10 == 0 else f"entity_{i}"
        colour = ("red", "green", "blue")[i % 3]
        lines.append(f"{key}\tA {colour} thing number {i}")
        texts[i] = [f"A {colour} thing number {i}"]
        if i < 10:
            lines.append(f"{key}\tAlso known as item {i}")
            texts[i].append(f"Also known as item {i}")
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return texts


def write_images(folder: Path) -> None:
    """PNG files for entities 0..59: entity_<i>.png, a sub-folder with two images for entity 5, and
    three corrupt files (entity 50's only image, one of entity 5's, and one of entity 6's two)."""
    folder.mkdir()
    rng = np.random.default_rng(0)
    for i in range(60):
        colour = np.array([(255, 0, 0), (0, 255, 0), (0, 0, 255)][i % 3], dtype=np.uint8)
        img = (colour[None, None] * 0.7 + rng.integers(0, 76, (24 + i % 5, 30, 3))).astype(np.uint8)
        if i == 5:
            (folder / "entity_5").mkdir()
            Image.fromarray(img).save(folder / "entity_5" / "a.png")
            Image.fromarray(255 - img).save(folder / "entity_5" / "b.png")
            (folder / "entity_5" / "c.png").write_bytes(b"\x89PNG\r\n\x1a\n broken")
        elif i == 6:
            Image.fromarray(img).save(folder / "6.png")  # by id
            (folder / "entity_6").mkdir()
            (folder / "entity_6" / "x.jpg").write_bytes(b"not a jpeg")
        elif i == 50:
            (folder / "entity_50.png").write_bytes(b"\x00" * 64)
        else:
            Image.fromarray(img).save(folder / f"entity_{i}.png")
    (folder / "notes.txt").write_text("ignored: not an image\n")
    Image.new("RGB", (8, 8)).save(folder / "nobody.png")  # names no entity: skipped with a warning


def test_descriptions_and_images_then_train_and_evaluate(graph, tmp_path, fast_config, capsys):
    import torch

    from snagkg.features.extractors import HashingEncoder
    from snagkg.features.image_encoders import load_tiny_cnn, save_tiny_cnn
    from snagkg.features.images import decode

    texts = write_descriptions(tmp_path / "descriptions.tsv")
    code, _, err = run_cli(["features", "text", "--dataset", graph, "--from", tmp_path / "descriptions.tsv",
                            "--encoder", "hashing", "--no-progress"], capsys)
    assert code == 0, err
    assert "text: 80 of 120 entities have features, 40 missing (width 256)" in err
    text = np.load(graph / "features" / "text.npy")
    assert text.shape == (N, 256) and np.isnan(text[80:]).all() and np.isfinite(text[:80]).all()
    missing = [int(x) for x in (graph / "features" / "text.missing.txt").read_text().split()]
    assert missing == list(range(80, N))
    enc = HashingEncoder()
    assert np.allclose(text[3], enc.encode([" ".join(texts[3])], 1)[0])  # two rows joined
    assert np.allclose(text[40], enc.encode(texts[40], 1)[0])  # keyed by id

    write_images(tmp_path / "images")
    weights = save_tiny_cnn(tmp_path / "tiny-cnn.pt", seed=3)
    code, _, err = run_cli(["features", "image", "--dataset", graph, "--images", tmp_path / "images",
                            "--weights", weights, "--batch-size", "16", "--no-progress"], capsys)
    assert code == 0, err
    lines = err.strip().splitlines()
    assert lines[0].startswith("warning: 3 of 63 images could not be read") and "1 entities have no readable" in lines[0]
    assert lines[1] == "warning: 1 image files name no entity of the dataset and were skipped"
    assert lines[2].startswith("image: 59 of 120 entities have features, 61 missing (width 64)")
    image = np.load(graph / "features" / "image.npy")
    assert image.shape == (N, 64)
    have = np.isfinite(image).all(axis=1)
    assert have[:60].sum() == 59 and not have[50] and not have[60:].any()
    tiny = load_tiny_cnn(weights, "cpu")
    one = [decode(tmp_path / "images" / "entity_5" / f, tiny) for f in ("a.png", "b.png")]
    expect = tiny.encode(torch.from_numpy(np.stack(one))).mean(axis=0)
    assert np.allclose(image[5], expect, atol=1e-5)  # the readable images averaged
    assert np.allclose(image[6], tiny.encode(torch.from_numpy(decode(tmp_path / "images" / "6.png", tiny)[None]))[0],
                       atol=1e-5)

    run = tmp_path / "run"
    code, _, err = run_cli(["train", "--dataset", graph, "--config", fast_config, "--output", run, "--epochs", "2",
                            "--seed", "1", "--no-progress"], capsys)
    assert code == 0, err
    res = json.loads((run / "results.json").read_text())
    assert res["dataset"]["used_modalities"] == ["structure", "image", "text"]
    import snagkg

    task = snagkg.load_run(run, device="cpu")
    ents = task.model.entities
    assert int(ents.missing("text").sum()) == 40 and int(ents.missing("image").sum()) == 61
    code, out, err = run_cli(["evaluate", run, "--split", "test"], capsys)
    assert code == 0, err
    assert json.loads(out)["mrr"] == res["test"]["mrr"]


def _fails(capsys, args, where: str, what: str, graph: Path):
    before = sorted(p.name for p in (graph / "features").iterdir()) if (graph / "features").exists() else []
    code, _, err = run_cli(args, capsys)
    assert code == 2 and err.count("\n") == 1 and err.startswith(f"error: {where}"), err
    assert what in err, err
    after = sorted(p.name for p in (graph / "features").iterdir()) if (graph / "features").exists() else []
    assert after == before  # nothing written


def test_unknown_entity_in_descriptions(graph, tmp_path, capsys):
    desc = tmp_path / "d.tsv"
    desc.write_text("entity_1\tfine\nentity_999\tno such entity\n")
    _fails(capsys, ["features", "text", "--dataset", graph, "--from", desc, "--encoder", "hashing"],
           f"{desc}:2: ", "unknown entity 'entity_999'", graph)
    desc.write_text("entity_1 without a tab\n")
    _fails(capsys, ["features", "text", "--dataset", graph, "--from", desc, "--encoder", "hashing"],
           f"{desc}:1: ", "expected 2 tab-separated columns", graph)


def test_empty_image_folder_and_missing_weights(graph, tmp_path, capsys):
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "readme.txt").write_text("no images here\n")
    _fails(capsys, ["features", "image", "--dataset", graph, "--images", empty], f"{empty}: ", "no image files",
           graph)
    folder = tmp_path / "imgs"
    folder.mkdir()
    Image.new("RGB", (8, 8)).save(folder / "entity_1.png")
    nope = tmp_path / "nope.pt"
    _fails(capsys, ["features", "image", "--dataset", graph, "--images", folder, "--weights", nope],
           f"{nope}: ", "weights file not found; give a local state_dict", graph)
    wrong = tmp_path / "wrong.pt"
    import torch

    torch.save({"conv.weight": torch.zeros(2)}, wrong)
    _fails(capsys, ["features", "image", "--dataset", graph, "--images", folder, "--weights", wrong],
           f"{wrong}: ", "do not fit the tiny-cnn", graph)
    (folder / "entity_1.png").write_bytes(b"broken")
    _fails(capsys, ["features", "image", "--dataset", graph, "--images", folder], f"{folder}: ",
           "none of the 1 images could be read", graph)


def test_image_mapping_file(graph, tmp_path, capsys):
    folder = tmp_path / "pics"
    folder.mkdir()
    Image.new("RGB", (10, 10), (200, 10, 10)).save(folder / "a.png")
    Image.new("RGB", (10, 10), (10, 10, 200)).save(folder / "b.webp")
    mapping = tmp_path / "map.tsv"
    mapping.write_text("# entity\tpath\nentity_2\tpics/a.png\n7\tpics/b.webp\nentity_2\tpics/b.webp\n"
                       "entity_3\tpics/missing.png\n")
    code, _, err = run_cli(["features", "image", "--dataset", graph, "--images", mapping, "--seed", "1",
                            "--modality", "photo", "--no-progress"], capsys)
    assert code == 0, err
    assert "warning: 1 of 4 images could not be read" in err and "photo: 2 of 120 entities" in err
    import torch

    from snagkg.features.image_encoders import load_tiny_cnn
    from snagkg.features.images import decode

    photo = np.load(graph / "features" / "photo.npy")
    tiny = load_tiny_cnn(None, "cpu", seed=1)
    a, b = tiny.encode(torch.from_numpy(np.stack([decode(folder / f, tiny) for f in ("a.png", "b.webp")])))
    assert np.allclose(photo[7], b, atol=1e-5) and np.allclose(photo[2], (a + b) / 2, atol=1e-5)
    assert np.isnan(photo[3]).all()  # its only image is missing
    mapping.write_text("entity_2\tpics/a.png\nghost\tpics/a.png\n")
    _fails(capsys, ["features", "image", "--dataset", graph, "--images", mapping], f"{mapping}:2: ",
           "unknown entity 'ghost'", graph)


def test_torchvision_encoder_needs_weights_or_package(graph, tmp_path, capsys):
    folder = tmp_path / "imgs"
    folder.mkdir()
    Image.new("RGB", (8, 8)).save(folder / "entity_1.png")
    code, _, err = run_cli(["features", "image", "--dataset", graph, "--images", folder, "--encoder", "resnet18"],
                           capsys)
    assert code == 2 and err.count("\n") == 1
    assert "needs torchvision" in err or "needs --weights FILE" in err
    assert not (graph / "features").exists()


def test_rdf_graph_with_comments_and_numbers_through_convert(tmp_path, capsys):
    """An N-Triples graph -> snagkg convert (literals.tsv) -> text from rdfs:comment, numeric, attributes -> train."""
    pytest.importorskip("rdflib")
    rng = np.random.default_rng(1)
    ex = "http://example.org/"
    lines = []
    for i in range(60):
        for j in rng.choice(60, size=4, replace=False):
            if j != i:
                lines.append(f"<{ex}e{i}> <{ex}r{(i + int(j)) % 3}> <{ex}e{int(j)}> .")
        if i % 2 == 0:
            lines.append(f'<{ex}e{i}> <http://www.w3.org/2000/01/rdf-schema#comment> "Item {i}, colour {i % 3}"@en .')
        if i % 3 == 0:
            lines.append(f'<{ex}e{i}> <{ex}height> "{i * 1.5}"^^<http://www.w3.org/2001/XMLSchema#double> .')
    (tmp_path / "graph.nt").write_text("\n".join(lines) + "\n")
    folder = tmp_path / "mygraph"
    code, _, err = run_cli(["convert", tmp_path / "graph.nt", "--output", folder], capsys)
    assert code == 0, err
    assert (folder / "literals.tsv").is_file()
    code, _, err = run_cli(["features", "text", "--dataset", folder, "--property", "rdfs:comment",
                            "--encoder", "hashing"], capsys)
    assert code == 0 and "text: 30 of 60 entities have features, 30 missing" in err, err
    code, _, err = run_cli(["features", "numeric", "--dataset", folder], capsys)
    assert code == 0 and "numeric: 20 of 60 entities have features" in err and "(width 2)" in err, err
    assert "30 non-numeric values skipped" in err  # the comments are not numbers: counted, left out
    code, _, err = run_cli(["features", "attributes", "--dataset", folder], capsys)
    assert code == 0 and "attribute: 40 of 60 entities have features" in err, err
    names = (folder / "entity2id.txt").read_text().splitlines()[1:]
    ids = {n.split("\t")[0]: int(n.split("\t")[1]) for n in names}
    text = np.load(folder / "features" / "text.npy")
    from snagkg.features.extractors import HashingEncoder

    assert np.allclose(text[ids[f"{ex}e4"]], HashingEncoder().encode(["Item 4, colour 1"], 1)[0])
    import snagkg

    cfg = snagkg.resolve_config(overrides={"dataset": str(folder), "train.epochs": 1, "encoder.hidden": 16,
                                           "train.batch_size": 256, "device": "cpu"})
    res = snagkg.train(cfg, tmp_path / "run", progress=False, echo=lambda s: None)
    assert res.dataset["used_modalities"] == ["structure", "attribute", "numeric", "text"]
