"""Tiny stand-ins for SD's four networks with the same interfaces (input names, vocabulary size, the VAE
encoder's final Lambda), so the trainer and sampler logic can be tested in seconds."""

from __future__ import annotations

from core.components import Components
from core.tokenizer import MAX_LENGTH, VOCAB_SIZE
from core.weights import WeightSpec

DIM = 32


def tiny_components(resolution: int = 64, seed: int = 0) -> Components:
    import keras
    from keras_cv.src.models.stable_diffusion.text_encoder import CLIPEmbedding, CLIPEncoderLayer, quick_gelu

    keras.utils.set_random_seed(seed)
    tokens = keras.Input((MAX_LENGTH,), dtype="int32", name="tokens")
    positions = keras.Input((MAX_LENGTH,), dtype="int32", name="positions")
    x = CLIPEmbedding(VOCAB_SIZE, DIM, MAX_LENGTH)([tokens, positions])
    x = CLIPEncoderLayer(DIM, 2, activation=quick_gelu)(x)
    x = keras.layers.LayerNormalization(epsilon=1e-5)(x)
    text_encoder = keras.Model([tokens, positions], x)

    h = resolution // 8
    latent = keras.Input((h, h, 4), name="latent")
    t_emb = keras.Input((320,), name="timestep_embedding")
    context = keras.Input((MAX_LENGTH, DIM), name="context")
    c = keras.layers.Dense(4)(keras.layers.GlobalAveragePooling1D()(context))
    t = keras.layers.Dense(4)(t_emb)
    y = keras.layers.Conv2D(4, 3, padding="same")(latent)
    y = y + keras.layers.Reshape((1, 1, 4))(c) + keras.layers.Reshape((1, 1, 4))(t)
    diffusion_model = keras.Model([latent, t_emb, context], y)

    image_encoder = keras.Sequential([
        keras.Input((None, None, 3)),
        keras.layers.Conv2D(8, 8, strides=8),
        keras.layers.Lambda(lambda v: v[..., :4] * 0.18215),
    ])
    decoder = keras.Sequential([
        keras.Input((h, h, 4)),
        keras.layers.UpSampling2D(8),
        keras.layers.Conv2D(3, 3, padding="same"),
    ])
    return Components.from_models(WeightSpec("random", seed=seed), resolution, text_encoder=text_encoder,
                                  diffusion_model=diffusion_model, image_encoder=image_encoder, decoder=decoder)


def sweep_components(weights: WeightSpec, resolution: int) -> Components:
    """The sweep's components factory (`components = "tests.tiny:sweep_components"` in a spec's [sweep])."""
    return tiny_components(resolution, weights.seed)
