"""``python -m train {fit,search,loso,evaluate,calibrate,push}``."""
from __future__ import annotations

import argparse
import sys

from . import config as train_config
from . import features as features_defaults


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

    calibrate_parser = sub.add_parser(
        "calibrate", help="refit temperature/threshold/band on the run's own validation split",
        description="Reads the run's train_config.json (next to --model-dir or one folder up) for the split: data, "
                    "sources, exclude_sources, val_fraction, seed. Without it, refuses unless --split-from-flags.")
    train_config.add_arguments(calibrate_parser)
    calibrate_parser.add_argument("--model-dir", required=True, help="a run's best/ or checkpoint-NNNN/ folder")
    calibrate_parser.add_argument(
        "--split-from-flags", action="store_true",
        help="rebuild the validation split from --data/--seed/--val-fraction (all three required) instead of the "
             "run's saved config; only for checkpoints whose train_config.json is gone")

    cache_parser = sub.add_parser(
        "cache-features", help="run the frozen branches once per image and variant; write the features to disk",
        description="Resumable: run the same command again to continue. Then `python -m train fit-head`.")
    cache_parser.add_argument("--model", default="convitx_small_dino", help="a registry name whose branches are all frozen")
    cache_parser.add_argument("--data", default="../shared/data")
    cache_parser.add_argument("--out", default="runs/features")
    cache_parser.add_argument("--init-from", default=None,
                              help="a ConVitX checkpoint folder: copy its branches of the same name (e.g. weights/)")
    cache_parser.add_argument("--sources", nargs="+", default=None)
    cache_parser.add_argument("--train-variants", nargs="+", default=None, help=f"default: {' '.join(features_defaults.TRAIN_VARIANTS)}")
    cache_parser.add_argument("--test-variants", nargs="+", default=None, help=f"default: {' '.join(features_defaults.TEST_VARIANTS)}")
    cache_parser.add_argument("--cifake-train", type=int, default=3000)
    cache_parser.add_argument("--cifake-test", type=int, default=2000)
    cache_parser.add_argument("--chunk-size", type=int, default=128)
    cache_parser.add_argument("--seed", type=int, default=0)

    for name, text in (("fit-head", "train the readout + fused head on cached features, calibrate, evaluate"),
                       ("loso-head", "leave-one-group-out on cached features: one head per held-out group")):
        head_parser = sub.add_parser(name, help=text)
        head_parser.add_argument("--features", default="runs/features", help="a cache-features folder")
        head_parser.add_argument("--model", default="convitx_small_dino")
        head_parser.add_argument("--init-from", default=None, help="default: the checkpoint the cache was made with")
        head_parser.add_argument("--out", required=True)
        head_parser.add_argument("--branches", nargs="+", default=None, help="a subset of the model's branches (ablation)")
        head_parser.add_argument("--blocks", choices=("all", "last"), default="all")
        head_parser.add_argument("--exclude-sources", nargs="+", default=None)
        head_parser.add_argument("--epochs", type=int, default=40)
        head_parser.add_argument("--samples-per-epoch", type=int, default=20000)
        head_parser.add_argument("--batch-size", type=int, default=256)
        head_parser.add_argument("--lr", type=float, default=1e-3)
        head_parser.add_argument("--weight-decay", type=float, default=0.05)
        head_parser.add_argument("--val-fraction", type=float, default=0.1)
        head_parser.add_argument("--cifake-share", type=float, default=1.0)
        head_parser.add_argument("--seed", type=int, default=0)
        head_parser.add_argument("--ablation-table", default=None, help="markdown added to the model card")
        head_parser.add_argument("--loso-table", default=None, help="loso.md from loso-head, added to the model card")

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
    elif args.command == "cache-features":
        from .features import CacheConfig, cache_features

        options = {k: v for k, v in vars(args).items() if k != "command" and v is not None}
        cache_features(CacheConfig(**options))
    elif args.command in ("fit-head", "loso-head"):
        from .head import HeadConfig, fit_head, loso_head

        options = {k: v for k, v in vars(args).items() if k != "command"}
        run = loso_head if args.command == "loso-head" else fit_head
        run(HeadConfig(**options), command=" ".join(["python -m train", *argv]))
    elif args.command == "evaluate":
        from .evaluate import evaluate

        evaluate(args.model, args.data, split=args.split, sources=args.sources, out=args.out,
                 robustness=not args.no_robustness, update_card=args.update_card, num_workers=args.num_workers,
                 command=" ".join(["python -m train", *argv]), loso_table=args.loso_table,
                 ablation_table=args.ablation_table, compare=args.compare)
    elif args.command == "calibrate":
        from pathlib import Path

        try:
            cfg = calibration_config(args)
        except CalibrationSplitError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
        from .fit import calibrate_checkpoint, train_and_validation

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


SPLIT_FIELDS = ("data", "sources", "exclude_sources", "val_fraction", "seed")  # what decides the validation split


class CalibrationSplitError(ValueError):
    """The validation split cannot be known for sure; calibrating anyway could use training images."""


def calibration_config(args: argparse.Namespace) -> train_config.TrainConfig:
    """The config ``calibrate`` runs with: the run's saved train_config.json (so the validation split is
    the one the run held out), with flags allowed to change only what does not move the split
    (max_fpr, num_workers, ...). ``--split-from-flags`` instead takes the split from explicit flags."""
    import dataclasses
    import json
    from pathlib import Path

    model_dir = Path(args.model_dir)
    given = {name for name in SPLIT_FIELDS if getattr(args, name, None) is not None}
    if args.split_from_flags:
        missing = [f"--{n.replace('_', '-')}" for n in ("data", "seed", "val_fraction") if n not in given]
        if missing:
            raise CalibrationSplitError(f"--split-from-flags needs the split spelled out: add {' '.join(missing)}")
        return train_config.resolve(args)
    candidates = [model_dir / "train_config.json", model_dir.parent / "train_config.json"]
    saved = next((path for path in candidates if path.is_file()), None)
    if saved is not None and args.config:
        raise CalibrationSplitError(f"--config would override the run's {saved}; use --split-from-flags to choose the split")
    if saved is None:
        raise CalibrationSplitError(
            f"no run config for {model_dir} (looked for {candidates[0]} and {candidates[1]}): without it the "
            "validation split cannot be rebuilt for sure, and different flags would calibrate on training images. "
            "If you know the run's split, give it: --split-from-flags --data PATH --seed N --val-fraction F "
            "[--sources ...] [--exclude-sources ...]"
        )
    values = json.loads(saved.read_text())
    known = {f.name for f in dataclasses.fields(train_config.TrainConfig)}
    cfg = train_config.TrainConfig(**{k: v for k, v in values.items() if k in known})
    conflicting = [f"--{n.replace('_', '-')}" for n in given if getattr(args, n) != getattr(cfg, n)]
    if conflicting:
        raise CalibrationSplitError(
            f"{' '.join(conflicting)} differ from the run's {saved}, which decides the validation split; drop them "
            "(or, for a checkpoint of another run, use --split-from-flags with the full split)"
        )
    overrides = {f.name: getattr(args, f.name) for f in dataclasses.fields(cfg)
                 if f.name not in SPLIT_FIELDS and getattr(args, f.name, None) is not None}
    return dataclasses.replace(cfg, **overrides)


if __name__ == "__main__":
    sys.exit(main())
