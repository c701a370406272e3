"""Air-gapped by default: the environment that keeps every library we load off the network.

A sovereign build must not phone home. Each library has its own switch, and most read it once, at
import time, so `airgap()` runs before any stage (and so before torch, transformers, ray or
datasets) is imported. A crawl source still works: it is a connection the config asked for, made
by our own crawler, which none of these switches touch.

`isolate_network()` goes further where the OS allows it: the process moves into a network
namespace with only loopback, which no library can get around (`soberan build --isolate-network`,
and `soberan serve` by default when it runs as root or user namespaces are open).
"""

from __future__ import annotations

import os
import sys

OFFLINE_ENV = {
    # Hugging Face hub, transformers, datasets: local files only, no implicit token, no telemetry.
    "HF_HUB_OFFLINE": "1",
    "TRANSFORMERS_OFFLINE": "1",
    "HF_DATASETS_OFFLINE": "1",
    "HF_HUB_DISABLE_TELEMETRY": "1",
    "HF_HUB_DISABLE_IMPLICIT_TOKEN": "1",
    "HF_HUB_DISABLE_UPDATE_CHECK": "1",
    # Ray's usage statistics, vLLM's usage report, Gradio analytics, W&B.
    "RAY_USAGE_STATS_ENABLED": "0",
    "VLLM_NO_USAGE_STATS": "1",
    "GRADIO_ANALYTICS_ENABLED": "False",
    "WANDB_MODE": "disabled",
    # The consoledonottrack.com convention, honoured by a growing set of tools.
    "DO_NOT_TRACK": "1",
    "DISABLE_TELEMETRY": "1",
}


def airgap() -> dict[str, str]:
    """Set the offline switches for this process and its children; return what was set.

    Values a person set to something else are overridden on purpose: offline is the default, and
    a build that needs a hub download is a build whose inputs are not all on this machine.
    """
    os.environ.update(OFFLINE_ENV)
    # A library imported before us read its switch already; set the constant it keeps.
    hub = sys.modules.get("huggingface_hub.constants")
    if hub is not None:
        hub.HF_HUB_OFFLINE = True
        hub.HF_HUB_DISABLE_TELEMETRY = True
    return dict(OFFLINE_ENV)



def isolate_network() -> str:
    """A network namespace with only loopback; see `soberan.serve.offline.isolate_network`
    (kept there because importing this package loads pyarrow, whose threads would stay outside)."""
    from soberan.serve.offline import isolate_network as isolate

    return isolate()
