"""``streamtopo train``: seed 004's ``ph-train`` pipeline (:class:`PHTrainer`) from the shell.

The command is hooked into ``streamtopo``'s CLI with :func:`add_train_parser` (or through
``cmd_train.configure``); :func:`main` runs it on its own::

    python -m streamtopo.app.train --dataset digits --epochs 20
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from streamtopo.errors import StreamtopoError

__all__ = ["add_train_parser", "build_parser", "cmd_train", "configure", "main"]

HELP = "train a model with seed 004's pipeline (ph-train): difficulty, LR search, gap alert, pairs"


def _lr(text: str) -> float | None:
    if text == "auto":
        return None
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number or 'auto', got {text!r}") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text!r}")
    return value


def configure(p: argparse.ArgumentParser) -> None:
    """Add the ``train`` options to parser ``p``."""
    from streamtopo.compat.pipeline import DATASETS, MODELS

    p.add_argument("--dataset", choices=DATASETS, default="digits", help="default: digits")
    p.add_argument("--root", default=None, help="torchvision data directory (mnist/fashion/cifar)")
    p.add_argument("--epochs", type=int, default=20, help="default: 20")
    p.add_argument("--lr", type=_lr, default=None, help="learning rate, or 'auto' (default)")
    p.add_argument("--hidden", type=int, default=128, help="hidden width, default 128")
    p.add_argument("--gap-threshold", type=float, default=0.08, help="default: 0.08")
    p.add_argument("--seed", type=int, default=42, help="default: 42")
    p.add_argument("--model", choices=MODELS, default="purefield", help="default: purefield")
    p.add_argument(
        "--lr-search",
        choices=("val_loss", "h0cv"),
        default="val_loss",
        help="which LR choice to use; both are printed (default: val_loss, measured better)",
    )
    p.add_argument("--search-epochs", type=int, default=5, help="epochs per LR trial, default 5")
    p.add_argument("--batch-size", type=int, default=64, help="default: 64")
    p.add_argument("--adversarial", action="store_true", help="measure the FGSM proxy")
    p.add_argument("--eps", type=float, default=0.1, help="FGSM step, default 0.1")
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads, default 1")


def cmd_train(args: argparse.Namespace) -> int:
    """Run :class:`streamtopo.compat.ph_training.PHTrainer` with the parsed ``args``."""
    from streamtopo.compat.ph_training import PHTrainer

    trainer = PHTrainer(
        args.dataset,
        epochs=args.epochs,
        lr=args.lr,
        hidden=args.hidden,
        gap_threshold=args.gap_threshold,
        seed=args.seed,
        model=args.model,
        lr_search=args.lr_search,
        search_epochs=args.search_epochs,
        batch_size=args.batch_size,
        root=args.root,
        adversarial=args.adversarial,
        eps=args.eps,
        threads=args.threads,
    )
    trainer.run()
    return 0


cmd_train.configure = configure  # type: ignore[attr-defined]


def add_train_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Add the ``train`` sub-command to ``subparsers`` (``set_defaults(_fn=cmd_train)``)."""
    p = subparsers.add_parser("train", help=HELP, description=HELP)
    configure(p)
    p.set_defaults(_fn=cmd_train)
    return p


def build_parser() -> argparse.ArgumentParser:
    """A stand-alone parser for ``streamtopo train``."""
    p = argparse.ArgumentParser(prog="streamtopo train", description=HELP)
    configure(p)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """Parse ``argv`` and run; streamtopo errors are printed as ``streamtopo train: error: ...``
    and give exit code 1 (argparse's own errors exit with 2)."""
    args = build_parser().parse_args(argv)
    try:
        return cmd_train(args)
    except KeyboardInterrupt:
        return 130
    except StreamtopoError as exc:
        print(f"streamtopo train: error: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
