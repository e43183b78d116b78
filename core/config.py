"""Config dataclasses and the command line made from them: each option is written once, as a dataclass field
with its default and help (`option(...)`), and `add_options` / `from_args` turn the fields into argparse
arguments and back. Strict loading: unknown keys and out-of-range values are one-line errors naming the key.
Each job's config lives beside its job (`core.train.TrainConfig`, `core.generate.GenerateConfig`, ...)."""

from __future__ import annotations

import argparse
import dataclasses
import sys
import types
import typing
from pathlib import Path
from typing import Any, Mapping

from core.errors import UserError


def option(default: Any = dataclasses.MISSING, help: str = "", *, choices: tuple | None = None,  # noqa: A002
           metavar: str | None = None, cli: bool = True, flag: str | None = None, aliases: tuple[str, ...] = (),
           required: bool = False, repeat: bool = False) -> Any:
    """A config field and its command-line option in one place: `steps: int = option(3000, "why 3000")`.

    `help` is the option's help text (say where the default comes from); `choices` limits the values; `cli=False`
    keeps a field off the command line; `flag` overrides the option name (default `--field-name`); `aliases` are
    older spellings still accepted (with a deprecation note); `required=True` makes the option required;
    `repeat=True` lets the option be given several times (a `list[str] | None` field: None when never given)."""
    meta = {"help": help, "choices": choices, "metavar": metavar, "cli": cli, "flag": flag, "aliases": aliases,
            "required": required, "repeat": repeat}
    if isinstance(default, (list, dict, set)):
        return dataclasses.field(default_factory=lambda: type(default)(default), metadata=meta)
    return dataclasses.field(default=default, metadata=meta)


class StrictConfig:
    """Mixin for config dataclasses: `from_dict` rejects unknown keys and checks types; `validate()` checks
    ranges (override it, using `check`); `to_dict()` is what a run saves."""

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]):
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - names)
        if unknown:
            raise UserError(f"unknown config key(s) {', '.join(unknown)} for {cls.__name__}; "
                            f"known: {', '.join(sorted(names))}")
        hints = typing.get_type_hints(cls)
        values = {k: _coerce(k, v, hints[k]) for k, v in data.items()}
        try:
            obj = cls(**values)
        except TypeError as e:  # a required field without a value
            raise UserError(f"{cls.__name__}: {e}") from None
        obj.validate()
        return obj

    def to_dict(self) -> dict[str, Any]:
        return {k: (str(v) if hasattr(v, "__fspath__") else v) for k, v in dataclasses.asdict(self).items()}

    def validate(self) -> None:  # overridden
        pass


def check(cond: bool, key: str, value: Any, rule: str) -> None:
    if not cond:
        raise UserError(f"{key}={value!r}: {rule}")


# SD v1's picture sizes: the VAE divides a side by 8 and the UNet halves the latent 3 times, so a side must be a
# multiple of 64 (512 is SD v1.4's training size; 64 and 128 are CPU-sized pipeline checks)
RESOLUTION_STEP = 64


def check_resolution(value: int | None, key: str = "resolution", unset: Any = None) -> None:
    """One rule for every command's picture size; `unset` (None, 0) is a value meaning 'the run's own'."""
    if unset is not None and value == unset:
        return
    check(value is not None and value >= RESOLUTION_STEP and value % RESOLUTION_STEP == 0, key, value,
          f"must be a positive multiple of {RESOLUTION_STEP} (SD v1's VAE and UNet halve a side 6 times)")


# ------------------------------------------------------------------------------------------------ types
def _base_type(hint: Any) -> tuple[type, bool]:
    """(the type a value must have, whether None is allowed) of a field annotation like `int`, `str | None`."""
    args = typing.get_args(hint)
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        inner = [a for a in args if a is not type(None)]
        return inner[0], len(inner) < len(args)
    return hint, False


def _coerce(key: str, value: Any, hint: Any) -> Any:
    """`value` as the field's type; a value of another type is a one-line error naming the key."""
    base, nullable = _base_type(hint)
    if value is None:
        if nullable:
            return None
        raise UserError(f"{key}=None: a value is required")
    if base is bool:
        if isinstance(value, bool):
            return value
        raise UserError(f"{key}={value!r}: must be true or false")
    if base is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, str) and value.strip().lstrip("-").isdigit():
            return int(value)
        raise UserError(f"{key}={value!r}: must be a whole number")
    if base is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        try:
            return float(value)
        except (TypeError, ValueError):
            raise UserError(f"{key}={value!r}: must be a number") from None
    if base is Path:
        return Path(value)
    if typing.get_origin(base) is list:
        if isinstance(value, (list, tuple)) and all(isinstance(v, str) for v in value):
            return list(value)
        raise UserError(f"{key}={value!r}: must be a list of text values")
    if base is str and not isinstance(value, (str, Path)):
        raise UserError(f"{key}={value!r}: must be text")
    return str(value) if base is str else value


# ------------------------------------------------------------------------------------------ command line
class _DeprecatedAlias(argparse.Action):
    """An old spelling of an option: works as the new one and prints a one-line deprecation note."""

    def __init__(self, option_strings, dest, new: str, nargs=None, const=None, **kw):
        self.new = new
        super().__init__(option_strings, dest, nargs=nargs, const=const, **kw)

    def __call__(self, parser, namespace, values, option_string=None):
        print(f"note: {option_string} is deprecated and will be removed in the next release; use {self.new}",
              file=sys.stderr)
        setattr(namespace, self.dest, self.const if self.nargs == 0 else values)


def add_options(parser: argparse.ArgumentParser, cls: type, *, exclude: tuple[str, ...] = (),
                group: str | None = None) -> None:
    """Add one command-line argument per field of the config dataclass `cls` (fields with `cli=False` and names in
    `exclude` are left out). The flag is `--field-name`; bool fields are switches (`--x` / `--no-x`); defaults and
    help come from the field. Values are parsed as text and converted by `from_args`, so a bad value is the same
    one-line error as in a config file."""
    target = parser.add_argument_group(group) if group else parser
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        meta = f.metadata
        if not meta.get("cli", True) or f.name in exclude:
            continue
        base, _ = _base_type(hints[f.name])
        default = f.default if f.default is not dataclasses.MISSING else (
            f.default_factory() if f.default_factory is not dataclasses.MISSING else None)
        help_text = meta.get("help") or ""
        flag = meta.get("flag") or "--" + f.name.replace("_", "-")
        kw: dict[str, Any] = {"dest": f.name, "help": help_text, "default": default}
        if base is bool:
            kw["action"] = argparse.BooleanOptionalAction
        elif meta.get("repeat"):
            kw.update(action="append", metavar=meta.get("metavar") or f.name.upper())
        else:
            kw["metavar"] = meta.get("metavar") or (f.name.upper() if not meta.get("choices") else None)
            kw["choices"] = meta.get("choices")
            if meta.get("required"):
                kw["required"] = True
                kw.pop("default")
        target.add_argument(flag, **{k: v for k, v in kw.items() if v is not None or k == "default"})
        for alias in meta.get("aliases") or ():
            target.add_argument(alias, dest=f.name, action=_DeprecatedAlias, new=flag, help=argparse.SUPPRESS,
                                **({"nargs": 0, "const": True} if base is bool else {}))


def from_args(cls: type, args: argparse.Namespace, **overrides: Any):
    """The config `cls` from parsed arguments (fields `add_options` added, plus `overrides`), validated strictly."""
    names = {f.name for f in dataclasses.fields(cls)}
    data = {k: v for k, v in vars(args).items() if k in names}
    data.update(overrides)
    return cls.from_dict(data)


def add_progress_flag(parser: argparse.ArgumentParser) -> None:
    """`--no-progress` (every long command has it); `--quiet` is its deprecated spelling, kept one release."""
    parser.add_argument("--no-progress", dest="no_progress", action="store_true", help="no progress bar")
    parser.add_argument("--quiet", dest="no_progress", action=_DeprecatedAlias, new="--no-progress", nargs=0,
                        const=True, help=argparse.SUPPRESS)


class OneLineParser(argparse.ArgumentParser):
    """argparse, but a usage error is one line naming the argument (and where to read more), exit status 2."""

    def error(self, message: str):  # noqa: D401
        self.exit(2, f"error: {self.prog}: {message} (see {self.prog} --help)\n")


def add_run_argument(parser: argparse.ArgumentParser, help: str = "run folder (made by `train` or `import`)",  # noqa: A002
                     name: str = "run") -> None:
    """The run folder, positional and named `run` in every command that takes one."""
    parser.add_argument(name, type=Path, metavar=name.upper(), help=help)


def run_stage_arguments(cls: type, run_help: str = "run folder (made by `train`, with images from `generate`)"):
    """`add_arguments(parser, command)` of a command that works on one run: the run, one option per field of the
    config dataclass `cls`, and --no-progress."""

    def add_arguments(parser: argparse.ArgumentParser, command: str) -> None:
        add_run_argument(parser, run_help)
        add_options(parser, cls)
        add_progress_flag(parser)

    return add_arguments
