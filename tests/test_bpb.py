"""bits_per_byte: exact on a model whose answer is known, window- and batch-invariant where it must be."""

from __future__ import annotations

import math

import pytest
import torch

from soberan.bpb import bits_per_byte, nll_and_bytes

torch.set_num_threads(1)

TEXTS = ["대한민국은 민주공화국이다. 모든 국민은 법 앞에 평등하다.",
         "the court shall decide; every citizen is equal before the law.",
         "국회는 법률을 제정한다 " * 12, "x"]


@pytest.fixture(scope="module")
def tok():
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    t = Tokenizer(models.BPE())
    t.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    t.decoder = decoders.ByteLevel()
    t.train_from_iterator(TEXTS * 3, trainers.BpeTrainer(vocab_size=300, special_tokens=["<s>", "</s>"],
                                                         initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    return PreTrainedTokenizerFast(tokenizer_object=t, bos_token="<s>", eos_token="</s>")


def _model(vocab: int, zero_head: bool = False):
    from soberan.train.model import build_model, llama_config

    m = build_model(llama_config(1, vocab, 64, tie_embeddings=False, bos_token_id=0, eos_token_id=1), seed=3)
    if zero_head:
        with torch.no_grad():
            m.lm_head.weight.zero_()  # every next token equally likely: NLL = ln(V) per token
    return m.eval()


def test_uniform_model_gives_log2_vocab_per_token_in_any_window(tok):
    m = _model(len(tok), zero_head=True)
    v = m.config.vocab_size
    n_tokens = sum(len(tok(t, add_special_tokens=False)["input_ids"]) for t in TEXTS)
    n_bytes = sum(len(t.encode()) for t in TEXTS)
    want = n_tokens * math.log2(v) / n_bytes
    # Every token is scored exactly once, however the long text is cut into windows.
    for max_length in (4, 7, 512):
        assert bits_per_byte(m, tok, TEXTS, max_length=max_length, batch_size=3) == pytest.approx(want, rel=1e-6)


def test_matches_a_direct_forward_pass_and_padding_changes_nothing(tok):
    m = _model(len(tok))
    texts = TEXTS[:2]
    total = 0.0
    for t in texts:
        ids = torch.tensor([[tok.bos_token_id] + tok(t, add_special_tokens=False)["input_ids"]])
        with torch.no_grad():
            logits = m(input_ids=ids).logits
        total += float(torch.nn.functional.cross_entropy(logits[0, :-1], ids[0, 1:], reduction="sum"))
    nll, n_bytes = nll_and_bytes(m, tok, texts, max_length=512, batch_size=1)
    assert n_bytes == sum(len(t.encode()) for t in texts)
    assert nll == pytest.approx(total, rel=1e-5)
    batched = bits_per_byte(m, tok, texts, batch_size=8)  # both texts in one right-padded batch
    assert batched == pytest.approx(total / (math.log(2) * n_bytes), rel=1e-5)


def test_no_text_is_nan_and_training_mode_is_restored(tok):
    m = _model(len(tok)).train()
    assert math.isnan(bits_per_byte(m, tok, []))
    assert math.isnan(bits_per_byte(m, tok, [""]))
    bits_per_byte(m, tok, TEXTS[:1])
    assert m.training
