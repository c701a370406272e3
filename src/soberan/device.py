"""Which device a stage computes on, and what to tell a person when it is not the GPU they expected.

Train, evaluate and serve all ask here, so "no CUDA" reads the same everywhere and says why (a
CPU-only torch build, or a CUDA build that sees no device), and an out-of-memory error names the
batch and the memory the step needed instead of a bare CUDA traceback.
"""

from __future__ import annotations

import re
from collections.abc import Callable


def cuda_missing_reason() -> str | None:
    """None when a CUDA device is usable, else why not, in words."""
    import torch

    if torch.cuda.is_available():
        return None
    if torch.version.cuda is None:
        return f"this torch ({torch.__version__}) is a CPU-only build"
    return (f"torch {torch.__version__} is built for CUDA {torch.version.cuda} but sees no device "
            "(no GPU, no driver, or CUDA_VISIBLE_DEVICES hides it)")


def pick_device(requested: str = "auto", say: Callable[[str], None] | None = None, what: str = "running") -> str:
    """`auto` → `cuda` when usable, else `cpu`; `cuda`/`cuda:N` without CUDA → `cpu`, saying so.

    A lab that asked for the GPU gets a clear message and a run on the CPU, not a CUDA assertion
    from deep inside torch; `auto` on a machine without a GPU says it once, quietly."""
    if requested == "cpu":
        return "cpu"
    reason = cuda_missing_reason()
    if reason is None:
        return "cuda" if requested == "auto" else requested
    if say is not None:
        head = "note" if requested == "auto" else "warning"
        color = "dim" if requested == "auto" else "yellow"
        asked = "" if requested == "auto" else f" ({requested} was asked for)"
        say(f"[{color}]{head}:[/{color}] no CUDA device{asked}: {reason}; {what} on the CPU")
    return "cpu"


_TRIED = re.compile(r"Tried to allocate ([0-9.]+ [KMGT]i?B)")


def oom_message(err: BaseException, *, batch: str, remedy: str) -> str:
    """A sentence for an out-of-memory error: the batch that did not fit, the memory the step held
    at its peak and what it then asked for (from torch's own message), the device's size, and what
    to change."""
    import torch

    parts = [f"out of memory at {batch}"]
    tried = _TRIED.search(str(err))
    if torch.cuda.is_available():
        dev = torch.cuda.current_device()
        peak = torch.cuda.max_memory_allocated(dev) / 2**30
        total = torch.cuda.get_device_properties(dev).total_memory / 2**30
        parts.append(f"the step held {peak:.1f} GiB at its peak"
                     + (f" and then asked for {tried.group(1)} more" if tried else "")
                     + f", on {torch.cuda.get_device_name(dev)} with {total:.1f} GiB")
    elif tried:
        parts.append(f"it asked for {tried.group(1)} more")
    return "; ".join(parts) + f". {remedy}"

