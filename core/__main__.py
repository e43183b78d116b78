"""Command line: `python -m core <command> --help`. Each command lives in the module named in COMMANDS.

A command module exposes `add_arguments(parser, command)` and `run(args) -> int` (`args.command` names it), and
imports nothing heavy at module level (TensorFlow/keras_cv or torch/open_clip are imported inside `run`, after the
options are validated), so `--help` is instant, a bad option fails before TensorFlow loads, and one process never
imports TensorFlow before torch. Options come from the command's config dataclass (`core.config.add_options` /
`from_args`); a usage error is one line (`core.config.OneLineParser`).
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
import traceback

from core import __version__
from core.config import OneLineParser
from core.errors import JobFailed, UserError

# command -> (module, one-line help)
COMMANDS = {
    "check-images": ("core.images", "validate every image in a folder; one line per bad file"),
    "train": ("core.train", "learn a new token by textual inversion"),
    "generate": ("core.generate", "generate prompt grids from a run's checkpoints"),
    "export": ("core.export", "export a learned embedding for A1111, ComfyUI, InvokeAI, kohya or diffusers"),
    "import": ("core.export", "bring an embedding trained elsewhere into a run folder"),
    "score": ("core.score", "CLIP-I / CLIP-T scores of a run's images"),
    "audit": ("core.audit", "copy audit against the training images, misuse transfer"),
    "compare": ("core.compare", "compare a character run with a style run"),
    "card": ("core.card", "write the model card (md, html, pdf, json)"),
    "review": ("core.review.cli", "flag images, write findings, retract, or list a run's human review"),
    "review-pack": ("core.review.pack", "one self-contained HTML file of a run's limitations review"),
    "demo": ("core.demo", "build the built-in random-weight demo experiment"),
    "sweep": ("core.sweep", "many runs from one spec (grid/random search) on Ray, local or a cluster"),
    "convert-weights": ("core.convert", "an SD 1.x checkpoint (.safetensors/.ckpt or diffusers folder) as "
                                        "KerasCV's weight files"),
    "doctor": ("core.doctor", "what hardware and precision Keras and torch see; a 10-second UNet timing"),
    "bench": ("core.bench", "training and generation speed and memory vs KerasCV and diffusers"),
}


def choose_backend() -> str | None:
    """With the GPU builds installed (requirements-gpu.txt: jax[cuda12]) and no KERAS_BACKEND set, use Keras'
    JAX backend, which is the one that sees the GPU (TensorFlow is the CPU build). Checked without importing."""
    import importlib.util

    if "KERAS_BACKEND" not in os.environ and importlib.util.find_spec("jax_cuda12_plugin") is not None:
        os.environ["KERAS_BACKEND"] = "jax"
    return os.environ.get("KERAS_BACKEND")


def build_parser(argv: list[str]) -> argparse.ArgumentParser:
    """All commands are listed; only the one being run is imported (keeps start-up light and torch/TF apart)."""
    parser = OneLineParser(prog="python -m core", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    chosen = next((a for a in argv if not a.startswith("-")), None)
    for name, (module_name, help_text) in COMMANDS.items():
        p = sub.add_parser(name, help=help_text, description=help_text,
                           formatter_class=argparse.ArgumentDefaultsHelpFormatter)
        p.add_argument("--debug", action="store_true", help="print tracebacks on the terminal too")
        if name == chosen:
            module = importlib.import_module(module_name)
            module.add_arguments(p, name)
            p.set_defaults(_module=module)
    return parser


def main(argv: list[str] | None = None) -> int:
    choose_backend()
    argv = sys.argv[1:] if argv is None else argv
    args = build_parser(argv).parse_args(argv)
    try:
        return int(args._module.run(args) or 0)
    except UserError as e:
        if args.debug:
            traceback.print_exc()
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except JobFailed as e:  # recorded in the run (status, logs/<command>.log); one line here
        if args.debug:
            traceback.print_exception(e.__cause__ or e)
        print(f"error: {e}", file=sys.stderr)
        return 1
    except Exception as e:  # noqa: BLE001 - a bug outside any run: one line, the traceback on --debug
        if args.debug:
            raise
        print(f"error: {args.command} failed: {type(e).__name__}: {' '.join(str(e).split())[:300]} "
              "(rerun with --debug for the traceback)", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
