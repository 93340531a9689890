"""``python -m train {fit,search,loso,evaluate,calibrate,push}``."""
from __future__ import annotations

import argparse
import sys

from . import config as train_config


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = argparse.ArgumentParser(prog="python -m train")
    sub = parser.add_subparsers(dest="command", required=True)

    fit_parser = sub.add_parser("fit", help="train a checkpoint")
    train_config.add_arguments(fit_parser)

    search_parser = sub.add_parser("search", help="Optuna search over lr, batch size and dropout")
    train_config.add_arguments(search_parser)
    search_parser.add_argument("--trials", type=int, default=10)

    loso_parser = sub.add_parser("loso", help="leave-one-source-out: train without a group, test on it")
    train_config.add_arguments(loso_parser)
    loso_parser.add_argument("--baseline", default=None,
                             help="reuse this finished all-sources run (same budget) instead of training one")

    evaluate_parser = sub.add_parser("evaluate", help="metrics, robustness table and plots on a test split")
    evaluate_parser.add_argument("--model", required=True, help="folder or org/name[@revision]")
    evaluate_parser.add_argument("--data", required=True)
    evaluate_parser.add_argument("--split", default="test")
    evaluate_parser.add_argument("--sources", nargs="+", default=None)
    evaluate_parser.add_argument("--out", default=None, help="folder for metrics.json, metrics.md and plots")
    evaluate_parser.add_argument("--no-robustness", action="store_true")
    evaluate_parser.add_argument("--update-card", action="store_true", help="write the results into the model card")
    evaluate_parser.add_argument("--num-workers", type=int, default=1)
    evaluate_parser.add_argument("--loso-table", default=None, help="loso.md from `train loso`, added to the card")
    evaluate_parser.add_argument("--ablation-table", default=None,
                                 help="ablation.md from benchmarks/ablation.sh, added to the card")
    evaluate_parser.add_argument("--compare", default=None,
                                 help="metrics.json of another model on the same splits, shown beside this one in the card")

    calibrate_parser = sub.add_parser("calibrate", help="refit temperature/threshold/band on validation data")
    train_config.add_arguments(calibrate_parser)
    calibrate_parser.add_argument("--model-dir", required=True)

    push_parser = sub.add_parser("push", help="upload a checkpoint folder to the Hub")
    push_parser.add_argument("--model", required=True)
    push_parser.add_argument("--repo", required=True)
    push_parser.add_argument("--revision", default=None)
    push_parser.add_argument("--private", action="store_true")

    args = parser.parse_args(argv)
    if args.command == "fit":
        from .fit import fit
        from .publish import PushError

        try:
            fit(train_config.resolve(args), argv=argv[1:])
        except PushError as exc:  # the checkpoint is trained and saved; only the upload failed
            print(f"error: {exc}", file=sys.stderr)
            return 1
    elif args.command == "search":
        from .search import search

        search(train_config.resolve(args), args.trials)
    elif args.command == "loso":
        from .loso import loso

        loso(train_config.resolve(args), command=" ".join(["python -m train", *argv]), baseline=args.baseline)
    elif args.command == "evaluate":
        from .evaluate import evaluate

        evaluate(args.model, args.data, split=args.split, sources=args.sources, out=args.out,
                 robustness=not args.no_robustness, update_card=args.update_card, num_workers=args.num_workers,
                 command=" ".join(["python -m train", *argv]), loso_table=args.loso_table,
                 ablation_table=args.ablation_table, compare=args.compare)
    elif args.command == "calibrate":
        from pathlib import Path

        from .fit import calibrate_checkpoint, train_and_validation

        cfg = train_config.resolve(args)
        train, val = train_and_validation(cfg)
        print(calibrate_checkpoint(Path(args.model_dir), val, cfg, train_records=train)["overall"])
    elif args.command == "push":
        from .publish import PushError, push

        try:
            push(args.model, args.repo, revision=args.revision, private=args.private)
        except PushError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
