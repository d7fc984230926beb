"""Which modality a trained completion model relies on: test metrics with each
modality's table replaced by its mean row.

    .venv/bin/python benchmarks/ablate_modalities.py RUN [--limit N] [--threads T]

For every modality of the run in turn, every entity's input row is set to that
modality's mean (the structure embedding: the mean of the learned table; a frozen
feature table: the mean of its real rows, the ``mu`` of GMNM), so the model sees
no entity-specific information from it; the other modalities stay as trained.
The drop in MRR against the unchanged model is what the model takes from that
modality. The run's best (validation-selected) weights are used; nothing is
written.
"""
from __future__ import annotations

import argparse

import common


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("run", help="a finished completion run folder")
    ap.add_argument("--split", default="test", choices=("valid", "test"))
    ap.add_argument("--limit", type=int, default=0, help="first N triples of the split (0: all)")
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    common.set_threads(args.threads)
    import torch
    from snagkg.tasks.completion.evaluation import evaluate_ranking
    from snagkg.api.run import load_run

    task = load_run(args.run)
    model = task.model
    triples = torch.from_numpy(task.kg.split(args.split)).long()
    if args.limit:
        triples = triples[:args.limit]

    def metrics() -> dict:
        m = evaluate_ranking(task.entity_vectors(), model.interaction, triples, task.filters)
        return {k: 100 * m[k] for k in ("mrr", "hits@1", "hits@3", "hits@10")}

    rows = [{"input": "all modalities as trained", **metrics()}]
    for name in model.modalities:
        table = model.entities.table(name)
        saved = table.data.clone()
        mean = saved.mean(0) if name == "structure" else getattr(model.entities, f"mean_{name}")
        with torch.no_grad():
            table.copy_(mean.to(table.dtype).expand_as(table))
        model.refresh_noise()  # drops the cached (noised) tables; evaluation uses clean inputs
        rows.append({"input": f"{name} -> its mean row", **metrics()})
        with torch.no_grad():
            table.copy_(saved)
        model.refresh_noise()
    base = rows[0]["mrr"]
    for r in rows:
        r["MRR change"] = r["mrr"] - base
        for k in ("mrr", "hits@1", "hits@3", "hits@10", "MRR change"):
            r[k] = f"{r[k]:+.2f}" if k == "MRR change" else f"{r[k]:.2f}"
    print(f"{args.run}, {args.split} split, {len(triples)} triples, filtered, both directions, %")
    print(common.table(rows, ["input", "mrr", "hits@1", "hits@3", "hits@10", "MRR change"]))


if __name__ == "__main__":
    main()
