"""Where Stable Diffusion's weights come from: KerasCV's published files (downloaded and hash-checked by
`keras.utils.get_file`, as KerasCV itself does), a local folder of those files, or seeded random weights.
This is the only module that resolves weight files; every run records the provenance it returns."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from core.errors import UserError

# component -> (file name, origin, sha256), exactly as keras-cv 0.9.0 publishes them for SD v1.4.
WEIGHT_FILES: dict[str, tuple[str, str, str]] = {
    "text_encoder": ("kcv_encoder.h5",
                     "https://huggingface.co/fchollet/stable-diffusion/resolve/main/kcv_encoder.h5",
                     "4789e63e07c0e54d6a34a29b45ce81ece27060c499a709d556c7755b42bb0dc4"),
    "diffusion_model": ("kcv_diffusion_model.h5",
                        "https://huggingface.co/fchollet/stable-diffusion/resolve/main/kcv_diffusion_model.h5",
                        "8799ff9763de13d7f30a683d653018e114ed24a6a819667da4f5ee10f9e805fe"),
    "image_encoder": ("vae_encoder.h5",
                      "https://huggingface.co/fchollet/stable-diffusion/resolve/main/vae_encoder.h5",
                      "c60fb220a40d090e0f86a6ab4c312d113e115c87c40ff75d11ffcf380aab7ebb"),
    "decoder": ("kcv_decoder.h5",
                "https://huggingface.co/fchollet/stable-diffusion/resolve/main/kcv_decoder.h5",
                "ad350a65cc8bc4a80c8103367e039a3329b4231c2469a1093869a345f55b1962"),
}
# Order fixes the random seed offset of each component, so a lazily built part is the same in every process.
COMPONENTS = tuple(WEIGHT_FILES)


@dataclass
class WeightSpec:
    """`--weights kerascv | random | DIR` (+ `--weights-seed`, `--allow-unverified`)."""

    source: str  # "kerascv" | "local" | "random"
    directory: Path | None = None
    seed: int = 0
    allow_unverified: bool = False
    files: dict[str, dict[str, Any]] = field(default_factory=dict)  # filled as components load
    _paths: dict[str, Path] = field(default_factory=dict, repr=False)

    @classmethod
    def parse(cls, value: str, seed: int = 0, allow_unverified: bool = False) -> "WeightSpec":
        if value in ("kerascv", "random"):
            return cls(value, None, seed, allow_unverified)
        d = Path(value)
        if not d.is_dir():
            raise UserError(f"--weights {value!r}: not 'kerascv', 'random' or an existing folder of KerasCV weight "
                            f"files ({', '.join(f for f, _, _ in WEIGHT_FILES.values())})")
        return cls("local", d, seed, allow_unverified)

    def provenance(self) -> dict[str, Any]:
        """What run.json, PNG metadata and model cards record."""
        out: dict[str, Any] = {"source": self.source}
        if self.source == "random":
            out.update(seed=self.seed, files={}, verified=None,
                       note="seeded random initialisation: a pipeline check, not a model result")
        else:
            out["files"] = {f["file"]: f["sha256"] for f in self.files.values()}
            out["verified"] = all(f["verified"] for f in self.files.values()) if self.files else None
            if self.directory is not None:
                out["directory"] = str(self.directory)
        return out

    def resolve(self, component: str) -> Path | None:
        """Path of the weight file for `component` (checked), or None for random weights."""
        fname, origin, sha = WEIGHT_FILES[component]
        if self.source == "random":
            return None
        if component in self._paths:
            return self._paths[component]
        path = self._resolve(component, fname, origin, sha)
        self._paths[component] = path
        return path

    def _resolve(self, component: str, fname: str, origin: str, sha: str) -> Path:
        if self.source == "kerascv":
            import keras

            try:
                path = Path(keras.utils.get_file(origin=origin, file_hash=sha))
            except Exception as e:  # network failure, hash mismatch after download, ...
                raise UserError(
                    f"could not get KerasCV's {fname} ({type(e).__name__}: {str(e).splitlines()[0][:200]}). "
                    "Offline? Use --weights DIR with a folder holding the KerasCV files "
                    f"({', '.join(f for f, _, _ in WEIGHT_FILES.values())}), or --weights random for a pipeline check"
                ) from None
            self.files[component] = {"file": fname, "sha256": sha, "verified": True}
            return path
        from core.runfolder import sha256_file

        path = self.directory / fname
        if not path.exists():
            raise UserError(f"{path}: missing; --weights {self.directory} must hold KerasCV's {fname}")
        actual = sha256_file(path)
        verified = actual == sha
        if not verified and not self.allow_unverified:
            raise UserError(f"{path}: sha256 {actual[:16]}... does not match KerasCV's published {sha[:16]}...; "
                            "use the published file, or pass --allow-unverified to use it anyway (recorded as unverified)")
        self.files[component] = {"file": fname, "sha256": actual, "verified": verified}
        return path
