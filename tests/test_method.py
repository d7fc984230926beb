"""The method's point on the synthetic MMKG: modalities help, clearly."""

import pytest

import snagkg


def run(tmp_path, name, modalities, epochs=25):
    cfg = snagkg.resolve_config(preset="synthetic", overrides={
        "dataset": "synthetic", "modalities": modalities, "train.epochs": epochs, "seed": 1})
    return snagkg.train(cfg, tmp_path / name, progress=False, echo=lambda s: None)


@pytest.mark.slow
def test_snag_beats_structure_only_on_synthetic(tmp_path):
    snag = run(tmp_path, "snag", "structure,image,text")
    struct = run(tmp_path, "struct", "structure")
    assert snag.test["mrr"] > 0.35
    assert snag.test["mrr"] > struct.test["mrr"] + 0.15, (snag.test, struct.test)
    assert snag.test["hits@10"] > struct.test["hits@10"]
