"""Config dataclasses shared by the jobs: strict loading (unknown keys and out-of-range values name the key).
Each job's config lives beside its job (`core.train.TrainConfig`, `core.generate.GenerateConfig`)."""

from __future__ import annotations

import dataclasses
from typing import Any, Mapping

from core.errors import UserError


class StrictConfig:
    """Mixin for dataclasses: `from_dict` rejects unknown keys; `validate()` checks ranges; `to_dict()` is saved."""

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]):
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - names)
        if unknown:
            raise UserError(f"unknown config key(s) {', '.join(unknown)} for {cls.__name__}; "
                            f"known: {', '.join(sorted(names))}")
        obj = cls(**dict(data))
        obj.validate()
        return obj

    def to_dict(self) -> dict[str, Any]:
        return {k: (str(v) if hasattr(v, "__fspath__") else v) for k, v in dataclasses.asdict(self).items()}

    def validate(self) -> None:  # overridden
        pass


def check(cond: bool, key: str, value: Any, rule: str) -> None:
    if not cond:
        raise UserError(f"{key}={value!r}: {rule}")
