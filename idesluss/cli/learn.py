"""``idesluss learn``: tune the model and the fusion on coaches' feedback, or roll back."""

from __future__ import annotations

import argparse
import json
from typing import Any

from idesluss.cli.common import service_for, settings_for
from idesluss.errors import EXIT_OK, EXIT_USAGE, CliError


def _share(value: str) -> float:
    try:
        share = float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"--holdout must be a number, got {value!r}") from None
    if not 0 < share < 1:
        raise argparse.ArgumentTypeError(f"--holdout must be between 0 and 1, got {share}")
    return share


def _epochs(value: str) -> int:
    try:
        n = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"--epochs must be a whole number, got {value!r}") from None
    if n < 1:
        raise argparse.ArgumentTypeError(f"--epochs must be at least 1, got {n}")
    return n


def cmd_learn(args: argparse.Namespace) -> int:
    from models.registry import DEFAULT
    from pipelines.learn import NotEnoughFeedback, learn, learn_config, rollback

    settings = settings_for(args)
    if settings.model != DEFAULT:
        raise CliError(f"learn tunes the default model; IDESLUSS_MODEL is {settings.model!r}", EXIT_USAGE)
    if args.rollback:
        try:
            model_id = rollback(settings.cache_dir)
        except ValueError as exc:
            raise CliError(str(exc), EXIT_USAGE) from exc
        print(f"rolled back; in use from the next start: {model_id}")
        return EXIT_OK
    svc = service_for(args)
    try:
        report = learn(
            svc.store,
            svc.settings.cache_dir,
            svc.matcher_config,
            holdout=args.holdout,
            seed=args.seed,
            min_gain=args.min_gain,
            embed=not args.no_embed,
            config=None if args.epochs is None else learn_config(args.seed, args.epochs),
        )
    except NotEnoughFeedback as exc:
        raise CliError(str(exc), EXIT_USAGE) from exc
    finally:
        svc.close()
    print(json.dumps(report.as_dict(), ensure_ascii=False, default=str) if args.json else report.summary())
    if report.switched and not args.json:
        print("a running `idesluss serve` uses the new model from its next start")
    return EXIT_OK


def register(sub: Any) -> None:
    """Add learn."""
    p = sub.add_parser("learn", help="tune the model and the fusion on coaches' feedback (or --rollback)")
    p.add_argument("--rollback", action="store_true", help="return to the version before the current one")
    p.add_argument("--holdout", type=_share, default=0.2, help="share of the queries held out (default 0.2)")
    p.add_argument("--seed", type=int, default=20240601)
    p.add_argument(
        "--epochs", type=_epochs, default=None, help="passes over the feedback (default: by its size, 1 to 4)"
    )
    p.add_argument(
        "--min-gain",
        type=float,
        default=0.0,
        help="what the lower end of the held-out gain's 95 %% interval must exceed to switch (default 0: better outside the noise)",
    )
    p.add_argument("--no-embed", action="store_true", help="leave the new model's vectors to the nightly job")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_learn)
