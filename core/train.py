"""`train`: textual inversion on KerasCV Stable Diffusion. Only the new token's vector(s) train; every other
weight, the rest of the embedding table included, is frozen. Runs are resumable from their last checkpoint.

Every random draw of step k (image order, template, crop, flip, timestep, VAE sample, noise) comes from
numpy's generator seeded with (seed, k), so a resumed run draws exactly what the uninterrupted run would have.
"""

from __future__ import annotations

import importlib.metadata
import math
import os
import platform
import signal
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from core import __version__
from core.config import StrictConfig, add_options, add_progress_flag, check, check_resolution, from_args, option
from core.errors import UserError
from core.runfolder import Run, RunRecord, Timings, TokenInfo, WeightsProvenance, one_line

NEIGHBORS_K = 8
MAX_BATCH = 256  # far above what fits a GPU at 512 px; larger is a typo that would fail only after loading
MAX_TOKEN_CHARS = 100  # a placeholder word; it also becomes part of the run folder's default name


@dataclass
class TrainConfig(StrictConfig):
    """Everything `train` needs; saved in run.json `config`. Each field's help names the source of its default."""

    images: str = option("", "folder of ~5-20 pictures of the character (or of the style): jpg, png, webp, bmp, "
                             "gif; optional licenses.csv", metavar="DIR")
    token: str = option("<tom-cat>", "the new word; must not already be in CLIP's vocabulary")
    init: str = option("cat", "initializer word (exactly one CLIP token): the new vector starts as its embedding")
    vectors: int = option(1, "vectors per token (diffusers' --num_vectors; 1 in the paper)")
    property: str = option("object", "object: learn the character (prompts/object.txt); style: the art style "
                                     "(prompts/style.txt)", choices=("object", "style"))
    prompts: str | None = option(None, "a template file that replaces the property's templates", metavar="FILE")
    steps: int = option(3000, "training steps (diffusers' textual-inversion example: --max_train_steps=3000)")
    batch_size: int = option(4, "images per update (diffusers' example: batch 1 x gradient accumulation 4)")
    lr: float = option(2e-3, "AdamW learning rate, constant (diffusers' example: 5e-4 scaled by the effective "
                             "batch of 4, --scale_lr)")
    weight_decay: float = option(1e-2, "AdamW weight decay on the new vector only (diffusers' "
                                       "--adam_weight_decay default)")
    seed: int = option(0, "seeds every random draw of every step (see the module docstring)")
    resolution: int = option(512, "training size in px: SD v1.4's is 512; a multiple of 64 (64-128: CPU smoke runs)")
    checkpoint_every: int = option(500, "steps between checkpoints (diffusers' --save_steps default)")
    mixed_precision: str = option("no", "Keras mixed_bfloat16 / mixed_float16 policy, or no",
                                  choices=("no", "bf16", "fp16"))
    jit_compile: bool = option(False, "compile the step with XLA: worth it on a GPU, slow to compile on a CPU")
    fused_attention: str = option("auto", "yes: keras.ops.dot_product_attention in place of KerasCV's attention "
                                          "(same maths); auto: yes on the JAX backend (cuDNN fused kernels), no on "
                                          "TensorFlow (slower there on a CPU)", choices=("auto", "yes", "no"))
    remat: bool = option(False, "gradient checkpointing of the UNet's blocks: less memory, ~1/3 more compute")
    weights: str = option("kerascv", "Stable Diffusion weights: kerascv (KerasCV's files, downloaded and "
                                     "hash-checked) | random (a pipeline check) | an SD 1.x checkpoint: a "
                                     ".safetensors/.ckpt file or a diffusers folder (converted once, cached by "
                                     "sha256; docs/weights.md) | a folder of KerasCV's weight files")
    weights_seed: int = option(0, "seed of --weights random")
    allow_unverified: bool = option(False, "accept local weight files whose sha256 differs from KerasCV's "
                                           "(recorded in run.json)")
    vae: str | None = option(None, "with --weights FILE/DIR: a VAE file used instead of the checkpoint's (e.g. "
                                   "vae-ft-mse-840000-ema-pruned.safetensors)", metavar="FILE")
    ema: bool = option(False, "with --weights FILE: the EMA weights of a full training checkpoint (default: the "
                              "non-EMA ones, as A1111 and diffusers' from_single_file)")
    min_crop_area: float = option(0.8, "augmentation: random crop over [min_crop_area, 1] of the area")
    flip_p: float = option(0.5, "augmentation: horizontal flip probability")
    min_image_size: int = option(64, "smallest allowed short side of a training image, px")

    def validate(self) -> None:
        check(bool(self.images), "images", self.images, "pass --images DIR, a folder of pictures")
        shown = self.token[:40] + ("..." if len(self.token) > 40 else "")
        check(0 < len(self.token) <= MAX_TOKEN_CHARS, "token", shown, f"must be 1 to {MAX_TOKEN_CHARS} characters")
        check(self.vectors >= 1, "vectors", self.vectors, "must be >= 1")
        check(self.property in ("object", "style"), "property", self.property, "must be 'object' or 'style'")
        check(self.steps >= 1, "steps", self.steps, "must be >= 1")
        check(1 <= self.batch_size <= MAX_BATCH, "batch_size", self.batch_size,
              f"must be 1 to {MAX_BATCH} (images per step; memory grows with it)")
        check(0 <= self.seed < 2**63, "seed", self.seed, "must be a non-negative integer")
        check(0 <= self.weights_seed < 2**32, "weights_seed", self.weights_seed, "must be in [0, 2**32)")
        check(0 < self.lr < 1, "lr", self.lr, "must be in (0, 1)")
        check(self.weight_decay >= 0, "weight_decay", self.weight_decay, "must be >= 0")
        check_resolution(self.resolution)
        check(self.checkpoint_every >= 1, "checkpoint_every", self.checkpoint_every, "must be >= 1")
        check(self.mixed_precision in ("no", "bf16", "fp16"), "mixed_precision", self.mixed_precision,
              "must be no, bf16 or fp16")
        check(self.fused_attention in ("auto", "yes", "no"), "fused_attention", self.fused_attention,
              "must be auto, yes or no")
        check(0 < self.min_crop_area <= 1, "min_crop_area", self.min_crop_area, "must be in (0, 1]")
        check(0 <= self.flip_p <= 1, "flip_p", self.flip_p, "must be in [0, 1]")

    def weight_spec(self):
        """The WeightSpec these options name (core.weights; nothing is read or converted yet)."""
        from core.weights import WeightSpec

        return WeightSpec.parse(self.weights, self.weights_seed, self.allow_unverified, self.vae, self.ema)

    def templates_file(self) -> Path:
        from core.prompts import PROPERTY_FILES

        return Path(self.prompts) if self.prompts else PROPERTY_FILES[self.property]


# --------------------------------------------------------------------------------------------------- data
class TrainingData:
    """Deterministic batches: `batch(step)` depends only on (seed, step)."""

    def __init__(self, image_paths: list[Path], templates: list[str], tokenizer, cfg: TrainConfig):
        from core.images import center_square, load_rgb
        from core.prompts import fill
        from core.schedule import alphas_cumprod

        # keep the square a little larger than the training size so random crops stay sharp
        self.squares = [center_square(load_rgb(p), int(cfg.resolution * 1.125)) for p in image_paths]
        self.prompts = [tokenizer.encode(fill(t, cfg.token)) for t in templates]
        self.cfg = cfg
        self.alphas = alphas_cumprod()

    def _image_index(self, k: int) -> int:
        n = len(self.squares)
        epoch, pos = divmod(k, n)
        perm = np.random.default_rng([self.cfg.seed, 1_000_003, epoch]).permutation(n)  # shuffled every epoch
        return int(perm[pos])

    def batch(self, step: int) -> dict[str, np.ndarray]:
        from core.images import augment
        from core.schedule import timestep_embedding

        cfg, b = self.cfg, self.cfg.batch_size
        rng = np.random.default_rng([cfg.seed, step])
        images = np.stack([
            augment(self.squares[self._image_index((step - 1) * b + i)], cfg.resolution, rng,
                    cfg.min_crop_area, cfg.flip_p) for i in range(b)])
        tokens = np.asarray([self.prompts[int(rng.integers(len(self.prompts)))] for _ in range(b)], dtype="int32")
        t = rng.integers(0, len(self.alphas), size=b)
        h = cfg.resolution // 8
        ab = self.alphas[t]
        return {
            "images": images.astype("float32"),
            "tokens": tokens,
            "positions": np.repeat(np.arange(tokens.shape[1], dtype="int32")[None], b, axis=0),
            "t_emb": timestep_embedding(t),
            "sqrt_ab": np.sqrt(ab).astype("float32"),
            "sqrt_1mab": np.sqrt(1.0 - ab).astype("float32"),
            "latent_eps": rng.standard_normal((b, h, h, 4)).astype("float32"),
            "noise": rng.standard_normal((b, h, h, 4)).astype("float32"),
        }


# -------------------------------------------------------------------------------------------------- model
def build_model(encoder, diffusion_model, image_encoder, cfg: TrainConfig):
    """The Keras model whose only trainable variable is the placeholder vector(s); MSE on the noise."""
    import keras
    from keras import ops

    from core.components import VAE_SCALE, rematerialize, vae_moments_model

    class TextualInversionModel(keras.Model):
        def __init__(self):
            super().__init__(name="textual_inversion")
            diffusion_model.trainable = False
            image_encoder.trainable = False
            self.text_encoder = encoder.model
            self.unet = diffusion_model
            self.vae = vae_moments_model(image_encoder)
            self.vae.trainable = False

        def call(self, x, training=False):
            # under a mixed policy Keras hands float inputs over in the compute dtype: do the noising in float32
            f32 = {k: ops.cast(x[k], "float32") for k in ("latent_eps", "noise", "sqrt_ab", "sqrt_1mab")}
            moments = ops.stop_gradient(ops.cast(self.vae(x["images"]), "float32"))
            mean, logvar = moments[..., :4], ops.clip(moments[..., 4:], -30.0, 20.0)
            latents = (mean + ops.exp(0.5 * logvar) * f32["latent_eps"]) * VAE_SCALE
            sa = ops.reshape(f32["sqrt_ab"], (-1, 1, 1, 1))
            s1 = ops.reshape(f32["sqrt_1mab"], (-1, 1, 1, 1))
            noisy = sa * latents + s1 * f32["noise"]
            context = self.text_encoder([x["tokens"], x["positions"]])
            return self.unet({"latent": noisy, "timestep_embedding": x["t_emb"], "context": context})

        def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None, training=True):
            return ops.mean(ops.square(ops.cast(x["noise"], "float32") - ops.cast(y_pred, "float32")))

    if cfg.remat:
        rematerialize(diffusion_model)
    model = TextualInversionModel()
    trainable = model.trainable_variables
    if len(trainable) != 1 or trainable[0] is not encoder.embedding.placeholder:
        raise RuntimeError(f"textual inversion must train only the placeholder vectors, found "
                           f"{[v.path for v in trainable]}")
    opt = keras.optimizers.AdamW(learning_rate=cfg.lr, weight_decay=cfg.weight_decay,
                                 beta_1=0.9, beta_2=0.999, epsilon=1e-8)
    model.compile(optimizer=opt, jit_compile=cfg.jit_compile)
    model.optimizer.build(trainable)
    return model


# ------------------------------------------------------------------------------------------------ helpers
def environment() -> dict[str, Any]:
    import keras

    versions = {"core": __version__, "python": platform.python_version(), "keras": keras.__version__,
                "backend": keras.backend.backend(), "numpy": np.__version__}
    for mod, dist in (("keras_cv", "keras-cv"), ("tensorflow", "tensorflow-cpu"), ("jax", "jax")):
        m = sys.modules.get(mod)  # the imported module's version; else the installed one (e.g. bench's probe)
        version = getattr(m, "__version__", None) if m is not None else None
        try:
            version = version or importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            pass
        if version:
            versions[mod] = version
    devices = ["CPU"]
    try:
        if keras.backend.backend() == "tensorflow":
            import tensorflow as tf

            devices = []
            for d in tf.config.list_physical_devices():
                gpu = d.device_type == "GPU"
                name = tf.config.experimental.get_device_details(d).get("device_name") if gpu else None
                devices.append(f"{d.device_type}:{name or d.name.split(':', 1)[-1]}")
        elif keras.backend.backend() == "jax":
            import jax

            devices = [f"{d.platform.upper()}:{d.device_kind}" for d in jax.devices()]
    except Exception:  # noqa: BLE001 - device listing is informative only
        pass
    hardware = {"platform": platform.platform(), "processor": platform.processor() or platform.machine(),
                "cpu_count": os.cpu_count(), "devices": devices}
    return {"versions": versions, "hardware": hardware}


def write_neighbors(run: Run, step: int, encoder, vocabulary: np.ndarray, init_vectors: np.ndarray,
                    tokenizer) -> None:
    from core.components import nearest_tokens

    vecs = encoder.get_vectors()
    rows = []
    for v, hits in enumerate(nearest_tokens(vocabulary, vecs, NEIGHBORS_K)):
        dist = float(np.linalg.norm(vecs[v] - init_vectors[v]))
        rows += [{"step": step, "vector": v, "rank": r, "token": tokenizer.decode_id(i), "token_id": i,
                  "cosine": round(c, 6), "distance_from_init": round(dist, 6)} for r, (i, c) in enumerate(hits)]
    run.append_neighbors(rows)


def save_checkpoint(run: Run, step: int, model, encoder, placeholders: list[str], vocabulary, init_vectors,
                    tokenizer) -> None:
    vecs = encoder.get_vectors()
    run.save_embedding(step, {placeholders[0]: vecs}, {"token": placeholders[0], "n_vectors": str(len(vecs))})
    write_neighbors(run, step, encoder, vocabulary, init_vectors, tokenizer)
    opt_vars = {f"opt_{i:03d}": np.asarray(v.numpy() if hasattr(v, "numpy") else v)
                for i, v in enumerate(model.optimizer.variables)}
    # the optimizer state is written last: it marks the checkpoint complete (resume starts from the last one
    # that has it, and redoes everything after it, so a kill at any moment loses or duplicates nothing)
    run.save_checkpoint(step, {"step": np.asarray(step), **opt_vars})
    run.update(last_checkpoint=step, heartbeat=time.time())


def restore_checkpoint(run: Run, step: int, model, encoder, placeholders: list[str]) -> None:
    encoder.set_vectors(run.load_embedding(step)[placeholders[0]])
    state = run.load_checkpoint(step)
    variables = model.optimizer.variables
    for i, var in enumerate(variables):
        value = state.get(f"opt_{i:03d}")
        if value is None or tuple(value.shape) != tuple(var.shape):
            raise UserError(f"{run.checkpoint_path(step)}: optimizer state does not fit this model; "
                            "the run cannot be resumed")
        var.assign(value)


class _Terminated(Exception):
    pass


def _raise_terminated(signum, frame):
    raise _Terminated(f"signal {signum}")


# -------------------------------------------------------------------------------------------------- job
def prepare(cfg: TrainConfig):
    """Validate everything that needs no network: images, licences, templates, token, initializer."""
    from core.images import manifest_rows, validate_images
    from core.prompts import load_templates
    from core.tokenizer import PromptTokenizer

    images = validate_images(Path(cfg.images), cfg.min_image_size)
    manifest = manifest_rows(Path(cfg.images), images)
    templates = load_templates(cfg.templates_file())
    tokenizer = PromptTokenizer(cfg.token, cfg.vectors)
    init_id = tokenizer.initializer_id(cfg.init)
    for t in templates:  # every training prompt must fit CLIP's 77 tokens
        tokenizer.encode(t.replace("{}", cfg.token))
    return images, manifest, templates, tokenizer, init_id


def set_precision(mode: str) -> None:
    import keras

    keras.mixed_precision.set_global_policy(
        {"no": "float32", "bf16": "mixed_bfloat16", "fp16": "mixed_float16"}[mode])


def resume_hint(run: Run) -> str:
    return f"continue with: python -m core train --resume {run.path}"


def recorded(run: Run):
    """`run.stage("train", owns_status=True)`: the writer lock, and the run's status made the truth (any exception
    leaves `failed` with the one-line reason in run.json and the traceback in logs/train.log, or `interrupted`)."""
    return run.stage("train", owns_status=True, hint=resume_hint(run))


def train(cfg: TrainConfig, run: Run, components, resume: bool = False, progress: bool = True,
          stop_after: int | None = None, prepared: tuple | None = None) -> Run:
    """Train (or continue) `run` with `components`. `stop_after` ends early after that many steps in this
    call (used to test resume); the run is then marked interrupted. `prepared` is what `prepare(cfg)` returned
    when the caller already validated (so each training image is read and hashed once). Holds the run's writer
    lock; the run ends `finished` only when the loop ends normally (see `recorded`)."""
    with recorded(run):
        return _train(cfg, run, components, resume, progress, stop_after, prepared)


@dataclass
class _Networks:
    """What a checkpoint saves and restores: the Keras model (optimizer state), the placeholder encoder (the
    learned rows), and what the nearest-word table is measured against."""

    model: Any
    encoder: Any
    placeholders: list[str]
    vocabulary: np.ndarray
    init_vectors: np.ndarray

    @classmethod
    def build(cls, cfg: TrainConfig, components, init_id: int) -> _Networks:
        import keras

        from core.components import PlaceholderTextEncoder, vocabulary_table
        from core.tokenizer import placeholder_tokens

        vocabulary = vocabulary_table(components.text_encoder)
        init_vectors = np.repeat(vocabulary[init_id][None], cfg.vectors, axis=0)
        # one training model per setting for the life of these networks: its compiled step (tens of seconds to trace
        # at full architecture) serves every later run in this process (the demo trains two), each run starting
        # from its own initializer vectors and the optimizer's freshly built state, as a new build would
        key = (cfg.vectors, cfg.lr, cfg.weight_decay, cfg.remat, cfg.jit_compile, keras.config.dtype_policy().name)
        if key in components.trainers:
            encoder, model, fresh = components.trainers[key]
            encoder.set_vectors(init_vectors)
            for var, value in zip(model.optimizer.variables, fresh):
                var.assign(value)
        else:
            encoder = PlaceholderTextEncoder(components.text_encoder, init_vectors)
            model = build_model(encoder, components.diffusion_model, components.image_encoder, cfg)
            fresh = [np.array(keras.ops.convert_to_numpy(v)) for v in model.optimizer.variables]
            components.trainers[key] = (encoder, model, fresh)
        return cls(model, encoder, placeholder_tokens(cfg.token, cfg.vectors), vocabulary, init_vectors)

    def save(self, run: Run, step: int, tokenizer) -> None:
        save_checkpoint(run, step, self.model, self.encoder, self.placeholders, self.vocabulary, self.init_vectors,
                        tokenizer)


@dataclass(frozen=True)
class _Session:
    """Where this training session starts: the step, the training time of earlier sessions (run.json timings),
    the last `seconds` of metrics.csv (its clock continues), and when the session began."""

    start: int
    prior_seconds: float
    elapsed0: float
    began: float


def _train(cfg: TrainConfig, run: Run, components, resume: bool, progress: bool, stop_after: int | None,
           prepared: tuple | None) -> Run:
    from tqdm.auto import tqdm

    # data, networks, and where this session starts (a fresh run: checkpoint 0; --resume: its last checkpoint)
    images, manifest, templates, tokenizer, init_id = prepared or prepare(cfg)
    resume = _can_resume(cfg, run, manifest, resume)
    net = _Networks.build(cfg, components, init_id)
    data = TrainingData(images, templates, tokenizer, cfg)
    session = _start_session(run, net, manifest, tokenizer, resume)
    _mark_running(run, components)

    old_handler = signal.signal(signal.SIGTERM, _raise_terminated)
    bar = tqdm(total=cfg.steps, initial=session.start, desc=f"train {run.name}", unit="step", disable=not progress,
               dynamic_ncols=True)
    step, status, message = session.start, None, None
    try:
        while step < cfg.steps:
            # termination (stop_after: tests stop a session early to exercise --resume)
            if stop_after is not None and step - session.start >= stop_after:
                raise _Terminated("stop_after")
            # forward, backward, update (only the placeholder rows are trainable)
            loss = float(net.model.train_on_batch(data.batch(step + 1), return_dict=True)["loss"])
            step += 1
            # timing and logging: one metrics.csv line per step
            _log_step(run, net.model, step, loss, session, bar)
            if not math.isfinite(loss):
                status, message = "failed", _diverged_message(run, loss, step)
                break
            # write checkpoints (embedding, nearest words, optimizer state last: it marks the checkpoint complete)
            if step % cfg.checkpoint_every == 0 or step == cfg.steps:
                net.save(run, step, tokenizer)
        status = status or "finished"  # the loop ended normally
    except (KeyboardInterrupt, _Terminated):
        status, message = "interrupted", f"interrupted at step {step}; {resume_hint(run)}"
    except BaseException as e:
        status = "failed"
        message = f"failed at step {step}: {one_line(f'{type(e).__name__}: {e}')}; {resume_hint(run)}"
        raise
    finally:
        bar.close()
        signal.signal(signal.SIGTERM, old_handler)
        _end_session(run, session, step, status, message)
    if message:
        print(message, file=sys.stderr)
    return run


def _can_resume(cfg: TrainConfig, run: Run, manifest: list[dict], resume: bool) -> bool:
    """Whether --resume has a complete checkpoint to continue from (killed before checkpoint 0 was complete:
    nothing to keep, the run starts over); the training images must be the ones the run started with."""
    done = [s for s in run.checkpoint_steps() if s in run.embedding_steps()] if resume else []
    if resume and not done:
        run.truncate_metrics(0)
        run.rewrite_neighbors([])
        return False
    if resume:
        old = {r["file"]: r["sha256"] for r in run.read_manifest()}
        new = {r["file"]: r["sha256"] for r in manifest}
        if old != new:
            changed = sorted(set(old.items()) ^ set(new.items()))
            raise UserError(f"{cfg.images}: the images changed since the run started ({changed[0][0]} ...); "
                            "restore them or start a new run")
    return resume


def _start_session(run: Run, net: _Networks, manifest: list[dict], tokenizer, resume: bool) -> _Session:
    """Restore the last complete checkpoint (and cut metrics and neighbours after it), or write checkpoint 0."""
    if not resume:
        run.write_manifest(manifest)
        net.save(run, 0, tokenizer)
        return _Session(0, 0.0, 0.0, time.time())
    start = [s for s in run.checkpoint_steps() if s in run.embedding_steps()][-1]
    restore_checkpoint(run, start, net.model, net.encoder, net.placeholders)
    run.truncate_metrics(start)
    run.rewrite_neighbors([r for r in run.read_neighbors() if int(r["step"]) <= start])
    metrics = run.read_metrics()
    return _Session(start, run.record.timings.seconds_total, metrics[-1]["seconds"] if metrics else 0.0, time.time())


def _mark_running(run: Run, components) -> None:
    env = environment()
    run.update(status="running", message=None, pid=os.getpid(), heartbeat=time.time(), versions=env["versions"],
               hardware=env["hardware"], weights=WeightsProvenance.from_json(components.weights.provenance()))


def _log_step(run: Run, model, step: int, loss: float, session: _Session, bar) -> None:
    import keras

    seconds = session.elapsed0 + (time.time() - session.began)
    lr = float(keras.ops.convert_to_numpy(model.optimizer.learning_rate))
    run.append_metrics([{"step": step, "loss": f"{loss:.6g}", "lr": f"{lr:.6g}", "seconds": f"{seconds:.3f}"}])
    bar.update(1)
    bar.set_postfix(loss=f"{loss:.4f}")


def _diverged_message(run: Run, loss: float, step: int) -> str:
    last = max(run.checkpoint_steps())
    return (f"loss became {loss} at step {step}; stopped. The last good checkpoint (step {last}) is kept. --resume "
            "would diverge the same way (it keeps the run's settings): start a new run with a lower --lr (or "
            "--mixed-precision no)")


def _end_session(run: Run, session: _Session, step: int, status: str | None, message: str | None) -> None:
    """run.json's truth at the end of a session: status, timings over all sessions, final step, why it stopped."""
    total = session.prior_seconds + (time.time() - session.began)
    started = run.record.timings.started
    timings = Timings(started=session.began if started is None else started, seconds_total=round(total, 3),
                      steps_done=step, last_session_started=session.began,
                      finished=time.time() if status == "finished" else None)
    changes: dict[str, Any] = {"status": status, "timings": timings}
    if status == "finished":
        changes["final_step"] = max(run.embedding_steps())
    if message:
        changes["message"] = message
    run.update(**changes)


def default_name(cfg: TrainConfig) -> str:
    slug = "".join(c if c.isascii() and c.isalnum() else "-" for c in cfg.token).strip("-")[:60] or "token"
    return f"{slug}-{cfg.property}-{time.strftime('%Y%m%d-%H%M%S')}"


def start_run(cfg: TrainConfig, runs_dir: Path, name: str | None) -> Run:
    from core.tokenizer import placeholder_tokens

    spec = cfg.weight_spec()
    record = RunRecord.new(
        name=name or default_name(cfg), kind="train", property=cfg.property, config=cfg.to_dict(),
        token=TokenInfo(cfg.token, cfg.init, cfg.vectors, tuple(placeholder_tokens(cfg.token, cfg.vectors))),
        weights=WeightsProvenance.from_json(spec.provenance()), timings=Timings(started=time.time()))
    return Run.create(runs_dir, record.name, record)


# ------------------------------------------------------------------------------------------------------ CLI
def add_arguments(p, command: str) -> None:
    p.add_argument("--resume", type=Path, metavar="RUN", help="continue an interrupted run from its last checkpoint "
                   "(all other options come from its run.json)")
    add_options(p, TrainConfig)
    p.add_argument("--runs-dir", type=Path, default=Path("runs"), help="where the run folder is made")
    p.add_argument("--name", help="run folder name (default: token-property-timestamp)")
    add_progress_flag(p)


def config_from_args(args) -> TrainConfig:
    return from_args(TrainConfig, args)


TRAINING_COMPONENTS = ("text_encoder", "diffusion_model", "image_encoder")  # the decoder is not needed to train


def run(args) -> int:
    from core.runfolder import check_run_name, check_runs_dir

    if args.resume:
        run_ = Run(args.resume)
        record = run_.record
        if record.status == "finished":
            print(f"{run_.path}: already finished ({record.final_step} steps); nothing to do")
            return 0
        holder = run_.lock_holder()
        if holder:
            raise UserError(f"{run_.path}: pid {holder['pid']} ({holder['command']}) is writing this run; "
                            "wait for it to end (or stop it) and retry")
        if stale := run_.stale_reason():
            print(f"{run_.path}: {stale.split(' - ')[0]}; resuming", file=sys.stderr)
        cfg = TrainConfig.from_dict(record.config)
    else:
        # every value is checked before anything heavy (TensorFlow, weight files) loads or a folder is made
        cfg = config_from_args(args)
        if args.name is not None:
            check_run_name(args.name)
        check_runs_dir(args.runs_dir)
        prepared = prepare(cfg)  # validate images, prompts and token before anything is built or written
    spec = cfg.weight_spec()
    for name in TRAINING_COMPONENTS:  # download / hash-check / convert the weights before a run folder exists
        spec.resolve(name)
    if not args.resume:
        run_ = start_run(cfg, args.runs_dir, args.name)
    print(f"run folder: {run_.path}")
    with recorded(run_):  # from here on every failure is recorded in the run
        from core.components import Components

        set_precision(cfg.mixed_precision)
        if spec.source == "random":
            print("weights: random (seeded) - this run is a PIPELINE CHECK, not a model result", file=sys.stderr)
        components = Components(spec, cfg.resolution,
                                fused_attention={"auto": None, "yes": True, "no": False}[cfg.fused_attention])
        train(cfg, run_, components, resume=bool(args.resume), progress=not args.no_progress,
              prepared=None if args.resume else prepared)
    status = run_.record.status
    print(f"{status}: {run_.path}")
    return {"finished": 0, "interrupted": 130}.get(status, 1)
