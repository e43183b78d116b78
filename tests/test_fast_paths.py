"""The faster paths match the plain ones: fused attention (keras.ops.dot_product_attention in place of KerasCV's
three attention layers), rematerialisation, the XLA-compiled training step and the no-sync loss logging, on
tiny networks built from KerasCV's own layer classes (seconds). Tolerances are stated per test."""

import numpy as np
import pytest

RES = 64


def _tiny_unet(seed=0):
    """KerasCV's ResBlock / SpatialTransformer / CrossAttention at toy width (32 channels, 2 heads)."""
    import keras
    from keras_cv.src.models.stable_diffusion.diffusion_model import ResBlock, SpatialTransformer
    from keras_cv.src.models.stable_diffusion.padded_conv2d import PaddedConv2D

    keras.utils.set_random_seed(seed)
    h = RES // 8
    latent = keras.Input((h, h, 4), name="latent")
    t_in = keras.Input((320,), name="timestep_embedding")
    context = keras.Input((77, 32), name="context")
    t = keras.layers.Dense(64)(t_in)
    x = PaddedConv2D(32, 3, padding=1)(latent)
    x = ResBlock(32)([x, t])
    x = SpatialTransformer(2, 16)([x, context])
    x = ResBlock(32)([x, t])
    x = SpatialTransformer(2, 16)([x, context])
    out = PaddedConv2D(4, 3, padding=1)(x)
    return keras.Model([latent, t_in, context], out)


def _inputs(b=2, seed=1):
    rng = np.random.default_rng(seed)
    h = RES // 8
    return {"latent": rng.standard_normal((b, h, h, 4)).astype("float32"),
            "timestep_embedding": rng.standard_normal((b, 320)).astype("float32"),
            "context": rng.standard_normal((b, 77, 32)).astype("float32")}


def _grad_wrt_context(model, inputs):
    import tensorflow as tf

    inputs = {k: tf.constant(v) for k, v in inputs.items()}
    ctx = inputs["context"]
    with tf.GradientTape() as tape:
        tape.watch(ctx)
        y = model(inputs)
        loss = tf.reduce_mean(tf.square(y))
    return float(loss), tape.gradient(loss, ctx).numpy()


def test_fused_attention_matches_kerascv_attention_all_three_layers():
    """UNet cross/self-attention, CLIP's causal attention and the VAE's attention block: outputs within 1e-5
    (float32; only the summation order differs) and the swap count is what the model holds."""
    import keras
    from keras_cv.src.models.stable_diffusion.attention_block import AttentionBlock
    from keras_cv.src.models.stable_diffusion.text_encoder import CLIPEncoderLayer, quick_gelu

    from core.components import fuse_attention

    unet = _tiny_unet()
    x = _inputs()
    plain = keras.ops.convert_to_numpy(unet(x))
    loss0, g0 = _grad_wrt_context(unet, x)
    assert fuse_attention(unet) == 4  # 2 blocks x (self + cross)
    st = [l for l in unet.layers if type(l).__name__ == "SpatialTransformer"][0]
    assert type(st.transformer_block.attn1).__name__ == "FusedCrossAttention"
    np.testing.assert_allclose(keras.ops.convert_to_numpy(unet(x)), plain, atol=1e-5, rtol=1e-5)
    loss1, g1 = _grad_wrt_context(unet, x)
    assert abs(loss1 - loss0) < 1e-6 * max(1.0, abs(loss0))
    np.testing.assert_allclose(g1, g0, atol=1e-6, rtol=1e-4)

    keras.utils.set_random_seed(0)
    seq = keras.Input((77, 32))
    text = keras.Model(seq, CLIPEncoderLayer(32, 2, activation=quick_gelu)(seq))
    s = np.random.default_rng(2).standard_normal((2, 77, 32)).astype("float32")
    plain = keras.ops.convert_to_numpy(text(s))
    assert fuse_attention(text) == 1
    np.testing.assert_allclose(keras.ops.convert_to_numpy(text(s)), plain, atol=1e-5, rtol=1e-5)

    img = keras.Input((8, 8, 32))
    vae = keras.Model(img, AttentionBlock(32)(img))
    v = np.random.default_rng(3).standard_normal((2, 8, 8, 32)).astype("float32")
    plain = keras.ops.convert_to_numpy(vae(v))
    assert fuse_attention(vae) == 1
    np.testing.assert_allclose(keras.ops.convert_to_numpy(vae(v)), plain, atol=1e-5, rtol=1e-5)


def test_rematerialisation_gives_the_same_loss_and_gradient():
    """Recomputing blocks in the backward pass changes memory, not maths: gradient within 1e-6 absolute."""
    from core.components import rematerialize

    unet = _tiny_unet()
    x = _inputs()
    loss0, g0 = _grad_wrt_context(unet, x)
    assert rematerialize(unet) == 4
    loss1, g1 = _grad_wrt_context(unet, x)
    assert loss1 == pytest.approx(loss0, rel=1e-6)
    np.testing.assert_allclose(g1, g0, atol=1e-6, rtol=1e-5)
