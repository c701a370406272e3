"""Imported once by the forkserver from which the local pool forks its workers
(`soberan.curate.executor`): it loads lid.176 and warms the segmenters of the run's languages,
so every worker starts with them in memory, shared copy-on-write, instead of paying for them
itself. Kiwi takes about 2 s to load and 3 s more for its first call, in every process that
uses it (measured with kiwipiepy 0.24); with a worker per core that was a sixth of a 2-core run.

The run's languages come in the environment (`PRELOAD_ENV`), since the forkserver is started
with module names only. A pack whose segmenter starts threads opts out (`LangPack.preload`).
"""

from __future__ import annotations

import os

PRELOAD_ENV = "SOBERAN_PRELOAD_LANGS"


def preload(codes: list[str]) -> None:
    from soberan.curate.langid import model
    from soberan.lang import get_pack

    import_worker_modules()
    model()
    for code in codes:
        try:
            pack = get_pack(code)
        except KeyError:
            continue  # the run reports an unknown language itself, with the config key
        if pack.preload:
            pack.words("preload")  # any text: the first call is what initializes the model


def import_worker_modules() -> None:
    """What every worker imports lazily (the workspace, its config model with the stages'
    settings, the steps' modules), imported once here. On a rerun decided from stored signals
    these imports were the largest part of each worker's time (py-spy, 2026-12-06)."""
    import pyarrow.dataset  # noqa: F401
    import pyarrow.parquet  # noqa: F401

    import soberan.curate.decontam  # noqa: F401
    import soberan.curate.quality  # noqa: F401
    import soberan.curate.signals  # noqa: F401
    import soberan.lang.pii  # noqa: F401
    from soberan import stages
    from soberan.config import config_model

    config_model(stages.STAGES)


try:
    preload([c for c in os.environ.get(PRELOAD_ENV, "").split(",") if c])
except Exception:  # noqa: BLE001 - an optimization only: a worker loads what it needs itself
    pass
