"""Modality feature builders for both tasks and the ``snagkg features`` commands.

* :mod:`.relations`: relation bags (one implementation for both tasks) and
  attribute bags;
* :mod:`.text`: modalities from entity names: sentence-encoder text
  (``snagkg features text``), character bigrams, name embeddings;
* :mod:`.importing`: ``snagkg features import`` (vectors users already have);
* :mod:`.descriptions`, :mod:`.images` (+ :mod:`.image_encoders`),
  :mod:`.literal_features`, :mod:`.names`: modalities from raw data
  (descriptions, image files, literal tables, names files; command line in
  :mod:`.raw_cli`, input reading in :mod:`.literals`);
* :mod:`.alignment`: which modalities an alignment run uses, and their tables;
* :mod:`.common`, :mod:`.extractors`, :mod:`.cli`: shared command pieces,
  the sentence-encoder registry, the command line.

The tables themselves are :class:`snagkg.tables.FeatureTable`.
"""
