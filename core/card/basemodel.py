"""What the card may claim about the base model, decided from the run's weights provenance (run.json `weights`,
read as `WeightsProvenance`) and nothing else: `base_model_claim` -> `BaseModelClaim`.

"Finetuned from", the Hub metadata's `base_model`, "trained through ..." and the base model's licence all come
from here, so a random-weight run never claims Stable Diffusion v1.4, and a checkpoint the tool cannot identify is
named as the one recorded in run.json, with its licence only when it is known (issue 22, point 3). When run.json
records the base checkpoint's own name and licence (issue 19), extend the last branch: nothing else changes.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from core.card.texts import BASE_MODEL as SD14_HUB_ID
from core.card.texts import BASE_MODEL_URL as SD14_URL
from core.card.texts import LICENSE_NAME as SD14_LICENCE  # KerasCV's notice names it for its SD v1.4 files (legal.py)
from core.runfolder import WeightsProvenance

SD14_NAME = "Stable Diffusion v1.4"
LICENCE_OVERRIDE_KEY = "base_model_license"  # card.yaml key for a checkpoint whose licence run.json does not record
LICENCE_NOT_STATED = f"licence of the base checkpoint: not stated, fill in card.yaml ({LICENCE_OVERRIDE_KEY})"


@dataclass(frozen=True)
class BaseModelClaim:
    """The base-model statements one run supports."""

    hub_id: str | None        # the Hub id for metadata `base_model`: only when the weights are that model's
    name: str                 # how sentences name the base model
    url: str | None           # its model card, when known
    trained_through: str      # "the embedding was trained through ..."
    licence: str              # the base checkpoint's licence, or LICENCE_NOT_STATED / not applicable
    licence_known: bool
    pipeline_check: bool      # random (or unidentified) weights: no base-model claim at all

    @property
    def finetuned_from(self) -> str:
        """The 'Finetuned from model' line of the Hugging Face template."""
        if self.pipeline_check:
            return "none: random weights (pipeline check), not Stable Diffusion's trained weights"
        return self.name


def _is_kerascv_sd14(weights: WeightsProvenance) -> bool:
    # kerascv: KerasCV downloaded its SD v1.4 files itself; local: files checked against KerasCV's sha256
    # (core/weights.py records verified=True only when every file matched)
    return weights.source == "kerascv" or (weights.source == "local" and weights.verified is True)


def base_model_claim(weights: WeightsProvenance, overrides: Mapping | None = None) -> BaseModelClaim:
    """The claims `weights` supports; `overrides` (card.yaml) may state a checkpoint's licence run.json lacks."""
    declared = str((overrides or {}).get(LICENCE_OVERRIDE_KEY) or "").strip()
    if weights.is_pipeline_check:
        return BaseModelClaim(None, "no base model (random weights)", None,
                              "randomly initialised networks (a pipeline check, not any base model's weights)",
                              "not applicable (random weights)", False, True)
    if _is_kerascv_sd14(weights):
        return BaseModelClaim(SD14_HUB_ID, SD14_NAME, SD14_URL,
                              f"{SD14_NAME}, through KerasCV's files of its weights (sha256 under Weight Provenance)",
                              SD14_LICENCE, True, False)
    if weights.checkpoint is not None:  # the user's SD 1.x file (issue 19): its name, hash and stated licence
        c = weights.checkpoint
        licence = c.licence or declared
        return BaseModelClaim(None, f"{c.name} [{c.short_hash}]", None,
                              f"the SD 1.x checkpoint {c.name} (sha256 {c.sha256}), converted to KerasCV's format",
                              licence or LICENCE_NOT_STATED, bool(licence), False)
    # any other checkpoint: name it as run.json records it, never as SD v1.4, and never assume its licence
    files = ", ".join(sorted(weights.files)) or "files not recorded"
    return BaseModelClaim(None, f"the checkpoint named in run.json ({files})", None,
                          f"the checkpoint named in run.json ({files}; sha256 under Weight Provenance)",
                          declared or LICENCE_NOT_STATED, bool(declared), False)
