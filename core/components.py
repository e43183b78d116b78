"""Stable Diffusion v1.4 components on KerasCV (text encoder, UNet, VAE encoder and decoder), built lazily from
a WeightSpec, plus the placeholder-token text encoder that textual inversion trains.

Components are passed into the trainer and the sampler (never created inside them), so tests can hand in tiny
stand-ins with the same interfaces."""

from __future__ import annotations

from typing import Any, Callable

import numpy as np

from core.tokenizer import MAX_LENGTH, VOCAB_SIZE
from core.weights import COMPONENTS, WeightSpec

VAE_SCALE = 0.18215  # SD's latent scaling factor


class Components:
    """The four networks, each built on first use. `weights` records provenance as they load."""

    def __init__(self, weights: WeightSpec, resolution: int, builders: dict[str, Callable[[], Any]] | None = None,
                 fused_attention: bool | None = None):
        self.weights = weights
        self.resolution = resolution
        # KerasCV's attention layers swapped for keras.ops.dot_product_attention (fuse_attention) as they build;
        # None = on the JAX backend only (cuDNN fused attention there; on TensorFlow it lowers to the same
        # einsum + softmax and measured ~1.3x slower per transformer block on our CPU). Only for KerasCV's own
        # builders: networks handed in (from_models) are used as they are.
        self.fused_attention = fused_attention
        self._own_builders = builders is None
        self._builders = builders or self._kerascv_builders()
        self._built: dict[str, Any] = {}
        self._compiled: dict[tuple, Any] = {}
        self.trainers: dict[tuple, Any] = {}  # core.train's compiled training models, one per setting (see there)

    @classmethod
    def from_models(cls, weights: WeightSpec, resolution: int, **models: Any) -> "Components":
        """Already-built networks (tests' tiny stand-ins, or a shared session build)."""
        obj = cls(weights, resolution, builders={k: (lambda m=m: m) for k, m in models.items()})
        return obj

    def _kerascv_builders(self) -> dict[str, Callable[[], Any]]:
        from keras_cv.models.stable_diffusion import Decoder, DiffusionModel, ImageEncoder, TextEncoder

        r = self.resolution
        return {
            "text_encoder": lambda: TextEncoder(MAX_LENGTH, download_weights=False),
            "diffusion_model": lambda: DiffusionModel(r, r, MAX_LENGTH, download_weights=False),
            "image_encoder": lambda: ImageEncoder(download_weights=False),
            "decoder": lambda: Decoder(r, r, download_weights=False),
        }

    def get(self, name: str):
        if name not in self._built:
            import keras

            if name not in self._builders:
                raise KeyError(f"no builder for component {name!r}")
            if self.weights.source == "random":
                # one fixed seed per component: the same weights whatever the build order or process
                keras.utils.set_random_seed(self.weights.seed * 1000 + COMPONENTS.index(name))
            path = self.weights.resolve(name) if self.weights.source != "random" else None
            model = self._builders[name]()
            if path is not None:
                model.load_weights(str(path))
            fused = self.fused_attention
            if fused is None:
                fused = keras.backend.backend() == "jax"
            if fused and self._own_builders:
                fuse_attention(model)
            self._built[name] = model
        return self._built[name]

    def sampler(self, ddim: str = "kerascv", jit_compile: bool = False, image_to_image: bool = False):
        """One `core.sampler.Sampler` per setting for the life of these networks: its compiled denoising loop is
        traced once (tens of seconds at full architecture) and serves every later `generate` in this process (the
        demo generates six times from one build)."""
        key = (ddim, bool(jit_compile), bool(image_to_image))
        if key not in self._compiled:
            from core.sampler import Sampler

            self._compiled[key] = Sampler(self.diffusion_model, self.decoder,
                                          self.image_encoder if image_to_image else None, jit_compile, ddim)
        return self._compiled[key]

    def placeholder_encoder(self, vectors: np.ndarray) -> "PlaceholderTextEncoder":
        """The inference text encoder with a token's vectors in place, one per vector count for the life of these
        networks (its compiled predict step serves every later `generate` in this process)."""
        vectors = np.asarray(vectors, dtype=np.float32)
        key = ("placeholder_encoder", vectors.shape)
        if key not in self._compiled:
            self._compiled[key] = PlaceholderTextEncoder(self.text_encoder, vectors)
        encoder = self._compiled[key]
        encoder.set_vectors(vectors)
        return encoder

    # each component built (or taken from the cache) when first used
    text_encoder = property(lambda self: self.get("text_encoder"))
    diffusion_model = property(lambda self: self.get("diffusion_model"))
    image_encoder = property(lambda self: self.get("image_encoder"))
    decoder = property(lambda self: self.get("decoder"))


# ------------------------------------------------------------------------------- textual-inversion encoder
def _layer_classes():
    import keras
    from keras import ops

    class PlaceholderEmbedding(keras.layers.Layer):
        """CLIP's token + position embedding with n trainable rows appended after the frozen vocabulary.

        The vocabulary table stays the (frozen) variable of the wrapped layer, so it cannot change;
        ids >= VOCAB_SIZE look up the trainable `placeholder` rows."""

        def __init__(self, clip_embedding, init_vectors: np.ndarray, **kwargs):
            super().__init__(**kwargs)
            clip_embedding.trainable = False
            self.clip_embedding = clip_embedding
            init_vectors = np.asarray(init_vectors, dtype="float32")
            self.placeholder = self.add_weight(
                shape=init_vectors.shape, name="placeholder_vectors", trainable=True,
                initializer=keras.initializers.Constant(init_vectors), dtype="float32")

        def call(self, inputs):
            tokens, positions = inputs
            table = ops.concatenate(
                [ops.convert_to_tensor(self.clip_embedding.token_embedding.embeddings),
                 ops.convert_to_tensor(self.placeholder)], axis=0)
            x = ops.take(table, tokens, axis=0)
            x = ops.cast(x, self.compute_dtype)
            return x + ops.cast(self.clip_embedding.position_embedding(positions), self.compute_dtype)

    return keras, PlaceholderEmbedding


def _split_text_encoder(text_encoder):
    """(the CLIPEmbedding layer, the layers after it) of a KerasCV-style text encoder, checked."""
    import keras

    layers = [l for l in text_encoder.layers if not isinstance(l, keras.layers.InputLayer)]
    embedding = layers[0]
    if not (hasattr(embedding, "token_embedding") and hasattr(embedding, "position_embedding")):
        raise TypeError("text encoder must start with a CLIPEmbedding-like layer")
    rows = int(embedding.token_embedding.embeddings.shape[0])
    if rows != VOCAB_SIZE:
        raise ValueError(f"text encoder vocabulary has {rows} rows, expected {VOCAB_SIZE}")
    return embedding, layers[1:]


def vocabulary_table(text_encoder) -> np.ndarray:
    """The text encoder's (frozen) token-embedding table as float32 numpy, [VOCAB_SIZE, dim]."""
    import keras

    embedding, _ = _split_text_encoder(text_encoder)
    return keras.ops.convert_to_numpy(embedding.token_embedding.embeddings).astype(np.float32)


class PlaceholderTextEncoder:
    """A Keras model [tokens, positions] -> context that shares every layer of `base_text_encoder` (frozen)
    and adds the trainable placeholder rows (ids VOCAB_SIZE ...)."""

    def __init__(self, base_text_encoder, init_vectors: np.ndarray):
        keras, PlaceholderEmbedding = _layer_classes()
        embedding, layers = _split_text_encoder(base_text_encoder)
        tokens = keras.Input(shape=(MAX_LENGTH,), dtype="int32", name="tokens")
        positions = keras.Input(shape=(MAX_LENGTH,), dtype="int32", name="positions")
        self.embedding = PlaceholderEmbedding(embedding, init_vectors, name="placeholder_embedding")
        x = self.embedding([tokens, positions])
        for layer in layers:
            layer.trainable = False
            x = layer(x)
        self.model = keras.Model([tokens, positions], x, name="placeholder_text_encoder")

    def get_vectors(self) -> np.ndarray:
        import keras

        return keras.ops.convert_to_numpy(self.embedding.placeholder).astype(np.float32)

    def set_vectors(self, vectors: np.ndarray) -> None:
        vectors = np.asarray(vectors, dtype=np.float32)
        if tuple(vectors.shape) != tuple(self.embedding.placeholder.shape):
            raise ValueError(f"embedding shape {vectors.shape} does not fit the token's "
                             f"{tuple(self.embedding.placeholder.shape)}")
        self.embedding.placeholder.assign(vectors)

    def encode(self, token_ids: np.ndarray) -> np.ndarray:
        """[B, 77] ids -> [B, 77, dim] context (inference)."""
        token_ids = np.asarray(token_ids, dtype="int32")
        pos = np.repeat(np.arange(MAX_LENGTH, dtype="int32")[None], token_ids.shape[0], axis=0)
        return self.model.predict_on_batch({"tokens": token_ids, "positions": pos})


def vae_moments_model(image_encoder):
    """image -> 8-channel VAE moments (mean, logvar). KerasCV's ImageEncoder ends with a Lambda that keeps the
    mean * 0.18215; textual inversion samples the latent instead, so we stop before that layer."""
    import keras

    return keras.Model(image_encoder.inputs, image_encoder.layers[-2].output, name="vae_moments")


def nearest_tokens(vocabulary: np.ndarray, vectors: np.ndarray, k: int = 8) -> list[list[tuple[int, float]]]:
    """For each vector, the k vocabulary ids with the highest cosine similarity: [(id, cosine), ...]."""
    vnorm = vocabulary / np.maximum(np.linalg.norm(vocabulary, axis=1, keepdims=True), 1e-12)
    out = []
    for v in np.asarray(vectors, dtype=np.float32):
        cos = vnorm @ (v / max(float(np.linalg.norm(v)), 1e-12))
        idx = np.argpartition(-cos, k)[:k]
        idx = idx[np.argsort(-cos[idx])]
        out.append([(int(i), float(cos[i])) for i in idx])
    return out


# ------------------------------------------------------------------------ fused attention, rematerialisation
def _fused_classes():
    """Subclasses of KerasCV's three attention layers whose `call` goes through `keras.ops.dot_product_attention`
    (cuDNN/flash on JAX GPUs, one fused op elsewhere) with the same weights and maths; built on first use."""
    global _FUSED
    if _FUSED:
        return _FUSED
    from keras import ops
    from keras_cv.src.models.stable_diffusion.attention_block import AttentionBlock
    from keras_cv.src.models.stable_diffusion.diffusion_model import CrossAttention
    from keras_cv.src.models.stable_diffusion.text_encoder import CLIPAttention

    class FusedCrossAttention(CrossAttention):  # UNet self- and cross-attention (8 heads)
        def call(self, inputs, context=None):
            context = inputs if context is None else context
            tq, tk = inputs.shape[1], context.shape[1]
            q = ops.reshape(self.to_q(inputs), (-1, tq, self.num_heads, self.head_size))
            k = ops.reshape(self.to_k(context), (-1, tk, self.num_heads, self.head_size))
            v = ops.reshape(self.to_v(context), (-1, tk, self.num_heads, self.head_size))
            out = ops.dot_product_attention(q, k, v, scale=self.scale)
            return self.out_proj(ops.reshape(out, (-1, tq, self.num_heads * self.head_size)))

    class FusedCLIPAttention(CLIPAttention):  # text encoder, causal
        def call(self, inputs, attention_mask=None):
            if attention_mask is not None or not self.causal:
                return super().call(inputs, attention_mask)
            t = inputs.shape[1]
            shape = (-1, t, self.num_heads, self.head_dim)
            q = ops.reshape(self.q_proj(inputs), shape)
            k = ops.reshape(self.k_proj(inputs), shape)
            v = ops.reshape(self.v_proj(inputs), shape)
            out = ops.dot_product_attention(q, k, v, scale=self.scale, is_causal=True)
            return self.out_proj(ops.reshape(out, (-1, t, self.embed_dim)))

    class FusedAttentionBlock(AttentionBlock):  # VAE mid-block, one head over all pixels
        def call(self, inputs):
            x = self.norm(inputs)
            q, k, v = self.q(x), self.k(x), self.v(x)
            shape = ops.shape(q)
            h, w, c = shape[1], shape[2], shape[3]
            flat = lambda y: ops.reshape(y, (-1, h * w, 1, c))  # noqa: E731
            out = ops.dot_product_attention(flat(q), flat(k), flat(v), scale=1.0 / float(c) ** 0.5)
            return self.proj_out(ops.reshape(out, (-1, h, w, c))) + inputs

    _FUSED = {CrossAttention: FusedCrossAttention, CLIPAttention: FusedCLIPAttention,
              AttentionBlock: FusedAttentionBlock}
    return _FUSED


_FUSED: dict = {}


def _sublayers(model):
    return model._flatten_layers(include_self=False, recursive=True)


def fuse_attention(model) -> int:
    """Swap every KerasCV attention layer inside `model` (built, weights untouched) for its fused subclass, in
    place; returns how many were swapped. Do it before the model is first traced/compiled."""
    fused = _fused_classes()
    n = 0
    for layer in _sublayers(model):
        new = fused.get(type(layer))
        if new is not None:
            layer.__class__ = new
            n += 1
    return n


def rematerialize(model) -> int:
    """Gradient checkpointing: every KerasCV UNet ResBlock and SpatialTransformer inside `model` keeps only its
    inputs for the backward pass and recomputes the rest (`keras.remat`); less memory, ~1/3 more compute.
    Returns how many blocks were wrapped."""
    from keras_cv.src.models.stable_diffusion.diffusion_model import ResBlock, SpatialTransformer

    n = 0
    for layer in _sublayers(model):
        base = type(layer)
        if base in (ResBlock, SpatialTransformer):
            layer.__class__ = type(f"Remat{base.__name__}", (base,), {"call": _remat_call})
            n += 1
    return n


def _remat_call(self, inputs):
    import keras

    parent = type(self).__mro__[1]
    x, extra = inputs  # both blocks take [features, embedding-or-context]
    return keras.remat(lambda a, b: parent.call(self, [a, b]))(x, extra)
