"""How well a trained completion model fits its training triples, and how fast its
entity vectors can still move.

    .venv/bin/python benchmarks/diagnose_fit.py RUN [RUN ...] [--sample N] [--threads T]

For each run (its best, validation-selected weights; nothing is written):
- filtered ranking metrics on a seeded sample of TRAIN triples next to the first
  N TEST triples: a model that ranks its own training triples poorly underfits;
- the same test triples with every entity vector rescaled to the median norm and
  centred (what a post-LayerNorm readout imposes), to see what that constraint costs;
- (fusion runs) train-sample metrics with the encoder's dropout on (noise off), to
  see how much the training-time vectors jitter;
- the RMS of the structure embedding table, and the median relative change of the
  entity vectors when every coordinate of the table moves by 1e-3 (about one Adam
  step at lr 1e-3): the entity-specific learning speed.
"""
from __future__ import annotations

import argparse

import common


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("runs", nargs="+")
    ap.add_argument("--sample", type=int, default=3000, help="train triples sampled, and test triples used")
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    common.set_threads(args.threads)
    import torch
    from snagkg.tasks.completion.evaluation import evaluate_ranking
    from snagkg.api.run import load_run

    rows = []
    for run in args.runs:
        task = load_run(run)
        model = task.model
        gen = torch.Generator().manual_seed(0)
        train = torch.from_numpy(task.kg.train).long()
        train = train[torch.randperm(len(train), generator=gen)[:args.sample]]
        test = torch.from_numpy(task.kg.test).long()[:args.sample]

        def metrics(vectors, triples, label):
            m = evaluate_ranking(vectors, model.interaction, triples, task.filters)
            rows.append({"run": run, "what": label, **{k: f"{100 * m[k]:.2f}" for k in ("mrr", "hits@1", "hits@10")}})

        vecs = task.entity_vectors().clone()
        metrics(vecs, train, f"train sample ({len(train)})")
        metrics(vecs, test, f"test (first {len(test)})")
        norm = vecs.norm(dim=1, keepdim=True)
        centred = vecs - vecs.mean(1, keepdim=True)
        metrics(centred / centred.norm(dim=1, keepdim=True) * norm.median(), test,
                "test, vectors centred and at the median norm")
        if task.cfg.encoder.fusion:
            model.train()
            saved = {m: model.entities.noise[m].ratio for m in model.modalities}
            for m in model.modalities:
                model.entities.noise[m].ratio = 0.0
            model.refresh_noise()
            with torch.no_grad():
                metrics(model.vectors(), train, "train sample, dropout on")
            for m in model.modalities:
                model.entities.noise[m].ratio = saved[m]
            model.eval()
        table = model.entities.structure.weight
        torch.manual_seed(0)
        step = 1e-3 * torch.sign(torch.randn_like(table))
        with torch.no_grad():
            table.add_(step)
            model.refresh_noise()
            moved = task.entity_vectors().clone()
            table.sub_(step)
            model.refresh_noise()
        change = ((moved - vecs).norm(dim=1) / vecs.norm(dim=1)).median().item()
        rows.append({"run": run, "what": f"structure table RMS {table.detach().pow(2).mean().sqrt().item():.4f}; "
                                        f"vectors move {100 * change:.2f}% for a 1e-3 step on every coordinate"})
    print(common.table(rows, ["run", "what", "mrr", "hits@1", "hits@10"]))


if __name__ == "__main__":
    main()
