"""Tiny random-init models of every supported family, with matching inputs (shared by the tests)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
import transformers as T

VOCAB = 64


@dataclass
class Family:
    name: str
    build: Callable[[], T.PreTrainedModel]
    inputs: Callable[[], dict]
    num_tokens: int  # atom tokens per sample for `inputs()` with the default AtomConfig
    hidden: int
    auto_class: type


def _text_inputs(batch=3, length=7, pad_last=2):
    ids = torch.randint(3, VOCAB, (batch, length))
    mask = torch.ones(batch, length, dtype=torch.long)
    mask[0, length - pad_last :] = 0
    ids[0, length - pad_last :] = 0
    return {"input_ids": ids, "attention_mask": mask}


def bert():
    config = T.BertConfig(
        vocab_size=VOCAB,
        hidden_size=16,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=32,
        num_labels=3,
        max_position_embeddings=32,
    )
    return T.BertForSequenceClassification(config)


def vit():
    config = T.ViTConfig(
        image_size=16,
        patch_size=4,
        num_channels=3,
        hidden_size=16,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=32,
        num_labels=3,
    )
    return T.ViTForImageClassification(config)


def dinov2():
    config = T.Dinov2Config(
        image_size=28,
        patch_size=7,
        num_channels=3,
        hidden_size=16,
        num_hidden_layers=2,
        num_attention_heads=2,
        mlp_ratio=2,
        num_labels=3,
    )
    return T.Dinov2ForImageClassification(config)


def gpt2():
    config = T.GPT2Config(
        vocab_size=VOCAB,
        n_embd=16,
        n_layer=2,
        n_head=2,
        n_positions=32,
        bos_token_id=1,
        eos_token_id=2,
        pad_token_id=0,
    )
    return T.GPT2LMHeadModel(config)


def _llama_config(**kwargs):
    return T.LlamaConfig(
        vocab_size=VOCAB,
        hidden_size=16,
        intermediate_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        num_key_value_heads=1,
        max_position_embeddings=32,
        pad_token_id=0,
        bos_token_id=1,
        eos_token_id=2,
        **kwargs,
    )


def llama_lm():
    return T.LlamaForCausalLM(_llama_config())


def llama_cls():
    return T.LlamaForSequenceClassification(_llama_config(num_labels=2))


def resnet():
    config = T.ResNetConfig(num_channels=3, embedding_size=8, hidden_sizes=[8, 12], depths=[1, 1], num_labels=3)
    return T.ResNetForImageClassification(config)


def convnext():
    config = T.ConvNextConfig(num_channels=3, hidden_sizes=[8, 12], depths=[1, 1], num_stages=2, num_labels=3)
    return T.ConvNextForImageClassification(config)


def image_inputs(size, batch=3):
    return {"pixel_values": torch.randn(batch, 3, size, size), "labels": torch.tensor([0, 1, 2])[:batch]}


FAMILIES = {
    "bert": Family(
        "bert",
        bert,
        lambda: {**_text_inputs(), "labels": torch.tensor([0, 1, 2])},
        7,
        16,
        T.AutoModelForSequenceClassification,
    ),
    "vit": Family("vit", vit, lambda: image_inputs(16), 16, 16, T.AutoModelForImageClassification),
    "dinov2": Family("dinov2", dinov2, lambda: image_inputs(28), 16, 16, T.AutoModelForImageClassification),
    "gpt2": Family(
        "gpt2",
        gpt2,
        lambda: {**(d := _text_inputs()), "labels": d["input_ids"].clone()},
        7,
        16,
        T.AutoModelForCausalLM,
    ),
    "llama_lm": Family(
        "llama_lm",
        llama_lm,
        lambda: {**(d := _text_inputs()), "labels": d["input_ids"].clone()},
        7,
        16,
        T.AutoModelForCausalLM,
    ),
    "llama_cls": Family(
        "llama_cls",
        llama_cls,
        lambda: {**_text_inputs(pad_last=0), "labels": torch.tensor([0, 1, 1])},
        7,
        16,
        T.AutoModelForSequenceClassification,
    ),
    # 32x32 input: ResNet/ConvNeXt stem /4, then stage 2 /2 -> 4x4 cells of 12 channels
    "resnet": Family("resnet", resnet, lambda: image_inputs(32), 16, 12, T.AutoModelForImageClassification),
    "convnext": Family("convnext", convnext, lambda: image_inputs(32), 16, 12, T.AutoModelForImageClassification),
}


class ListDataset(torch.utils.data.Dataset):
    def __init__(self, rows):
        self.rows = rows

    def __len__(self):
        return len(self.rows)

    def __getitem__(self, index):
        return self.rows[index]


def text_dataset(size=16, length=8, num_labels=3, seed=0):
    """Token-id samples with variable length (right padding) and labels that depend on the first token."""
    generator = torch.Generator().manual_seed(seed)
    rows = []
    for _ in range(size):
        n = int(torch.randint(3, length + 1, (1,), generator=generator))
        ids = torch.zeros(length, dtype=torch.long)
        ids[:n] = torch.randint(3, VOCAB, (n,), generator=generator)
        mask = (torch.arange(length) < n).long()
        rows.append({"input_ids": ids, "attention_mask": mask, "labels": int(ids[0]) % num_labels})
    return ListDataset(rows)


def bert_no_dropout():
    config = bert().config
    config.hidden_dropout_prob = config.attention_probs_dropout_prob = 0.0
    return T.BertForSequenceClassification(config)


def lm_dataset(size=8, length=8, seed=0):
    """Equal-length causal-LM samples (labels = input ids): every micro-batch has the same number of label tokens."""
    generator = torch.Generator().manual_seed(seed)
    rows = []
    for _ in range(size):
        ids = torch.randint(3, VOCAB, (length,), generator=generator)
        rows.append({"input_ids": ids, "attention_mask": torch.ones(length, dtype=torch.long), "labels": ids.clone()})
    return ListDataset(rows)


def gpt2_no_dropout():
    model = gpt2()
    model.config.resid_pdrop = model.config.embd_pdrop = model.config.attn_pdrop = 0.0
    return T.GPT2LMHeadModel(model.config)


WORDS = ["the", "cat", "sat", "on", "mat", "a", "dog", "ran", "far", "away", "green", "ideas", "sleep", "."]


def tiny_tokenizer():
    """A real fast WordPiece tokenizer over a tiny vocabulary ([CLS] text [SEP], offsets available)."""
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors

    vocab = {token: i for i, token in enumerate(["[PAD]", "[UNK]", "[CLS]", "[SEP]", *WORDS])}
    backend = Tokenizer(models.WordPiece(vocab, unk_token="[UNK]"))
    backend.normalizer = normalizers.BertNormalizer(lowercase=True)
    backend.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    backend.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", special_tokens=[("[CLS]", vocab["[CLS]"]), ("[SEP]", vocab["[SEP]"])]
    )
    return T.PreTrainedTokenizerFast(
        tokenizer_object=backend, unk_token="[UNK]", pad_token="[PAD]", cls_token="[CLS]", sep_token="[SEP]"
    )
