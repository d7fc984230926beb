"""The one data layer: the shared graph interface, the two name rules, the shared relation bag, devices."""
from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
import torch

from snagkg.data.datasets import AlignmentPair, Graph, KnowledgeGraph, generate, SyntheticConfig
from snagkg.data.datasets.alignment_pair import load_alignment_dataset
from snagkg.data.uri_labels import entity_display_name, entity_name, uri_segment
from snagkg.data.datasets.synthetic_pair import write_synthetic_pair
from snagkg.runtime.devices import device_name, select_device
from snagkg.runtime.errors import SnagError
from snagkg.features.relations import relation_bag, relation_counts
from snagkg.features.text import char_bigrams

# raw name -> (alignment's entity_name, completion's entity_display_name)
NAMES = {
    "http://dbpedia.org/resource/X_%28Y%29": ("x (y)", "X (Y)"),
    "<http://a/b#Some_Thing>": ("some thing", "Some Thing"),
    "<http://fr.dbpedia.org/resource/HIV/AIDS>": ("hiv/aids", "HIV/AIDS"),
    "plain name": ("plain name", "plain name"),
    "a/b/c/": ("c", "a/b/c/"),                       # lenient: a path without a scheme
    "x#": ("", "x#"),                                # lenient: an empty fragment
    "http://host": ("host", None),                   # strict: a host names nothing
    "Q42": ("q42", None),                            # strict: Wikidata ids carry no words
    "http://www.wikidata.org/entity/Q42": ("q42", None),
    "foo/resource/bar_baz": ("bar baz", "foo/resource/bar_baz"),  # lenient: /resource/ on any text
    "http://x/a%20%20b_c": ("a  b c", "a b c"),      # strict folds runs of spaces
    "http://x/y#": ("", "y"),
    "": ("", None),
}


@pytest.mark.parametrize("raw", list(NAMES))
def test_both_name_rules(raw):
    lenient, strict = NAMES[raw]
    assert entity_name(raw) == lenient
    assert entity_display_name(raw) == strict


def test_uri_segment_lenient_never_none():
    assert uri_segment("plain", lenient=True) == "plain"
    assert uri_segment("plain") is None
    assert uri_segment("<<http://x/resource/A__B>>", lenient=True) == "A__B"


def _pair(tmp_path, layout="openea") -> AlignmentPair:
    return load_alignment_dataset(str(write_synthetic_pair(tmp_path / layout, entities=60, layout=layout)))


def test_graph_interface_shared(tmp_path):
    kg = generate(SyntheticConfig(num_entities=200), seed=0)
    pair = _pair(tmp_path)
    for g in (kg, pair):
        assert isinstance(g, Graph)
        assert g.num_entities == len(g.entities) and g.num_relations == len(g.relations)
        assert g.feature_triples.shape[1] == 3 and isinstance(g.notes, list)
        assert isinstance(g.summary(), dict)
    assert isinstance(kg, KnowledgeGraph)
    assert kg.feature_triples is kg.train  # never valid/test
    assert pair.feature_triples is pair.triples
    assert kg.summary()["modalities"] == kg.feature_summary()
    # builders take either kind
    for g in (kg, pair):
        assert relation_bag(g, 3).values.shape == (g.num_entities, 3)
        assert char_bigrams(g, 20).values.shape[0] == g.num_entities


def test_relation_missing_rules():
    # entity 3 only uses the rare relation 1: a real zero row ("no_triple") or missing ("no_count")
    tr = np.array([[0, 0, 1], [1, 0, 2], [2, 0, 0], [3, 1, 0]], dtype=np.int64)
    v, miss, chosen = relation_counts(tr, 5, 2, top=1)
    assert chosen.tolist() == [0]
    assert miss.tolist() == [False, False, False, False, True]
    assert v[3].tolist() == [0.0] and v[0].tolist() == [2.0] and np.isnan(v[4]).all()
    v2, miss2, _ = relation_counts(tr, 5, 2, top=1, missing="no_count")
    assert miss2.tolist() == [False, False, False, True, True]
    assert np.isnan(v2[3]).all()
    with pytest.raises(SnagError, match="--top must be at least 1"):
        relation_counts(tr, 5, 2, top=0)
    with pytest.raises(ValueError):
        relation_counts(tr, 5, 2, top=1, missing="other")


def test_relation_bag_equals_counts(tmp_path):
    pair = _pair(tmp_path, "dbp15k")
    tab = relation_bag(pair, top=4)
    v, miss, _ = relation_counts(pair.triples, pair.num_entities, pair.num_relations, 4, missing="no_count")
    assert (tab.missing == miss).all()
    assert np.array_equal(tab.values[~miss], v[~miss])


def test_devices():
    assert select_device("cpu") == torch.device("cpu")
    assert device_name(" cpu ") == "cpu" and device_name("") in ("cpu", "cuda")
    assert select_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")
    with pytest.raises(SnagError, match="'gpu' is not a device"):
        device_name("gpu")
    if not torch.cuda.is_available():
        for call in (select_device, device_name):
            with pytest.raises(SnagError, match="CUDA is not available"):
                call("cuda:0")


@pytest.mark.parametrize("module", ["snagkg.data.tables", "snagkg.features.relations", "snagkg.data.datasets",
                                    "snagkg.features.alignment", "snagkg.data.lines"])
def test_modules_import_alone(module):
    """No import cycle: each layer imports on its own in a fresh interpreter."""
    subprocess.run([sys.executable, "-c", f"import {module}"], check=True)
