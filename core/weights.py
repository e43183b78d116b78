"""Where Stable Diffusion's weights come from: KerasCV's published files (downloaded and hash-checked by
`keras.utils.get_file`, as KerasCV itself does), a local folder of those files, an SD 1.x checkpoint the user
has (a single `.safetensors`/`.ckpt` file or a diffusers folder, converted once into KerasCV's files by
`core.convert`, or a folder `convert-weights` wrote), or seeded random weights.
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
    """`--weights kerascv | random | DIR | FILE` (+ `--weights-seed`, `--allow-unverified`, `--vae`, `--ema`)."""

    source: str  # "kerascv" | "local" | "random" | "checkpoint" (a user's SD 1.x checkpoint, converted)
    directory: Path | None = None
    seed: int = 0
    allow_unverified: bool = False
    files: dict[str, dict[str, Any]] = field(default_factory=dict)  # filled as components load
    checkpoint: Path | None = None  # the single file or diffusers folder (source "checkpoint"); None once converted
    vae: Path | None = None
    ema: bool = False
    manifest: dict[str, Any] | None = None  # source.json of the converted folder (core.convert)
    _paths: dict[str, Path] = field(default_factory=dict, repr=False)

    @classmethod
    def parse(cls, value: str, seed: int = 0, allow_unverified: bool = False, vae: str | Path | None = None,
              ema: bool = False) -> WeightSpec:
        from core.convert import read_manifest

        vae = Path(vae) if vae else None
        if vae is not None and not vae.is_file():
            raise UserError(f"--vae {vae}: no such file")
        if value in ("kerascv", "random"):
            if vae is not None or ema:
                raise UserError(f"--vae/--ema apply to a checkpoint file or folder, not --weights {value}")
            return cls(value, None, seed, allow_unverified)
        d = Path(value)
        if d.is_file() or (d.is_dir() and (d / "unet").is_dir()):
            return cls("checkpoint", None, seed, allow_unverified, checkpoint=d, vae=vae, ema=ema)
        if not d.is_dir():
            raise UserError(f"--weights {value!r}: not 'kerascv', 'random', an SD 1.x checkpoint file "
                            "(.safetensors/.ckpt), a diffusers folder or a folder of KerasCV weight files "
                            f"({', '.join(f for f, _, _ in WEIGHT_FILES.values())})")
        manifest = read_manifest(d)
        if manifest is not None:
            if vae is not None or ema:
                raise UserError(f"--weights {d} was converted already (its source.json says how); "
                                "pass --vae/--ema to convert-weights instead")
            return cls("checkpoint", d, seed, allow_unverified, manifest=manifest)
        return cls("local", d, seed, allow_unverified)

    def converted(self, progress: bool = True) -> None:
        """Convert a checkpoint file/folder into the cache (once per sha256; later calls find it there)."""
        if self.source == "checkpoint" and self.directory is None:
            from core.convert import cached, read_manifest

            self.directory = cached(self.checkpoint, self.vae, self.ema, progress)
            self.manifest = read_manifest(self.directory)

    def provenance(self) -> dict[str, Any]:
        """What run.json, PNG metadata and model cards record."""
        out: dict[str, Any] = {"source": self.source}
        if self.source == "random":
            out.update(seed=self.seed, files={}, verified=None,
                       note="seeded random initialisation: a pipeline check, not a model result")
        elif self.source == "checkpoint":
            self.converted()
            m = self.manifest
            out.update({k: m.get(k) for k in ("format", "file", "sha256", "short_hash", "dtype", "ema", "vae",
                                              "modelspec")})
            out["files"] = dict(m["files"])  # all four converted files, whichever this process has loaded yet
            out["verified"] = all(f["verified"] for f in self.files.values()) if self.files else None
            out["directory"] = str(self.directory)
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
        if self.source == "checkpoint":
            return self._resolve_converted(component, fname)
        if self.source == "kerascv":
            import keras

            try:
                path = Path(keras.utils.get_file(origin=origin, file_hash=sha))
            except Exception as e:  # noqa: BLE001 - network failure, hash mismatch after download, ...
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
                            "use the published file, or pass --allow-unverified to use it anyway (recorded as "
                            "unverified)")
        self.files[component] = {"file": fname, "sha256": actual, "verified": verified}
        return path

    def _resolve_converted(self, component: str, fname: str) -> Path:
        """A converted checkpoint's .h5 file, checked against the sha256 its source.json recorded."""
        from core.convert import cache_root, sha256_of

        self.converted()
        path = self.directory / fname
        want = self.manifest["files"].get(fname)
        if not path.exists() or want is None:
            raise UserError(f"{path}: missing; convert again with python -m core convert-weights")
        actual = sha256_of(path, cache_root() / "sha256-index.json")
        if actual != want and not self.allow_unverified:
            raise UserError(f"{path}: sha256 {actual[:16]}... differs from the {want[:16]}... its source.json "
                            "recorded (changed since conversion); convert again, or pass --allow-unverified")
        self.files[component] = {"file": fname, "sha256": actual, "verified": actual == want}
        return path
