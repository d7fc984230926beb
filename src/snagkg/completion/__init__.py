"""Multi-modal knowledge graph completion: RotatE scorer, sampler, loss, model."""
