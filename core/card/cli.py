"""`python -m core card RUN [--compare RUN_B] [--format md,html,pdf,json] [--out DIR]`: write the model card."""

from __future__ import annotations

from pathlib import Path

from core.card.output import FORMATS, parse_formats, write_card
from core.card.overrides import overrides_template
from core.errors import UserError
from core.runfolder import Run, atomic_write_bytes, card_dir


def add_arguments(parser, command: str) -> None:
    parser.add_argument("run", help="run folder (made by `train`)")
    parser.add_argument("--compare", metavar="RUN_B", default=None,
                        help="the counterpart run (style for a character run, or the reverse) to compare with")
    parser.add_argument("--comparison", metavar="DIR", default=None,
                        help="the folder `python -m core compare` wrote for RUN and RUN_B; None means "
                             "RUNS_DIR/reports/A-vs-B (either order)")
    parser.add_argument("--format", default=",".join(FORMATS), help=f"comma-separated: {', '.join(FORMATS)}")
    parser.add_argument("--out", default=None, help="output folder; None means RUNS_DIR/reports/<run name>/")
    parser.add_argument("--overrides", default=None,
                        help="overrides file, YAML or JSON; None means RUN/card.yaml when it exists")
    parser.add_argument("--init-overrides", action="store_true",
                        help="write a commented RUN/card.yaml to fill in (never overwrites one) and stop")


def _init_overrides(run: Run) -> int:
    path = run.card_overrides_path
    if path.exists():
        raise UserError(f"{path}: already exists; edit it (it is never overwritten)")
    atomic_write_bytes(path, overrides_template(run).encode("utf-8"))
    print(f"wrote {path}: fill it in, then run `python -m core card {run.path}`")
    return 0


def run(args) -> int:
    card_run = Run(args.run)
    card_run.record  # a UserError naming the folder (or the damaged key) if it is not a run
    if args.init_overrides:
        return _init_overrides(card_run)
    compare_run = None
    if args.compare:
        compare_run = Run(args.compare)
        compare_run.record
        if compare_run.path.resolve() == card_run.path.resolve():
            raise UserError(f"--compare {args.compare}: the same run as RUN; give the counterpart run")
    elif args.comparison:
        raise UserError(f"--comparison {args.comparison}: give --compare RUN_B too (the run it compares with)")
    formats = parse_formats(args.format)
    out = Path(args.out) if args.out else card_dir(card_run)
    written = write_card(card_run, out, formats, compare_run=compare_run, overrides_path=args.overrides,
                         comparison_folder=args.comparison)
    for fmt, path in written.items():
        print(f"{fmt:5s} {path}")
    if card_run.record.is_pipeline_check:
        print("note: random-weight run: the card is labelled as a pipeline check")
    return 0
