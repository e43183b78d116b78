"""`python -m core card RUN [--compare RUN_B] [--format md,html,pdf,json] [--out DIR]`: write the model card.
Its options are the fields of `CardConfig` (core.config generates the command line from them); --out defaults to
RUNS_DIR/reports/RUN (`core.runfolder.card_dir`)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from core.card.legal import LICENSE_FILE_NAME
from core.card.output import FORMATS, parse_formats, write_card
from core.card.overrides import overrides_template
from core.config import StrictConfig, add_options, add_run_argument, from_args, option
from core.errors import UserError
from core.runfolder import Run, atomic_write_bytes, card_dir, counterpart_run


@dataclass
class CardConfig(StrictConfig):
    """`card` options besides the run (one command-line option per field)."""

    compare: Path | None = option(None, "the counterpart run (style for a character run, or the reverse) to "
                                        "compare with", metavar="RUN_B")
    comparison: Path | None = option(None, "the folder `python -m core compare` wrote for RUN and RUN_B; default "
                                           "RUNS_DIR/reports/A-vs-B (either order)", metavar="DIR")
    format: str = option(",".join(FORMATS), f"comma-separated: {', '.join(FORMATS)}")
    out: Path | None = option(None, "output folder; default RUNS_DIR/reports/<run name>/", metavar="DIR")
    overrides: Path | None = option(None, "overrides file, YAML or JSON; default RUN/card.yaml when it exists",
                                    metavar="FILE")
    init_overrides: bool = option(False, "write a commented RUN/card.yaml to fill in (never overwrites one) and "
                                         "stop")

    def validate(self) -> None:
        parse_formats(self.format)  # an unknown format is a one-line error before anything is read
        if self.comparison is not None and self.compare is None:
            raise UserError(f"--comparison {self.comparison}: give --compare RUN_B too (the run it compares with)")


def add_arguments(parser, command: str) -> None:
    add_run_argument(parser, "run folder (made by `train` or `import`)")
    add_options(parser, CardConfig)


def _init_overrides(run: Run) -> int:
    path = run.card_overrides_path
    if path.exists():
        raise UserError(f"{path}: already exists; edit it (it is never overwritten)")
    atomic_write_bytes(path, overrides_template(run).encode("utf-8"))
    print(f"wrote {path}: fill it in, then run `python -m core card {run.path}`")
    return 0


def run(args) -> int:
    cfg = from_args(CardConfig, args)
    card_run = Run(args.run)
    card_run.record  # a UserError naming the folder (or the damaged key) if it is not a run
    if cfg.init_overrides:
        return _init_overrides(card_run)
    compare_run = counterpart_run(card_run, cfg.compare)
    written = write_card(card_run, cfg.out or card_dir(card_run), parse_formats(cfg.format), compare_run=compare_run,
                         overrides_path=cfg.overrides, comparison_folder=cfg.comparison)
    for fmt, path in written.items():
        print(f"{fmt:5s} {path}")
    print(f"{'text':5s} {Path(cfg.out or card_dir(card_run)) / LICENSE_FILE_NAME} (the licence text, LICENSE 4(b))")
    if card_run.record.is_pipeline_check:
        print("note: random-weight run: the card is labelled as a pipeline check")
    return 0
