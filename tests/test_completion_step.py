import torch

import snagkg
from snagkg.completion.loss import self_adversarial_loss
from snagkg.completion.task import CompletionTask
from snagkg.datasets import read_openke


def test_training_step_equals_naive_scoring(tiny_dataset):
    cfg = snagkg.resolve_config(overrides={"dataset": str(tiny_dataset), "encoder.hidden": 16, "train.negatives": 6})
    task = CompletionTask(read_openke(tiny_dataset), cfg)
    task.model.eval()  # no dropout/noise: both computations see the same vectors
    batch = task.train_triples[:40]
    loss = task.step(batch, torch.Generator().manual_seed(7))
    neg, mask = task.sampler.sample(batch, torch.Generator().manual_seed(7))
    with torch.no_grad():
        v = task.model.entity_vectors()
        sc = task.model.scorer
        pos = sc.score(v[batch[:, 0]], batch[:, 1], v[batch[:, 2]])
        negs = sc.score(v[neg[..., 0]], neg[..., 1], v[neg[..., 2]])
        ref = self_adversarial_loss(pos, negs, mask, 2.0)
    assert torch.allclose(loss.detach(), ref, atol=1e-5)
