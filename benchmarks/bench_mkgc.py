"""Multi-modal KG completion on a real benchmark: the four rows of the comparison, one script.

    .venv/bin/python benchmarks/bench_mkgc.py --dataset /work/data/DB15K --preset db15k-cpu \\
        --output runs/bench/db15k
    .venv/bin/python benchmarks/bench_mkgc.py --dataset /work/data/MKG-W --preset mkg-w-cpu \\
        --output runs/bench/mkg-w --rows structure,pykeen

Rows (each with validation-based model selection and early stopping, never test):

1. ``rotate``: snagkg plain RotatE on graph structure alone (``--no-fusion``: the
   structure embedding is the entity vector; ``--noise-ratio 0``: no GMNM), the same
   model PyKEEN trains;
   ``structure``: snagkg on graph structure alone through SNAG's fusion encoder (the
   paper's "graph structure only" ablation);
2. ``pykeen``: PyKEEN 1.11 RotatE with the same complex dimension (``encoder.hidden / 2``),
   32 filtered Bernoulli negatives, the NSSA loss with the same margin and adversarial
   temperature, Adam with the same learning rate, batch size, epoch budget, evaluation
   interval and patience; selected on the same validation triples;
3. ``snag``: snagkg SNAG with structure + the dataset's feature tables (name text,
   relation context);
4. ``snag-nonoise``: row 3 with the noise off (rho = 0), the paper's ablation.

Rows 3 and 4 use every table among ``features/{image,text,relation}.npy`` in the
dataset folder (``snagkg features text``, ``snagkg features relations``,
``snagkg features import``); the printed command says which.
The snagkg rows are run through the command line exactly as printed; each row's
result is kept in ``OUTPUT/<row>.json`` and skipped when it exists, and a finished
run without its row JSON is collected without training again, so the script can be
stopped and started again. Test metrics are filtered (train, valid, test),
both directions, realistic ties, and also optimistic ties (the published tables'
convention) from the same best checkpoint.

Note: PyKEEN 1.11's RotatE scores ``-||h o r - t||_2`` (L2 over the complex vector) by
default; snagkg's is the original RotatE ``-sum_k |h_k r_k - t_k|``, for which the margin
of 12 was chosen. Row 2 gives PyKEEN's interaction ``p=1`` (``--pykeen-norm 1``, the
default), the same distance; ``--pykeen-norm 2`` is PyKEEN's default model.
"""
from __future__ import annotations

import argparse
import copy
import json
import os
import shlex
import subprocess
import sys
import time
from pathlib import Path

import common

ROWS = ("rotate", "structure", "pykeen", "snag", "snag-nonoise")
FEATURES = ("image", "text", "relation")


def snag_rows(dataset: Path) -> dict:
    """The snagkg rows' options: rows 3 and 4 use every feature table the dataset folder has."""
    found = [m for m in FEATURES if (dataset / "features" / f"{m}.npy").exists()]
    mods = ",".join(["structure"] + found)
    return {"rotate": ["--modalities", "structure", "--no-fusion", "--no-structure-residual", "--no-residual-gate"],
            "structure": ["--modalities", "structure"],
            "snag": ["--modalities", mods], "snag-nonoise": ["--modalities", mods]}


#: options that define a row, given after the options after ``--`` so that those cannot undo them:
#: plain RotatE is the structure-only model without SNAG's noise (GMNM on the structure
#: embedding alone is not the baseline), and row 4 is row 3 with rho = 0
ROW_FIXED = {"rotate": ["--noise-ratio", "0"], "snag-nonoise": ["--noise-ratio", "0"]}
KEYS = ("mrr", "mr", "hits@1", "hits@3", "hits@10")


def row_command(row: str, args, folder: Path) -> list:
    """The ``snagkg train`` command line of a snagkg row (the executable first)."""
    exe = str(Path(sys.executable).with_name("snagkg"))
    cmd = [exe, "train", "--task", "completion", "--dataset", str(args.dataset), "--preset", args.preset,
           "--output", str(folder), "--seed", str(args.seed), "--no-progress", "--overwrite"]
    return cmd + snag_rows(args.dataset)[row] + args.extra + ROW_FIXED.get(row, [])


def run_snagkg(row: str, args, out: Path) -> dict:
    folder = out / row
    opts = snag_rows(args.dataset)[row]
    cmd = row_command(row, args, folder)
    printable = "snagkg " + " ".join(shlex.quote(c) for c in cmd[1:])
    wall = None
    if args.rerun or not (folder / "results.json").exists():
        common.log(f"[{row}] {printable}")
        t0 = time.perf_counter()
        with open(out / f"{row}.log", "w") as logf:
            rc = subprocess.call(cmd, stdout=logf, stderr=subprocess.STDOUT)
        wall = time.perf_counter() - t0
        if rc != 0:
            raise SystemExit(f"[{row}] failed (exit {rc}); see {out / f'{row}.log'}")
    else:  # a finished run whose row was not collected (the script was stopped after training)
        common.log(f"[{row}] collecting the finished run in {folder}")
    res = json.loads((folder / "results.json").read_text())
    import snagkg
    opt = snagkg.evaluate(folder, split="test", ties="optimistic")
    return {"row": row, "system": f"snagkg ({opts[1]}{', rho=0' if row in ROW_FIXED else ''})",
            "command": printable, "valid": res["valid"], "test": res["test"],
            "test_optimistic": {k: opt[k] for k in KEYS}, "best_epoch": res["best_epoch"],
            "epochs_run": res["epochs_run"], "train_seconds": res["train_seconds"],
            "epoch_seconds": res["epoch_seconds"], "wall_seconds": wall}


def pykeen_metrics(result, ties: str) -> dict:
    get = result.get_metric
    return {"mrr": float(get(f"both.{ties}.inverse_harmonic_mean_rank")),
            "mr": float(get(f"both.{ties}.arithmetic_mean_rank")),
            "hits@1": float(get(f"both.{ties}.hits_at_1")), "hits@3": float(get(f"both.{ties}.hits_at_3")),
            "hits@10": float(get(f"both.{ties}.hits_at_10"))}


def snagkg_metrics(model, kg, filters, name: str, margin: float, ties=("realistic", "optimistic")) -> dict:
    """PyKEEN's model ranked by snagkg's filtered ranking (``{ties: metrics}``, ``seconds``)."""
    import torch

    from snagkg.tasks.completion.evaluation import rank_triples
    from snagkg.evaluation.ranking import summarize
    vecs, scorer = common.pykeen_rotate_tables(model, margin)
    triples = torch.from_numpy(kg.split(name)).long()
    t0 = time.perf_counter()
    out = {tie: summarize(rank_triples(vecs, scorer, triples, filters, ties=tie)) for tie in ties}
    out["seconds"] = time.perf_counter() - t0
    return out


def run_pykeen(args, out: Path) -> dict:
    """PyKEEN RotatE with the snagkg preset's budget, selected on validation MRR (realistic ties).

    Validation ranks PyKEEN's embeddings with snagkg's ranking (``--pykeen-valid snagkg``,
    the default: PyKEEN's own evaluator takes minutes per validation on MKG-W's 4,276
    triples) or with PyKEEN's evaluator (``pykeen``). The best model's test metrics come
    from PyKEEN's own evaluator and, for comparison, from snagkg's ranking of the same
    embeddings (``--pykeen-test``). The state after every validation is kept in
    ``OUTPUT/pykeen/state.pt``: a stopped run continues from there when started again.
    """
    common.require_pykeen()
    import numpy as np
    import torch
    from pykeen.evaluation import RankBasedEvaluator
    from pykeen.training import SLCWATrainingLoop

    import snagkg
    from snagkg.data.datasets import load_completion_dataset
    from snagkg.tasks.completion.evaluation import FilterIndex
    cfg = snagkg.resolve_config(preset=args.preset, overrides={"dataset": str(args.dataset), "seed": args.seed})
    t, c = cfg.train, cfg.completion
    kg = load_completion_dataset(cfg.dataset, seed=cfg.seed)
    torch.manual_seed(args.seed)
    np.random.seed(args.seed)
    model, tf = common.pykeen_rotate(kg, dim=cfg.encoder.hidden // 2, margin=c.margin,
                                     temperature=c.adversarial_temperature, seed=args.seed, p=args.pykeen_norm)
    opt = torch.optim.Adam(model.get_grad_params(), lr=t.lr)
    loop = SLCWATrainingLoop(model=model, triples_factory=tf, optimizer=opt, negative_sampler="bernoulli",
                             negative_sampler_kwargs=dict(num_negs_per_pos=t.negatives, filtered=True))
    split = {s: torch.from_numpy(kg.split(s)).long() for s in ("train", "valid", "test")}
    filters = FilterIndex(torch.from_numpy(kg.all_triples()), kg.num_entities, kg.num_relations)
    evaluator = RankBasedEvaluator(filtered=True)

    def evaluate_pykeen(name):
        others = [split[s] for s in ("train", "valid", "test") if s != name]
        with common.quiet():
            return evaluator.evaluate(model, mapped_triples=split[name], additional_filter_triples=others,
                                      batch_size=args.pykeen_eval_batch, use_tqdm=False)

    def valid_mrr():
        if args.pykeen_valid == "pykeen":
            return pykeen_metrics(evaluate_pykeen("valid"), "realistic")
        return snagkg_metrics(model, kg, filters, "valid", c.margin, ties=("realistic",))["realistic"]

    folder = out / "pykeen"
    folder.mkdir(parents=True, exist_ok=True)
    state_path = folder / "state.pt"
    st = {"epoch": 0, "best": -1.0, "best_epoch": 0, "bad": 0, "epoch_times": [], "history": [],
          "train_seconds": 0.0}
    best_state = None
    settings = {"norm_p": args.pykeen_norm, "valid_ranking": args.pykeen_valid, "preset": args.preset,
                "dataset": str(Path(args.dataset).resolve()), "seed": args.seed}
    if state_path.exists() and not args.rerun:
        saved = torch.load(state_path, weights_only=True)
        differ = {k: (saved["settings"][k], v) for k, v in settings.items()
                  if k in saved["settings"] and saved["settings"][k] != v}
        if differ:
            raise SystemExit(f"[pykeen] {state_path} was trained with other settings "
                             f"({', '.join(f'{k}: {a} there, {b} now' for k, (a, b) in differ.items())}); "
                             f"pass --rerun to start again")
        model.load_state_dict(saved["model"])
        loop.optimizer.load_state_dict(saved["optimizer"])
        best_state = saved["best_model"]
        st = saved["progress"]
        loop._epoch = st["epoch"]  # PyKEEN counts epochs across calls; the resumed loop starts there
        common.log(f"[pykeen] continuing from epoch {st['epoch']} ({state_path})")
    if args.pykeen_snapshot and best_state is None:
        raise SystemExit(f"[pykeen] nothing to report yet: no {state_path}")
    t0 = time.perf_counter() - st["train_seconds"]
    # --pykeen-snapshot reports the kept state as it is, without training
    while not args.pykeen_snapshot and st["epoch"] < t.epochs and st["bad"] < t.patience:
        step = min(t.eval_every, t.epochs - st["epoch"])
        e0 = time.perf_counter()
        with common.quiet():
            # continue_training: without it PyKEEN re-initialises the weights on every call
            losses = loop.train(triples_factory=tf, num_epochs=st["epoch"] + step, batch_size=t.batch_size,
                                use_tqdm=False, use_tqdm_batch=False, continue_training=st["epoch"] > 0)
        st["epoch_times"].append((time.perf_counter() - e0) / step)
        st["epoch"] += step
        mrr = valid_mrr()["mrr"]
        gain = mrr > st["best"]
        if gain:
            st["best"], st["best_epoch"], st["bad"] = mrr, st["epoch"], 0
            best_state = copy.deepcopy(model.state_dict())
        else:
            st["bad"] += 1
        st["history"].append({"epoch": st["epoch"], "loss": float(losses[-1]), "valid_mrr": mrr,
                              "epoch_seconds": st["epoch_times"][-1]})
        st["train_seconds"] = time.perf_counter() - t0
        note = " (best)" if gain else f" (no gain {st['bad']}/{t.patience})"
        common.log(f"[pykeen] epoch {st['epoch']}: loss {losses[-1]:.4f}, valid mrr {mrr:.4f}{note}, "
                   f"{st['epoch_times'][-1]:.1f}s/epoch")
        tmp = state_path.with_suffix(".tmp")
        torch.save({"model": model.state_dict(), "optimizer": loop.optimizer.state_dict(),
                    "best_model": best_state, "progress": st, "settings": settings}, tmp)
        os.replace(tmp, state_path)
    train_seconds = st["train_seconds"]
    model.load_state_dict(best_state)
    valid = valid_mrr()
    system = f"PyKEEN 1.11 RotatE (p={args.pykeen_norm})"
    if args.pykeen_snapshot:
        system += f", unfinished: best of the first {st['epoch']} epochs"
    res = {"row": "pykeen", "system": system, "command": "(this script, row pykeen)", "settings": settings,
           "valid": valid, "best_epoch": st["best_epoch"], "epochs_run": st["epoch"],
           "train_seconds": train_seconds, "epoch_seconds": common.median(st["epoch_times"]),
           "history": st["history"]}
    test_by = "snagkg" if args.pykeen_snapshot else args.pykeen_test
    if args.pykeen_snapshot:
        res["partial"] = True
    if test_by in ("snagkg", "both"):
        m = snagkg_metrics(model, kg, filters, "test", c.margin)
        res["test_snagkg_ranking"] = {"realistic": m["realistic"], "optimistic": m["optimistic"],
                                      "seconds": m["seconds"]}
        res["test"], res["test_optimistic"] = m["realistic"], m["optimistic"]
    if test_by in ("pykeen", "both"):
        e0 = time.perf_counter()
        test_result = evaluate_pykeen("test")
        res["test_eval_seconds"] = time.perf_counter() - e0
        res["test"] = pykeen_metrics(test_result, "realistic")
        res["test_optimistic"] = pykeen_metrics(test_result, "optimistic")
    res["wall_seconds"] = time.perf_counter() - t0
    return res


def table(results) -> str:
    rows = []

    def pct(x):  # metrics in % to two decimals (common.table's 3 significant digits would drop them)
        return f"{100 * x:.2f}"

    for r in results:
        tr, to = r["test"], r["test_optimistic"]
        rows.append({"system": r["system"], "MRR": pct(tr["mrr"]), "H@1": pct(tr["hits@1"]),
                     "H@3": pct(tr["hits@3"]), "H@10": pct(tr["hits@10"]), "MRR opt.": pct(to["mrr"]),
                     "H@1 opt.": pct(to["hits@1"]), "H@10 opt.": pct(to["hits@10"]),
                     "valid MRR": pct(r["valid"]["mrr"]), "epochs (best)": f"{r['epochs_run']} ({r['best_epoch']})",
                     "s/epoch": r["epoch_seconds"], "train min": r["train_seconds"] / 60})
    cols = ["system", "MRR", "H@1", "H@3", "H@10", "MRR opt.", "H@1 opt.", "H@10 opt.", "valid MRR",
            "epochs (best)", "s/epoch", "train min"]
    return common.table(rows, cols)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dataset", type=Path, required=True, help="OpenKE folder with features/text.npy, relation.npy")
    ap.add_argument("--preset", required=True, help="snagkg preset (budget and hyperparameters for every row)")
    ap.add_argument("--output", type=Path, required=True, help="folder for the runs and each row's JSON")
    ap.add_argument("--rows", default=",".join(ROWS), help=f"comma-separated subset of {','.join(ROWS)}")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--pykeen-eval-batch", type=int, default=None)
    common.add_pykeen_norm_option(ap, default=1)
    ap.add_argument("--pykeen-valid", choices=("snagkg", "pykeen"), default="snagkg",
                    help="rank PyKEEN's validation with snagkg's ranking (fast, default) or PyKEEN's evaluator")
    ap.add_argument("--pykeen-test", choices=("both", "pykeen", "snagkg"), default="both",
                    help="test metrics from PyKEEN's evaluator, snagkg's ranking of its embeddings, or both "
                         "(the reported figures are PyKEEN's own when it runs)")
    ap.add_argument("--pykeen-snapshot", action="store_true",
                    help="row pykeen: test the best model kept so far (snagkg's ranking) without training more; "
                         "writes OUTPUT/pykeen.partial.json")
    ap.add_argument("--rerun", action="store_true", help="run rows whose JSON already exists again")
    ap.add_argument("extra", nargs=argparse.REMAINDER, help="after --: more snagkg train options for the snagkg rows")
    args = ap.parse_args()
    args.extra = [a for a in args.extra if a != "--"]
    rows = [r for r in args.rows.split(",") if r]
    unknown = set(rows) - set(ROWS)
    if unknown:
        raise SystemExit(f"unknown rows: {', '.join(sorted(unknown))} (choose from {', '.join(ROWS)})")
    os.environ.setdefault("OMP_NUM_THREADS", str(args.threads))
    common.set_threads(args.threads)
    args.output.mkdir(parents=True, exist_ok=True)
    common.log(common.environment())
    results = []
    for row in ROWS:
        path = args.output / f"{row}.json"
        if row == "pykeen" and row in rows and args.pykeen_snapshot:
            res = run_pykeen(args, args.output)
            (args.output / "pykeen.partial.json").write_text(json.dumps(res, indent=2))
            common.log(f"[pykeen] unfinished, epoch {res['epochs_run']} (best {res['best_epoch']}): "
                       f"test mrr {res['test']['mrr']:.4f}")
            results.append(res)
            continue
        if row in rows and (args.rerun or not path.exists()):
            res = run_pykeen(args, args.output) if row == "pykeen" else run_snagkg(row, args, args.output)
            res["environment"] = common.environment()
            path.write_text(json.dumps(res, indent=2))
            common.log(f"[{row}] test mrr {res['test']['mrr']:.4f} ({res['train_seconds'] / 60:.1f} min)")
        if path.exists():
            results.append(json.loads(path.read_text()))
    print(f"\n{args.dataset.name}, preset {args.preset}, seed {args.seed}; {common.environment()}")
    print(table(results))


if __name__ == "__main__":
    main()
