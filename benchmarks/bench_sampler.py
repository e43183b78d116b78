"""Benchmark: our sampler (classifier-free guidance as one batched UNet call per step, compiled loop) against
KerasCV's own `StableDiffusion.generate_image` (two UNet calls per step) on the same networks, noise and
machine, in one process. Prints seconds per image for each, the ratio, and peak memory.

    .venv/bin/python benchmarks/bench_sampler.py --resolution 128 --steps 5 --batch 2 --repeats 2
    .venv/bin/python benchmarks/bench_sampler.py --weights kerascv --resolution 512 --steps 50   # real weights

Random weights time the same arithmetic as real ones (the networks are identical), so the ratio holds; the
images do not matter here."""

from __future__ import annotations

import argparse
import resource
import statistics
import time


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--weights", default="random")
    ap.add_argument("--resolution", type=int, default=128)
    ap.add_argument("--steps", type=int, default=5)
    ap.add_argument("--batch", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--jit-compile", action="store_true")
    a = ap.parse_args()

    import keras_cv
    import numpy as np

    from core.components import Components, PlaceholderTextEncoder, vocabulary_table
    from core.sampler import UNCONDITIONAL_TOKENS, Sampler
    from core.tokenizer import PromptTokenizer
    from core.weights import WeightSpec

    comps = Components(WeightSpec.parse(a.weights), a.resolution)
    tok = PromptTokenizer("<tom-cat>")
    vocab = vocabulary_table(comps.text_encoder)
    enc = PlaceholderTextEncoder(comps.text_encoder, vocab[2368][None])
    ctx = enc.encode(np.asarray([tok.encode("a 3D animation frame of <tom-cat>")] * a.batch))
    uncond = enc.encode(np.asarray([UNCONDITIONAL_TOKENS] * a.batch))
    h = a.resolution // 8
    noise = np.random.default_rng(0).standard_normal((a.batch, h, h, 4)).astype("float32")
    ours = Sampler(comps.diffusion_model, comps.decoder, jit_compile=a.jit_compile)
    sd = keras_cv.models.StableDiffusion(img_height=a.resolution, img_width=a.resolution, jit_compile=a.jit_compile)
    sd._text_encoder, sd._diffusion_model, sd._decoder = comps.text_encoder, comps.diffusion_model, comps.decoder

    def run_ours():
        ours.sample(ctx, uncond, noise, a.steps, 7.5)

    def run_kerascv():
        sd.generate_image(ctx, batch_size=a.batch, num_steps=a.steps, diffusion_noise=noise)

    times = {}
    for name, fn in (("ours", run_ours), ("kerascv", run_kerascv)):
        fn()  # warm-up: tracing and first-call costs stay out of the numbers
        ts = []
        for _ in range(a.repeats):
            t0 = time.perf_counter()
            fn()
            ts.append(time.perf_counter() - t0)
        times[name] = statistics.median(ts) / a.batch
    peak_gb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024 / 1024
    print(f"weights={a.weights} resolution={a.resolution} steps={a.steps} batch={a.batch} repeats={a.repeats} "
          f"jit={a.jit_compile} backend={__import__('keras').backend.backend()}")
    print(f"ours:    {times['ours']:.3f} s/image (median)")
    print(f"kerascv: {times['kerascv']:.3f} s/image (median)")
    print(f"ratio kerascv/ours = {times['kerascv'] / times['ours']:.2f}x   peak RSS {peak_gb:.1f} GB")


if __name__ == "__main__":
    main()
