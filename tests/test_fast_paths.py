"""The faster paths match the plain ones: fused attention (keras.ops.dot_product_attention in place of KerasCV's
three attention layers) and rematerialisation on tiny networks built from KerasCV's own layer classes; the
XLA-compiled training step (--jit-compile) and the bf16 / fp16 mixed-precision policies (--mixed-precision) on the
real training model over the tiny stand-in networks (tests/tiny.py). Seconds; tolerances are stated per test."""

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


@pytest.mark.slow
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


@pytest.mark.slow
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


def _loss_and_grad(images, policy: str, jit: bool):
    """Loss and gradient w.r.t. the placeholder vector of the real training model (core.train.build_model) on the
    tiny networks built under Keras dtype `policy`, for batch 1 of a fixed config; the step is XLA-compiled with
    `jit`. The policy is restored to float32 afterwards."""
    import keras
    import tensorflow as tf

    from core.components import PlaceholderTextEncoder, vocabulary_table
    from core.train import TrainConfig, TrainingData, build_model, prepare
    from tests.tiny import tiny_components

    keras.mixed_precision.set_global_policy(policy)
    try:
        comps = tiny_components(128)
        cfg = TrainConfig.from_dict({"images": str(images), "weights": "random", "resolution": 128, "batch_size": 2,
                                     "jit_compile": jit})
        paths, _, templates, tokenizer, init_id = prepare(cfg)
        encoder = PlaceholderTextEncoder(comps.text_encoder, vocabulary_table(comps.text_encoder)[init_id][None])
        model = build_model(encoder, comps.diffusion_model, comps.image_encoder, cfg)
        batch = {k: tf.constant(v) for k, v in TrainingData(paths, templates, tokenizer, cfg).batch(1).items()}
        var = encoder.embedding.placeholder.value

        def step(x):
            with tf.GradientTape() as tape:
                loss = model.compute_loss(x=x, y_pred=model(x, training=True))
            return loss, tf.convert_to_tensor(tape.gradient(loss, var))

        loss, grad = (tf.function(step, jit_compile=True) if jit else step)(batch)
        return float(loss), np.asarray(grad, dtype=np.float64)
    finally:
        keras.mixed_precision.set_global_policy("float32")


@pytest.fixture(scope="module")
def float32_step(char_images):
    """(loss, gradient) of the plain float32 eager step: the reference of the two tests below."""
    return _loss_and_grad(char_images, "float32", jit=False)


def _rel(a, b) -> float:
    return float(np.linalg.norm(np.asarray(a, np.float64) - b) / np.linalg.norm(b))


@pytest.mark.slow
def test_xla_step_matches_eager_loss_gradient_and_training(char_images, tmp_path, float32_step):
    """--jit-compile: the XLA-compiled loss and gradient equal eager ones within 1e-5 relative (measured ~4e-7:
    XLA only reorders float32 sums), and `train` with --jit-compile gives the eager losses over 2 steps within
    1e-4 relative (the small gaps compound through AdamW)."""
    from core.train import TrainConfig, start_run, train
    from tests.tiny import tiny_components

    loss0, grad0 = float32_step
    loss1, grad1 = _loss_and_grad(char_images, "float32", jit=True)
    assert abs(loss1 - loss0) <= 1e-5 * abs(loss0) and _rel(grad1, grad0) <= 1e-5, (loss0, loss1, _rel(grad1, grad0))
    comps = tiny_components(128)
    losses = {}
    for jit in (False, True):
        cfg = TrainConfig.from_dict({"images": str(char_images), "weights": "random", "resolution": 128, "steps": 2,
                                     "checkpoint_every": 2, "batch_size": 2, "lr": 5e-3, "jit_compile": jit})
        run = train(cfg, start_run(cfg, tmp_path, f"jit-{jit}"), comps, progress=False)
        losses[jit] = [m["loss"] for m in run.read_metrics()]
    np.testing.assert_allclose(losses[True], losses[False], rtol=1e-4)


@pytest.mark.parametrize("policy,loss_rtol,grad_rtol", [
    ("mixed_bfloat16", 2e-2, 5e-2),  # 8-bit mantissa; measured on the tiny networks: loss 6e-3, gradient 1.2e-2
    ("mixed_float16", 1e-3, 1e-2),   # 11-bit mantissa; measured: loss 1e-5, gradient 1.4e-3
])
def test_mixed_precision_loss_and_gradient_match_float32(char_images, float32_step, policy, loss_rtol, grad_rtol):
    """--mixed-precision bf16 / fp16 against float32 on the same weights (variables stay float32 under Keras'
    mixed policies; noising and loss are float32 in build_model): loss and gradient within the stated relative
    tolerances, and the gradient points the same way (cosine > 0.999)."""
    loss0, grad0 = float32_step
    loss1, grad1 = _loss_and_grad(char_images, policy, jit=False)
    cosine = float(grad1.ravel() @ grad0.ravel() / np.linalg.norm(grad1) / np.linalg.norm(grad0))
    assert abs(loss1 - loss0) <= loss_rtol * abs(loss0), (loss0, loss1)
    assert _rel(grad1, grad0) <= grad_rtol and cosine > 0.999, (_rel(grad1, grad0), cosine)
