"""Benchmark prompts: render an item, its scored continuations and its few-shot prefix.

Finding the specs and reading their items is core (`soberan.benchmarks`), because curate reads
the same benchmarks to decontaminate the corpus against them.
"""

from __future__ import annotations

import random

from soberan.benchmarks import LETTERS, Item, load_items_checked
from soberan.config import ConfigError
from soberan.evaluate.config import BenchmarkSpec


# --- prompts -----------------------------------------------------------------------------------

def render(spec: BenchmarkSpec, item: Item) -> str:
    """The prompt of one item (without few-shot examples)."""
    block = "\n".join(f"{LETTERS[i]}. {c}" for i, c in enumerate(item.choices))
    return spec.template.format_map({**item.values, "choices": block})


def continuations(spec: BenchmarkSpec, item: Item) -> list[str]:
    """What is scored after the prompt, one per choice: the choice text or its letter."""
    if spec.continuation == "letter":
        return [spec.target_delimiter + LETTERS[i] for i in range(len(item.choices))]
    return [spec.target_delimiter + c for c in item.choices]


def gold_continuation(spec: BenchmarkSpec, item: Item) -> str:
    if spec.type == "generate" or item.answer is None:
        return spec.target_delimiter + item.target
    return continuations(spec, item)[item.answer]


def fewshot_examples(spec: BenchmarkSpec, k: int, seed: int) -> list[Item]:
    """`k` examples from the few-shot split, the same for every item of the set: its first `k`
    rows (`first_n`, lm-eval's sampler of that name) or one seeded draw (`random`; lm-eval's
    default sampler draws anew per item, so its few-shot numbers then differ slightly)."""
    if k == 0:
        return []
    if not spec.fewshot_path:
        raise ConfigError(f"benchmark {spec.name}: {k}-shot asked, but the spec has no `fewshot_path` "
                          "(examples never come from the scored split)")
    pool, _ = load_items_checked(spec, spec.fewshot_path)
    if len(pool) < k:
        raise ConfigError(f"benchmark {spec.name}: {k}-shot asked, the few-shot split has {len(pool)} usable rows")
    return pool[:k] if spec.fewshot_sampler == "first_n" else random.Random(seed).sample(pool, k)


def fewshot_prefix(spec: BenchmarkSpec, shots: list[Item]) -> str:
    parts = [render(spec, s) + gold_continuation(spec, s) for s in shots]
    prefix = spec.fewshot_delimiter.join(parts) + (spec.fewshot_delimiter if parts else "")
    return (spec.instruction + spec.fewshot_delimiter if spec.instruction else "") + prefix

