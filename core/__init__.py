"""tomcat-ti: textual inversion on KerasCV Stable Diffusion, with CLIP evaluation, a dashboard and model cards.

Importing `core` imports nothing heavy: TensorFlow/keras_cv are imported only by the modules that build
networks (`core.components`, `core.train`, `core.sampler`, `core.generate`), torch/open_clip only by
`core.clip_score`. Never import the TensorFlow side before the torch side in one process (LLVM clash).
"""

__version__ = "0.1.0"
