"""tomcat-ti: textual inversion on KerasCV Stable Diffusion, with CLIP evaluation, a dashboard and model cards.

Importing `core` imports nothing heavy: TensorFlow/keras_cv are imported only by the modules that build
networks (`core.components`, `core.train`, `core.sampler`, `core.generate`), torch/open_clip only by
`core.clip_score`. Never import the TensorFlow side before the torch side in one process (LLVM clash).
"""

import os

__version__ = "0.1.0"

# TensorFlow's C++ logging, set before any module of ours can import TensorFlow (every entry point imports
# `core` first: the CLI, core.worker children, Ray workers, the tests' conftest). Level 2 drops its info and
# warning lines. TF_ENABLE_ONEDNN_OPTS=0: TensorFlow turns its oneDNN kernels on by itself on CPUs with AVX-512
# VNNI and then prints "oneDNN custom operations are on" through absl *before* TF_CPP_MIN_LOG_LEVEL applies
# (measured: printed at every level 0-3); off, every CPU computes the same float round-off. Setting the variable
# yourself (=1: ~9% faster CPU training here, docs/benchmarks.md) is respected, and TensorFlow then says so once.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")
