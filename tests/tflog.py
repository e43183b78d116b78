"""TensorFlow's C++ log lines (absl/glog format), and a child environment without the TF_* settings that `core`
makes, for the tests that check our commands print none."""

from __future__ import annotations

import os
import re

# "I0000 00:00:17966.. 19187 port.cc:153] oneDNN custom operations are on..." and absl's preamble; a Ray worker's
# lines reach the driver behind a "(name pid=N) " prefix
CPP_LOG = re.compile(r"\.(cc|h):\d+\]|^(\([^)]*\) )?[IWEF]\d{4} |absl::InitializeLog")
TF_SETTINGS = ("TF_CPP_MIN_LOG_LEVEL", "TF_ENABLE_ONEDNN_OPTS")


def env_without_tf_settings(**extra: str) -> dict[str, str]:
    """os.environ without the variables `import core` sets in this test process (a child would inherit them and
    pass whether or not the command sets them itself), plus `extra`."""
    env = {k: v for k, v in os.environ.items() if k not in TF_SETTINGS}
    env.update(extra)
    return env


def cpp_log_lines(text: str) -> list[str]:
    return [line for line in text.splitlines() if CPP_LOG.search(line)]
