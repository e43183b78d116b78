"""`demo`: the built-in experiment, end to end on a CPU in minutes, with RANDOM weights (a pipeline
demonstration, labelled so everywhere): draw a character and a style image set, train a character run and a
style run on the same prompts and budget, generate (also two-subject leakage probes), score with CLIP (and the
identity measures: token similarity through ViT-L/14, zero-shot identity, leakage, the memorisation screen, the
CustomConcept101 protocol), audit (copying of the training images, and misuse transfer on one probe per
category), add a few example review flags and one example finding (labelled as examples), compare, and write the
model cards and the review pack.

Two children, side by side: train and generate share one TensorFlow process (one network build, one compiled
training step, one compiled sampler); score, audit, the example review, compare, the cards and the review pack share
one torch process (TensorFlow must never come before torch into one process, and one interpreter pays the torch and
open_clip imports once), which loads its networks while TensorFlow trains and evaluates each run as soon as its
images are made. Each stage is skipped when its output exists, so an interrupted demo resumes where it stopped."""

from __future__ import annotations

import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from core.config import StrictConfig, add_options, from_args, option
from core.errors import UserError
from core.runfolder import Run, card_dir, comparison_dir

RESOLUTION = 64  # the smallest SD v1 size (core.config.RESOLUTION_STEP): keeps the demo to minutes on 2 CPU cores
STEPS = 4  # training steps per run (same budget for both runs)
CHECKPOINT_EVERY = 2
SEEDS = "0"  # one seed: the grids stay small and compare still pairs 3 prompts per checkpoint
SAMPLER_STEPS = 3
DEMO_PROMPTS = [  # the same prompts for both runs, so they can be compared
    "a 3D animation frame of {}, photorealistic",
    "a Dungeons and Dragons character card of {}",
    "a horror movie in the style of {}",
]
RUNS = {"character": ("tom-cat-character", "object"), "style": ("tom-cat-style", "style")}
MISUSE_SEEDS = "0"  # one image per misuse probe and checkpoint (0 and final): 10 extra images per run
LEAKAGE_PER_SUBJECT = 1  # two-subject prompts per second subject of prompts/eval/leakage.txt (issue 21)
LEAKAGE_SUBJECTS = 2  # the first two second subjects: 2 prompts x checkpoints 0 and final = 4 images per run
SUBJECTS = {"character": "Tom, the cat from Tom and Jerry (the demo's drawn cat stands in for him)",
            "style": "the flat-colour cartoon style of Tom and Jerry (the demo's drawn scenes stand in for it)"}
TOKEN_CLIP = "ViT-L-14:random"  # token similarity: SD v1's text encoder is CLIP ViT-L/14's; random = pipeline check
N_HELD_OUT = 4  # unseen pictures of the character: the audit's generated-vs-held-out calibration null


def _log(msg: str) -> None:
    print(f"[demo {time.strftime('%H:%M:%S')}] {msg}", flush=True)


def build_data(root: Path) -> dict[str, Path]:
    from core.cartoon import write_image_set

    out = {}
    for kind, n in (("character", 8), ("style", 6)):
        folder = root / "data" / kind
        if not (folder / "licenses.csv").exists():
            write_image_set(folder, kind, n)
        out[kind] = folder
    prompts = root / "data" / "demo-prompts.txt"
    if not prompts.exists():
        prompts.write_text("\n".join(DEMO_PROMPTS) + "\n", encoding="utf-8")
    out["prompts"] = prompts
    out["misuse"] = _demo_misuse(root / "data" / "demo-misuse.txt")
    out["leakage"] = _demo_leakage(root / "data" / "demo-leakage.txt")
    held = root / "data" / "character-heldout"
    if not (held / f"heldout_{N_HELD_OUT - 1:02d}.png").exists():
        from core.cartoon import draw_cat

        held.mkdir(parents=True, exist_ok=True)
        for i in range(N_HELD_OUT):  # seeds past the training set's: the same character, never trained on
            draw_cat(1000 + i, 256).save(held / f"heldout_{i:02d}.png")
    out["held_out"] = held
    return out


def _demo_misuse(path: Path) -> Path:
    """The first probe of each category of prompts/eval/misuse.txt (keeps the demo's extra generation small)."""
    if not path.exists():
        from core.prompts import MISUSE_FILE, load_categories

        first: dict[str, str] = {}
        for template, category in load_categories(MISUSE_FILE).items():
            first.setdefault(category, template)
        path.write_text("".join(f"# category: {c}\n{t}\n" for c, t in first.items()), encoding="utf-8")
    return path


def _demo_leakage(path: Path) -> Path:
    """The first prompt of the first LEAKAGE_SUBJECTS second subjects of prompts/eval/leakage.txt."""
    if not path.exists():
        from core.prompts import LEAKAGE_FILE, load_categories

        chosen: dict[str, list[str]] = {}
        for template, second in load_categories(LEAKAGE_FILE, key="subject").items():
            if len(chosen) < LEAKAGE_SUBJECTS or second in chosen:
                group = chosen.setdefault(second, [])
                if len(group) < LEAKAGE_PER_SUBJECT:
                    group.append(template)
        path.write_text("".join(f"# subject: {s}\n" + "".join(f"{t}\n" for t in ts) for s, ts in chosen.items()),
                        encoding="utf-8")
    return path


def train_and_generate(runs_dir: Path, data: dict[str, Path]) -> None:
    """One TF process: one random-weight build shared by both runs' training and generation. Both runs train first,
    then both generate: the compiled training step, then the compiled sampler, each serve both runs in a row."""
    from core.components import Components
    from core.train import TrainConfig, start_run, train
    from core.weights import WeightSpec

    components = Components(WeightSpec("random", seed=0), RESOLUTION)
    for kind, (name, prop) in RUNS.items():
        run = Run(runs_dir / name)
        cfg = TrainConfig.from_dict({
            "images": str(data[kind]), "token": "<tom-cat>", "init": "cat", "property": prop, "weights": "random",
            "resolution": RESOLUTION, "steps": STEPS, "checkpoint_every": CHECKPOINT_EVERY, "batch_size": 1,
        })
        if not run.exists:
            _log(f"training {name} ({prop}, {STEPS} steps, random weights)")
            train(cfg, start_run(cfg, runs_dir, name), components)
        elif run.record.status != "finished":
            _log(f"resuming {name}")
            train(cfg, run, components, resume=True)
        _marker(runs_dir, name, "trained").touch()  # the torch child may measure the token now
    for name, _ in RUNS.values():
        _generate_images(Run(runs_dir / name), data, components)
        _marker(runs_dir, name, "generated").touch()  # the torch child may evaluate this run now


# the TensorFlow child's generation for each run: the evaluation prompts at every checkpoint; the misuse probes and the
# two-subject leakage prompts before training (the calibration) and at the end, in both runs, because `compare`
# pairs the runs' images prompt by prompt. Score reads all of them (CLIP-I/T of every image), so a run is evaluated
# once all are made.
GENERATION = (("", "prompts", SEEDS, "all"), (" misuse probes", "misuse", MISUSE_SEEDS, "0,final"),
              (" leakage probes", "leakage", MISUSE_SEEDS, "0,final"))


def _generate_images(run: Run, data: dict[str, Path], components) -> None:
    from core.generate import GenerateConfig, generate

    for what, prompts, seeds, checkpoints in GENERATION:
        cfg = GenerateConfig.from_dict({"prompts": str(data[prompts]), "seeds": seeds, "checkpoints": checkpoints,
                                        "steps": SAMPLER_STEPS, "batch_size": 4})
        counts = generate(run, cfg, components)
        _log(f"{run.name}{what}: {counts['generated']} generated, {counts['skipped']} already there")


MARKERS = ("trained", "generated")


def _marker(runs_dir: Path, name: str, what: str) -> Path:
    """Written by the TensorFlow child once run `name` is trained / has every image made (see _build)."""
    return runs_dir / f".demo-{name}.{what}"


def _wait_for(runs_dir: Path, name: str, what: str) -> None:
    """The torch child waits here until the TensorFlow child has written run `name`'s marker `what`; it stops if the
    parent (the demo) is gone, which also ends the TensorFlow child or was ended by it."""
    import os

    parent = os.getppid()
    while not _marker(runs_dir, name, what).exists():
        if os.getppid() != parent:
            raise UserError("demo: the demo process is gone; rerun `python -m core demo` to resume")
        time.sleep(0.5)


def _spawn(*args: str) -> subprocess.Popen:
    """One command in a child process, started (not waited for)."""
    _log("python -m core " + " ".join(args))
    return subprocess.Popen([sys.executable, "-m", "core", *args])


def _in_process(*args: str) -> None:
    """One command through the CLI's own `main()` in this process (the torch side: imports paid once)."""
    from core.__main__ import main

    _log("python -m core " + " ".join(args))
    if rc := main(list(args)):
        raise UserError(f"demo: `python -m core {' '.join(args)}` failed (exit {rc}); rerun `python -m core demo` "
                        "to resume")


def _warm_up(runs_dir: Path, data: dict[str, Path]) -> None:
    """What the torch child does before any image exists, while TensorFlow trains: it loads the two random CLIP
    models and the runs' text encoder (each kept for the process by its loader, so score takes them from there),
    encodes the reference pictures in both CLIP models (kept on each model by the pictures' pixels), and, once each
    run is trained, runs its token through that text encoder for token similarity (kept by the checkpoints' hashes).
    Different arguments than score's and audit's would only mean doing it again."""
    import core.components
    from core.clip_score import encode_references, load_clip
    from core.identity_stage import run_hidden_states, text_encoder_components
    from core.images import load_image, validate_images
    from core.prompts import IDENTITY_LABELS_FILE, load_labels
    from core.token_similarity import TextSet

    refs = {kind: [load_image(p) for p in validate_images(data[kind])] for kind in ("character", "style", "held_out")}
    encode_references(load_clip("ViT-B-32:random", seed=0, device="auto"), [i for pics in refs.values() for i in pics])
    encode_references(load_clip(TOKEN_CLIP, seed=0, device="auto"), refs["character"] + refs["style"])
    text_encoder_components(core.components.Components, "random", 0, False).text_encoder
    for kind, (name, _) in RUNS.items():  # the token through the run's text encoder, once the run is trained
        _wait_for(runs_dir, name, "trained")
        run = Run(runs_dir / name)
        rec = run.record
        run_hidden_states(run, rec, TextSet.for_run(rec.property, SUBJECTS[kind], rec.token.initializer,
                                                    rec.token.vectors, load_labels(IDENTITY_LABELS_FILE)))


def evaluate(runs_dir: Path, data: dict[str, Path]) -> None:
    """The torch side, in one process, beside the TensorFlow child: each run is scored and audited as soon as its
    images are made (the character run's while the style run's are being made), then the example review, compare,
    both cards and the review pack."""
    _warm_up(runs_dir, data)
    char, style = (runs_dir / RUNS[k][0] for k in ("character", "style"))
    for kind, run in (("character", char), ("style", style)):
        _wait_for(runs_dir, run.name, "generated")
        t1 = time.time()
        _in_process("score", str(run), "--references", str(data[kind]), "--clip", "ViT-B-32:random", "--token-clip",
                    TOKEN_CLIP, "--subject", SUBJECTS[kind], "--leakage", str(data["leakage"]), "--protocol",
                    "customconcept101", "--no-progress")
        _log(f"scored {run.name} in {time.time() - t1:.0f} s (CLIP-I/T, token similarity, identity, leakage, "
             "memorisation screen, CustomConcept101 protocol)")
        held_out = ["--held-out", str(data["held_out"])] if kind == "character" else []
        _in_process("audit", str(run), "--references", str(data[kind]), *held_out, "--misuse", str(data["misuse"]),
                    "--clip", "ViT-B-32:random", "--no-progress")
    add_example_review(Run(char))
    # compare and card write where the dashboard looks (runfolder.comparison_dir / card_dir), named explicitly
    _in_process("compare", str(char), str(style), "--out", str(comparison_dir(Run(char), Run(style))))
    _in_process("card", str(char), "--compare", str(style), "--out", str(card_dir(Run(char))))
    _in_process("card", str(style), "--compare", str(char), "--out", str(card_dir(Run(style))))
    write_review_pack(Run(char), Run(style))


def build(runs_dir: Path) -> None:
    """Build the demo unless built; one builder at a time per folder (a second one is refused, not run)."""
    import fcntl

    runs_dir = Path(runs_dir)
    runs_dir.mkdir(parents=True, exist_ok=True)
    with open(runs_dir / ".demo.lock", "w") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise UserError(f"{runs_dir}: another demo is being built there right now; wait for it to finish "
                            "(two at once would not fit in memory)") from None
        _build(runs_dir)


def _build(runs_dir: Path) -> None:
    marker = runs_dir / "DEMO-COMPLETE"
    if marker.exists():
        _log(f"demo already built in {runs_dir} (delete the folder to rebuild)")
        return
    t0 = time.time()
    build_data(runs_dir)  # the drawn data sets and prompt files, before either child
    for name, _ in RUNS.values():  # the torch child waits for markers written by this build's TensorFlow child
        for what in MARKERS:
            _marker(runs_dir, name, what).unlink(missing_ok=True)
    # two children side by side, never both frameworks in one process: TensorFlow (train, generate) and torch (the
    # rest), which loads its networks while TensorFlow trains and evaluates each run once its images are made
    children = [_spawn("demo", "--runs-dir", str(runs_dir), "--stage", stage) for stage in ("train-generate",
                                                                                             "evaluate")]
    try:
        while (codes := [c.poll() for c in children]) != [0] * len(children):
            if failed := [c for c, rc in zip(children, codes) if rc]:
                raise UserError(f"demo: `{' '.join(failed[0].args[1:])}` failed (exit {failed[0].returncode}); "
                                "rerun `python -m core demo` to resume")
            time.sleep(0.5)
    finally:
        for child in children:  # one failed (or Ctrl-C): the other one stops too; finished work stays
            if child.poll() is None:
                child.terminate()
                child.wait()
    marker.write_text(f"built in {time.time() - t0:.0f} s with random weights (pipeline demonstration)\n")
    _log(f"demo built in {time.time() - t0:.0f} s: {runs_dir}")


# ----------------------------------------------------------------------------------------- example review
EXAMPLE_REVIEWERS = ("example-reviewer-1", "example-reviewer-2")
EXAMPLE_NOTE = "EXAMPLE written by the demo (random weights: this judges nothing, it shows the review pages)"


def add_example_review(run: Run) -> None:
    """A few example flags by two example reviewers (they agree on some images and not on others, so the agreement
    shows) and one example finding, each labelled EXAMPLE; written once (a resumed demo adds nothing)."""
    from core.review.records import Target
    from core.review.store import ReviewStore
    from core.review.summary import image_index

    store = ReviewStore(run)
    if store.state().annotations or store.state().findings:
        return
    images = sorted(image_index(run).values(), key=lambda i: (-i.step, i.category != "general prompts", i.path))
    if len(images) < 3:
        return
    a, b, c = images[0].path, images[1].path, images[2].path
    probe = next((i.path for i in images if i.category != "general prompts" and i.step == images[0].step), c)
    for reviewer, flags in ((EXAMPLE_REVIEWERS[0], ((a, "off-model"), (b, "on-model"), (c, "copy-suspected"),
                                                    (probe, "misuse-transfer"))),
                            (EXAMPLE_REVIEWERS[1], ((a, "off-model"), (b, "off-model"), (c, "copy-suspected")))):
        for path, flag in flags:
            store.add_flag(reviewer, Target.image(path), flag, f"{EXAMPLE_NOTE}: {flag}")
    store.add_finding(EXAMPLE_REVIEWERS[0], "EXAMPLE: off-model and copy-like images at the final checkpoint",
                      f"{EXAMPLE_NOTE}. Two reviewers flagged the same final-checkpoint images; a real review would "
                      "say what is wrong and how often.", "low", "open",
                      "EXAMPLE: none needed for a pipeline check; with real weights, ship an earlier checkpoint",
                      [a, c, "copy_rate"])
    _log(f"{run.name}: example review flags and one example finding (labelled EXAMPLE)")


def write_review_pack(run: Run, other: Run) -> None:
    from core.review.pack import PACK_NAME, build_pack
    from core.runfolder import atomic_write_bytes

    out = card_dir(run) / PACK_NAME
    data = build_pack(run, other)
    atomic_write_bytes(out, data)
    _log(f"review pack {out} ({len(data) / 1e6:.2f} MB)")


# ------------------------------------------------------------------------------------------------------ CLI
@dataclass
class DemoConfig(StrictConfig):
    runs_dir: Path = option(Path("demo-runs"), "where the demo runs go", metavar="DIR")
    stage: str = option("all", "internal: one stage only", choices=("all", "train-generate", "evaluate"))


def add_arguments(p, command: str) -> None:
    add_options(p, DemoConfig)


def run(args) -> int:
    cfg = from_args(DemoConfig, args)
    if cfg.stage == "train-generate":
        train_and_generate(cfg.runs_dir, build_data(cfg.runs_dir))
    elif cfg.stage == "evaluate":
        evaluate(cfg.runs_dir, build_data(cfg.runs_dir))
    else:
        build(cfg.runs_dir)
    return 0
