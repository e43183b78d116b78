"""The command line is generated from the config dataclasses: each option is written once (field, default, help),
every command validates the same way (one line naming the key, before TensorFlow is imported), and the flags are
the same across commands (`--no-progress`, the run as the positional `run`)."""

from __future__ import annotations

import argparse
import dataclasses
import subprocess
import sys
from pathlib import Path

import pytest

from core.config import OneLineParser, add_options, add_progress_flag, from_args
from core.errors import UserError

ROOT = Path(__file__).resolve().parent.parent


def config_classes():
    from core.audit import AuditConfig
    from core.bench import BenchConfig
    from core.card.cli import CardConfig
    from core.compare import CompareConfig
    from core.demo import DemoConfig
    from core.doctor import DoctorConfig
    from core.export import ExportConfig, ImportConfig
    from core.generate import GenerateConfig
    from core.images import CheckImagesConfig
    from core.score import ScoreConfig
    from core.sweep import SweepCommandConfig
    from core.train import TrainConfig

    return [TrainConfig, GenerateConfig, ScoreConfig, AuditConfig, CompareConfig, CardConfig, ExportConfig,
            ImportConfig, CheckImagesConfig, DemoConfig, SweepCommandConfig, DoctorConfig, BenchConfig]


def parser_for(cls) -> argparse.ArgumentParser:
    p = OneLineParser(prog="t")
    add_options(p, cls)
    add_progress_flag(p)
    return p


@pytest.mark.parametrize("cls", config_classes(), ids=lambda c: c.__name__)
def test_every_field_is_one_option_with_its_help(cls):
    p = parser_for(cls)
    text = p.format_help()
    for f in dataclasses.fields(cls):
        assert f.metadata.get("help"), f"{cls.__name__}.{f.name} has no help text"
        assert "--" + f.name.replace("_", "-") in text
        assert f.metadata["help"].split()[0] in text


def test_arguments_round_trip_to_the_same_config():
    from core.train import TrainConfig

    args = parser_for(TrainConfig).parse_args(["--images", "pics", "--steps", "7", "--lr", "0.01", "--jit-compile",
                                               "--property", "style"])
    cfg = from_args(TrainConfig, args)
    assert cfg == TrainConfig.from_dict({"images": "pics", "steps": 7, "lr": 0.01, "jit_compile": True,
                                         "property": "style"})
    assert from_args(TrainConfig, parser_for(TrainConfig).parse_args(["--images", "p"])) == TrainConfig(images="p")


def test_quiet_is_a_deprecated_alias_of_no_progress(capsys):
    p = OneLineParser(prog="t")
    add_progress_flag(p)
    assert p.parse_args(["--quiet"]).no_progress is True
    assert "--quiet is deprecated" in capsys.readouterr().err
    assert p.parse_args(["--no-progress"]).no_progress is True and p.parse_args([]).no_progress is False


CASES = [
    (["train", "--images", "x", "--steps", "abc"], "steps='abc': must be a whole number"),
    (["train", "--images", "x", "--resolution", "100"], "resolution=100"),
    (["train", "--images", "x", "--stepz", "3"], "unrecognized arguments: --stepz"),
    (["train", "--images", "x", "--property", "face"], "invalid choice: 'face'"),
    (["generate", "RUN", "--guidance", "-1"], "guidance=-1.0: must be >= 0"),
    (["generate", "RUN", "--seeds", "a,b"], "--seeds 'a,b'"),
    (["score", "RUN", "--references", "refs", "--n-boot", "0"], "n_boot=0: must be at least 1"),
    (["compare", "A", "B", "--n-boot", "x"], "n_boot='x': must be a whole number"),
    (["check-images", "dir", "--min-size", "-3"], "min_size=-3"),
    (["audit", "RUN", "--references", "refs", "--fpr", "0.7"], "fpr=0.7: must be between 0 and 0.5"),
    (["card", "RUN", "--format", "md,docx"], "--format 'docx': unknown format"),
    (["card", "RUN", "--comparison", "DIR"], "give --compare RUN_B too"),
    (["export", "RUN"], "exactly one of --out FILE or --bundle DIR"),
    (["import", "f.pt", "--resolution", "100"], "resolution=100"),
    (["sweep", "spec.toml", "--num-cpus", "0"], "num_cpus=0: must be at least 1"),
    (["doctor", "--unet-seconds", "x"], "unet_seconds='x': must be a number"),
    (["bench", "--work", "eat"], "work='eat'"),
]


def test_bad_values_are_one_line_before_tensorflow_is_imported(tmp_path):
    code = ("import sys, json\nfrom core.__main__ import main\nout = []\n"
            f"for argv in {[c[0] for c in CASES]!r}:\n"
            "    try:\n        rc = main(argv)\n    except SystemExit as e:\n        rc = e.code\n"
            "    out.append([rc, 'tensorflow' in sys.modules, 'torch' in sys.modules])\n"
            "print(json.dumps(out))\n")
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=300)
    import json

    results = json.loads(proc.stdout.strip().splitlines()[-1])
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == len(CASES), proc.stderr
    for (argv, expected), (rc, tf, torch), line in zip(CASES, results, errors):
        assert rc == 2 and not tf and not torch, (argv, rc, tf, torch)
        assert expected in line, (argv, line)


def test_run_is_the_positional_argument_of_every_run_command():
    from core.__main__ import build_parser

    for argv in (["generate", "R"], ["score", "R", "--references", "x"], ["export", "R", "--out", "f.safetensors"],
                 ["audit", "R", "--references", "x"], ["card", "R"]):
        args = build_parser(argv).parse_args(argv)
        assert args.run == Path("R"), argv


def test_every_command_documents_every_option_and_long_ones_share_the_progress_flag():
    """The generated parsers: each visible option has help text, and each command that shows a progress bar takes
    --no-progress (and the deprecated --quiet) and --debug."""
    from core.__main__ import COMMANDS, build_parser

    for command in COMMANDS:
        parser = build_parser([command])
        sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction)).choices[command]
        for action in sub._actions:
            if action.help == argparse.SUPPRESS or isinstance(action, argparse._HelpAction):
                continue
            assert action.help, (command, action.option_strings or action.dest)
        flags = {s for a in sub._actions for s in a.option_strings}
        assert "--debug" in flags, command
        if command in ("train", "generate", "score", "audit"):
            assert {"--no-progress", "--quiet"} <= flags, command


def test_export_needs_exactly_one_destination():
    from core.export import ExportConfig

    with pytest.raises(UserError, match="exactly one of --out FILE or --bundle DIR"):
        ExportConfig.from_dict({})
    with pytest.raises(UserError, match="exactly one"):
        ExportConfig.from_dict({"out": "a.pt", "bundle": "d"})
    assert ExportConfig.from_dict({"bundle": "d"}).bundle == Path("d")
