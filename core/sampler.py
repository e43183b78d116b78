"""Our DDIM sampler over KerasCV's networks: the same update and timesteps as KerasCV's `generate_image`, with
classifier-free guidance as ONE batched UNet call per step ([unconditional; conditional] stacked) and the whole
denoising loop compiled (`ops.fori_loop` inside tf.function / jax.jit). Also image-to-image from a start picture,
and the memorisation screen's `cond_gap` from the two noise predictions guidance already makes."""

from __future__ import annotations

import numpy as np

from core.identity import SCREEN_FIRST_STEPS
from core.schedule import TRAIN_TIMESTEPS, alphas_cumprod, ddim_timesteps, timestep_embedding
from core.tokenizer import END_OF_TEXT, MAX_LENGTH

START_OF_TEXT = 49406
UNCONDITIONAL_TOKENS = [START_OF_TEXT] + [END_OF_TEXT] * (MAX_LENGTH - 1)  # KerasCV's _UNCONDITIONAL_TOKENS
DDIM_CONVENTIONS = ("kerascv", "diffusers")  # see Sampler.schedule


def _compile(fn, jit_compile: bool):
    import keras

    backend = keras.backend.backend()
    if backend == "tensorflow":
        import tensorflow as tf

        return tf.function(fn, jit_compile=jit_compile, reduce_retracing=True)
    if backend == "jax":
        import jax

        return jax.jit(fn)
    return fn


class Sampler:
    """Denoise from noise (text-to-image) or from a noised picture (image-to-image), then decode."""

    def __init__(self, diffusion_model, decoder, image_encoder=None, jit_compile: bool = False,
                 ddim: str = "kerascv"):
        self.unet = diffusion_model
        self.decoder = decoder
        self.image_encoder = image_encoder
        self._loop = _compile(self._denoise_loop, jit_compile)
        self.alphas = alphas_cumprod().astype(np.float32)
        if ddim not in DDIM_CONVENTIONS:
            raise ValueError(f"ddim must be one of {DDIM_CONVENTIONS}, got {ddim!r}")
        self.ddim = ddim

    def _unet_variables(self):
        """JAX: the UNet's weights go into the compiled loop as arguments (stateless_call); captured as
        constants they would be baked into the program. TensorFlow reads its variables directly (None)."""
        import keras

        if keras.backend.backend() != "jax":
            return None
        return ([v.value for v in self.unet.trainable_variables],
                [v.value for v in self.unet.non_trainable_variables])

    def _denoise_loop(self, unet_vars, latent, context, t_embs, a_t, a_prev, guidance, screen_steps):
        from keras import ops

        n = ops.shape(t_embs)[0]
        b = ops.shape(latent)[0]

        def unet(inputs):
            if unet_vars is None:
                return self.unet(inputs, training=False)
            return self.unet.stateless_call(unet_vars[0], unet_vars[1], inputs, training=False)[0]

        def body(i, carry):
            lat, gap = carry
            j = n - 1 - i
            t_emb = ops.repeat(ops.expand_dims(t_embs[j], 0), 2 * b, axis=0)
            eps = unet({"latent": ops.concatenate([lat, lat], axis=0), "timestep_embedding": t_emb,
                        "context": context})
            eps = ops.cast(eps, "float32")
            e_uncond, e_cond = eps[:b], eps[b:]
            # memorisation screen (Wen et al. 2024): |cond - uncond| per image, summed over the first steps
            norm = ops.sqrt(ops.sum(ops.square(e_cond - e_uncond), axis=(1, 2, 3)))
            gap = gap + ops.where(i < screen_steps, norm, ops.zeros_like(norm))
            e = e_uncond + guidance * (e_cond - e_uncond)
            pred_x0 = (lat - ops.sqrt(1.0 - a_t[j]) * e) / ops.sqrt(a_t[j])
            return e * ops.sqrt(1.0 - a_prev[j]) + ops.sqrt(a_prev[j]) * pred_x0, gap

        return ops.fori_loop(0, n, body, (latent, ops.zeros((b,), "float32")))

    def schedule(self, num_steps: int, strength: float = 1.0):
        """(timesteps run, t_embs, a_t, a_prev); img2img runs the lowest round(num_steps * strength) of them.

        "kerascv": KerasCV's generate_image: timesteps round(linspace(0, 999, n)), the last step to alpha 1.0.
        "diffusers": DDIMScheduler with SD v1's scheduler config (timestep_spacing "leading", steps_offset 1,
        set_alpha_to_one False): timesteps 1, 1 + 1000 // n, ..., and the last step to alphas_cumprod[0]."""
        if self.ddim == "diffusers":
            ts = np.arange(num_steps, dtype=np.int64) * (TRAIN_TIMESTEPS // num_steps) + 1
            final = self.alphas[0]
        else:
            ts, final = ddim_timesteps(num_steps), 1.0
        a = self.alphas[ts]
        a_prev = np.concatenate([[final], a[:-1]]).astype(np.float32)
        n = num_steps if strength >= 1.0 else max(1, int(round(num_steps * strength)))
        return ts[:n], timestep_embedding(ts[:n]), a[:n], a_prev[:n]

    def encode_image(self, image: np.ndarray) -> np.ndarray:
        """[B,H,W,3] in [-1,1] -> scaled VAE latent mean (KerasCV's ImageEncoder output)."""
        if self.image_encoder is None:
            raise ValueError("image-to-image needs the VAE image encoder")
        return np.asarray(self.image_encoder.predict_on_batch(image), dtype=np.float32)

    def sample(self, context: np.ndarray, uncond_context: np.ndarray, noise: np.ndarray, num_steps: int = 50,
               guidance: float = 7.5, init_latent: np.ndarray | None = None, strength: float = 1.0) -> np.ndarray:
        """context/uncond [B,77,768], noise [B,h,w,4] -> uint8 images [B,H,W,3].

        With `init_latent`, the start is that latent noised to the first timestep run (image-to-image)."""
        return self.sample_with_gap(context, uncond_context, noise, num_steps, guidance, init_latent, strength)[0]

    def sample_with_gap(self, context: np.ndarray, uncond_context: np.ndarray, noise: np.ndarray,
                        num_steps: int = 50, guidance: float = 7.5, init_latent: np.ndarray | None = None,
                        strength: float = 1.0, screen_steps: int = SCREEN_FIRST_STEPS) -> tuple[np.ndarray, np.ndarray]:
        """`sample`, plus each image's `cond_gap`: the L2 norm of the text-conditional minus the unconditional noise
        prediction, averaged over the first `screen_steps` steps run (Wen et al., ICLR 2024, the memorisation
        screen). Both predictions are already made for guidance, so it costs no network call."""
        latent, gap = self.denoise_with_gap(context, uncond_context, noise, num_steps, guidance, init_latent,
                                            strength, screen_steps)
        return self.decode(latent), gap

    def denoise(self, context: np.ndarray, uncond_context: np.ndarray, noise: np.ndarray, num_steps: int = 50,
                guidance: float = 7.5, init_latent: np.ndarray | None = None, strength: float = 1.0) -> np.ndarray:
        """The final latent [B,h,w,4] of `sample` (before the VAE decoder)."""
        return self.denoise_with_gap(context, uncond_context, noise, num_steps, guidance, init_latent, strength)[0]

    def denoise_with_gap(self, context, uncond_context, noise, num_steps: int = 50, guidance: float = 7.5,
                         init_latent: np.ndarray | None = None, strength: float = 1.0,
                         screen_steps: int = SCREEN_FIRST_STEPS) -> tuple[np.ndarray, np.ndarray]:
        """(final latent, cond_gap per image) of one denoising run."""
        from keras import ops

        ts, t_embs, a_t, a_prev = self.schedule(num_steps, strength if init_latent is not None else 1.0)
        latent = noise.astype(np.float32)
        if init_latent is not None:
            ab = float(self.alphas[ts[-1]])
            latent = (np.sqrt(ab) * init_latent + np.sqrt(1.0 - ab) * noise).astype(np.float32)
        ctx = np.concatenate([uncond_context, context], axis=0).astype(np.float32)
        k = min(int(screen_steps), len(ts))
        t = ops.convert_to_tensor
        out, gap = self._loop(self._unet_variables(), t(latent), t(ctx), t(t_embs), t(a_t), t(a_prev),
                              t(np.float32(guidance)), t(np.int32(k)))
        return ops.convert_to_numpy(out), ops.convert_to_numpy(gap).astype(np.float64) / max(k, 1)

    def decode(self, latent: np.ndarray) -> np.ndarray:
        decoded = np.asarray(self.decoder.predict_on_batch(latent), dtype=np.float32)
        return np.clip((decoded + 1.0) / 2.0 * 255.0, 0, 255).astype("uint8")


def initial_noise(seed: int, resolution: int) -> np.ndarray:
    """The start noise of one image: depends on its seed alone, so batching never changes a picture."""
    h = resolution // 8
    return np.random.default_rng(seed).standard_normal((h, h, 4)).astype(np.float32)


__all__ = ["Sampler", "initial_noise", "UNCONDITIONAL_TOKENS"]
