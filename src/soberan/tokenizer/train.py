"""Train a byte-level BPE tokenizer from scratch on the nation's corpus, with HF `tokenizers`.

Byte-level BPE (Radford et al., 2019) starts from the 256 bytes, so no text is ever unknown and
decode(encode(text)) is exact without a normalizer. The pre-tokenizer regex is Mistral Tekken's
(the GPT-4o family's): letters split by case, every digit its own piece, punctuation apart from
words, so numbers tokenize digit by digit as in Llama and Mistral.
"""

from __future__ import annotations

from collections.abc import Iterable

TEKKEN_PATTERN = (r"[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+|"
                  r"[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]+[\p{Ll}\p{Lm}\p{Lo}\p{M}]*|"
                  r"\p{N}| ?[^\s\p{L}\p{N}]+[\r\n/]*|\s*[\r\n]+|\s+(?!\S)|\s+")


def train_bpe(texts: Iterable[str], vocab_size: int, special_tokens: list[str],
              min_frequency: int = 2, length: int | None = None):
    """A byte-level BPE `tokenizers.Tokenizer` of `vocab_size` ids, special tokens first."""
    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE(ignore_merges=True))
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(TEKKEN_PATTERN), behavior="isolated"),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)])
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size, min_frequency=min_frequency, special_tokens=special_tokens,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tok.train_from_iterator(texts, trainer, length=length)
    return tok
