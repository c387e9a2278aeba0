"""What a user of `Trainer` / trl's `SFTTrainer` hits first when swapping in ours (issue: drop-in, upstream suites):
compiled models, peft_config, failed set-up, NaN hidden states and head-less models at lambda 0, models by name."""

from __future__ import annotations

import math

import pytest
import torch
import transformers as T
from test_trainer import arguments, seeded
from tiny_models import bert, bert_no_dropout, llama_lm, text_dataset

import hf_atom
from hf_atom import AtomConfig, AtomTrainer, AtomTrainingArguments


def test_a_compiled_model_is_unwrapped_to_the_atom_model(tmp_path):
    """`torch_compile=True` hands compute_loss an OptimizedModule: the atom model must be found inside it."""
    model = hf_atom.with_atom(seeded(bert))
    trainer = AtomTrainer(model=model, args=arguments(AtomTrainingArguments, tmp_path, atom_weight=0.1))
    compiled = torch.compile(model)  # nothing is compiled until it is called
    assert trainer._atom_model(compiled) is model


def test_a_failed_attachment_leaves_the_model_as_it_was(tmp_path):
    model = seeded(bert)
    before = (type(model), dict(model.config.__dict__), set(model._modules))
    with pytest.raises(ValueError, match="hidden_layer"):
        AtomTrainer(model=model, args=arguments(AtomTrainingArguments, tmp_path, atom_weight=0.1, atom_hidden_layer=7))
    assert (type(model), dict(model.config.__dict__), set(model._modules)) == before
    # ...so a plain Trainer still trains it.
    T.Trainer(
        model=model, args=arguments(T.TrainingArguments, tmp_path, max_steps=1), train_dataset=text_dataset(4)
    ).train()


def _nan_bert():
    model = seeded(bert_no_dropout)
    with torch.no_grad():
        model.bert.encoder.layer[1].output.dense.weight[0, 0] = float("nan")  # NaN hidden states from layer 2 on
    return model


def test_lambda_zero_trains_through_nan_hidden_states_like_trainer(tmp_path):
    data = text_dataset(8)
    overrides = {"max_steps": 2, "num_train_epochs": 1}
    plain = T.Trainer(
        model=_nan_bert(), args=arguments(T.TrainingArguments, tmp_path / "a", **overrides), train_dataset=data
    )
    plain.train()
    ours = AtomTrainer(
        model=_nan_bert(), args=arguments(AtomTrainingArguments, tmp_path / "b", atom_weight=0.0, **overrides),
        train_dataset=data,
    )  # fmt: skip
    ours.train()
    assert [math.isnan(log["loss"]) for log in ours.state.log_history if "loss" in log] == [
        math.isnan(log["loss"]) for log in plain.state.log_history if "loss" in log
    ]
    # lambda > 0 still refuses: the atom term would put NaN into the weights.
    with pytest.raises((ValueError, FloatingPointError), match="NaN|Non-finite"):
        AtomTrainer(
            model=_nan_bert(), args=arguments(AtomTrainingArguments, tmp_path / "c", atom_weight=0.1, **overrides),
            train_dataset=data,
        ).train()  # fmt: skip


class _RegressionConfig(T.PretrainedConfig):
    model_type = "hf_atom_test_regression"

    def __init__(self, a=0.0, b=0.0, **kwargs):
        super().__init__(**kwargs)
        self.a, self.b = a, b


class _RegressionModel(T.PreTrainedModel):
    """y = a x + b, the shape of transformers' own Trainer-test models: no hidden states, no hidden size."""

    config_class = _RegressionConfig

    def __init__(self, config):
        super().__init__(config)
        self.a = torch.nn.Parameter(torch.tensor(float(config.a)))
        self.b = torch.nn.Parameter(torch.tensor(float(config.b)))
        self.post_init()

    def forward(self, input_x, labels=None, **kwargs):
        y = input_x * self.a + self.b
        return (torch.nn.functional.mse_loss(y, labels), y) if labels is not None else (y,)


def _regression_data(n=16):
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(n, generator=generator)
    return [{"input_x": float(v), "labels": float(2 * v + 3)} for v in x]


def test_lambda_zero_takes_a_model_without_hidden_states(tmp_path):
    data = _regression_data()
    overrides = {"learning_rate": 0.1, "num_train_epochs": 1}
    plain = seeded(lambda: _RegressionModel(_RegressionConfig()))
    T.Trainer(
        model=plain, args=arguments(T.TrainingArguments, tmp_path / "a", **overrides), train_dataset=data
    ).train()
    mine = seeded(lambda: _RegressionModel(_RegressionConfig()))
    trainer = AtomTrainer(
        model=mine,
        args=arguments(AtomTrainingArguments, tmp_path / "b", atom_weight=0.0, **overrides),
        train_dataset=data,
    )
    assert trainer._atom_off and type(mine) is _RegressionModel
    trainer.train()
    assert torch.equal(plain.a, mine.a) and torch.equal(plain.b, mine.b) and plain.a.item() != 0
    trainer.save_model(str(tmp_path / "saved"))  # saved as Trainer saves it, with no atom card section
    assert (tmp_path / "saved" / "model.safetensors").exists()
    with pytest.raises(ValueError, match="hidden-state width"):
        AtomTrainer(model=_RegressionModel(_RegressionConfig()),
                    args=arguments(AtomTrainingArguments, tmp_path / "c", atom_weight=0.1))  # fmt: skip


@pytest.mark.parametrize("takes_trial", [False, True])
def test_model_init_is_called_as_trainer_calls_it(tmp_path, takes_trial):
    """Trainer passes `trial` only to a model_init that takes an argument (found by the upstream suite)."""
    seen = []

    def model_init(*trial):
        seen.append(trial)
        return seeded(lambda: _RegressionModel(_RegressionConfig()))

    user_init = (lambda trial: model_init(trial)) if takes_trial else (lambda: model_init())
    trainer = AtomTrainer(
        args=arguments(AtomTrainingArguments, tmp_path, atom_weight=0.0, num_train_epochs=1),
        train_dataset=_regression_data(), model_init=user_init,
    )  # fmt: skip
    trainer.train()
    assert seen == [(None,)] * 2 if takes_trial else seen == [()] * 2  # at __init__ and again at train()


def test_a_missing_checkpoint_is_named_in_trainers_words(tmp_path):
    """Code that matches Trainer's message (the upstream suite does) still matches; ours adds what to do."""
    trainer = AtomTrainer(
        model=_RegressionModel(_RegressionConfig()),
        args=arguments(AtomTrainingArguments, tmp_path, atom_weight=0.0),
        train_dataset=_regression_data(),
    )
    with pytest.raises(ValueError, match=r"Can't find a valid checkpoint at .*bogus.* Pass a complete checkpoint"):
        trainer.train(resume_from_checkpoint=str(tmp_path / "checkpoint-5-bogus"))
    with pytest.raises(ValueError, match=r"No valid checkpoint found in output directory"):
        trainer.train(resume_from_checkpoint=True)


# ---------------------------------------------------------------------------------------------------- trl


def _sft(tmp_path, model, **kwargs):
    pytest.importorskip("trl")
    from test_trl import token_dataset, tokenizer

    from hf_atom.trl import AtomSFTConfig, AtomSFTTrainer

    config_keys = ("model_init_kwargs", "packing", "max_length")
    atom = {key: kwargs.pop(key) for key in list(kwargs) if key.startswith("atom_") or key in config_keys}
    args = AtomSFTConfig(output_dir=str(tmp_path), per_device_train_batch_size=4, max_steps=2, learning_rate=1e-2,
                         logging_steps=1, save_strategy="no", report_to="none", use_cpu=True, disable_tqdm=True,
                         seed=0, **atom)  # fmt: skip
    return AtomSFTTrainer(
        model=model, args=args, train_dataset=token_dataset(), processing_class=tokenizer(), **kwargs
    )


def test_sft_takes_a_model_by_name_and_loads_it_as_trl_does(tmp_path):
    torch.manual_seed(0)
    llama_lm().save_pretrained(tmp_path / "tiny-llama")
    trainer = _sft(tmp_path / "run", str(tmp_path / "tiny-llama"), atom_weight=1.0,
                   model_init_kwargs={"dtype": "float32"})  # fmt: skip
    assert isinstance(trainer.model, hf_atom.AtomMixin) and trainer.model.dtype == torch.float32
    assert trainer.args.model_init_kwargs == {"dtype": "float32"}  # the user's config is left as given
    heads = {n: p.detach().clone() for n, p in trainer.model.atom_head.named_parameters()}
    trainer.train()
    assert trainer.state.log_history[0]["atom_loss"] > 0
    assert any(not torch.equal(heads[n], p) for n, p in trainer.model.atom_head.named_parameters())


def test_sft_peft_config_keeps_the_heads_trainable_and_saved(tmp_path):
    peft = pytest.importorskip("peft")
    torch.manual_seed(0)
    config = peft.LoraConfig(r=2, target_modules=["q_proj", "v_proj"], task_type="CAUSAL_LM")
    trainer = _sft(tmp_path, llama_lm(), atom_weight=1.0, peft_config=config)
    # modules_to_save: a trainable copy of the heads beside the frozen original
    heads = [p for n, p in trainer.model.named_parameters() if "atom_head.modules_to_save" in n]
    assert heads and all(p.requires_grad for p in heads)
    assert config.modules_to_save is None  # the user's config object is not changed
    before = [p.detach().clone() for p in heads]
    trainer.train()
    assert any(not torch.equal(a, b) for a, b in zip(before, heads))
    trainer.save_model(str(tmp_path / "adapter"))
    from safetensors.torch import load_file

    saved = load_file(str(tmp_path / "adapter" / "adapter_model.safetensors"))
    assert any("atom_head" in key for key in saved)


def test_atom_config_in_regression_model_is_untouched(tmp_path):
    """A head-less model at lambda 0 is not converted: its config gains no atom settings."""
    model = _RegressionModel(_RegressionConfig())
    AtomTrainer(model=model, args=arguments(AtomTrainingArguments, tmp_path, atom_weight=0.0))
    assert not hasattr(model.config, "atom_config")
    assert AtomConfig().weight != 0  # the default stays on: off only when the user asks for lambda 0


def _uneven_lm_rows(n=8, length=8, seed=0):
    """Causal-LM rows of different real lengths (padding labelled -100): token-weighted and per-batch means differ."""
    from tiny_models import VOCAB

    generator = torch.Generator().manual_seed(seed)
    rows = []
    for i in range(n):
        real = 2 + (i * 5) % (length - 1)
        ids = torch.randint(3, VOCAB, (length,), generator=generator)
        mask = (torch.arange(length) < real).long()
        rows.append({"input_ids": ids * mask, "attention_mask": mask, "labels": torch.where(mask.bool(), ids, -100)})
    return rows


@pytest.mark.parametrize("family", ["llama", "gpt2"])
def test_lambda_zero_is_trainer_for_causal_lms_with_accumulation_and_uneven_lengths(tmp_path, family):
    from tiny_models import gpt2_no_dropout

    build = llama_lm if family == "llama" else gpt2_no_dropout
    data = _uneven_lm_rows()
    overrides = {"per_device_train_batch_size": 2, "gradient_accumulation_steps": 2, "num_train_epochs": 2}
    plain = seeded(build)
    reference = T.Trainer(
        model=plain, args=arguments(T.TrainingArguments, tmp_path / "a", **overrides), train_dataset=data
    )
    reference.train()
    mine = seeded(build)
    ours = AtomTrainer(model=mine, args=arguments(AtomTrainingArguments, tmp_path / "b", atom_weight=0.0, **overrides),
                       train_dataset=data)  # fmt: skip
    ours.train()
    losses = [(log["loss"], log["grad_norm"]) for log in reference.state.log_history if "loss" in log]
    assert losses == [(log["loss"], log["grad_norm"]) for log in ours.state.log_history if "loss" in log]
    assert len(losses) == 4
    for name, param in plain.named_parameters():
        assert torch.equal(param, dict(mine.named_parameters())[name]), name


def test_prefix_tuning_trains_with_atom_heads(tmp_path):
    """PEFT prefix tuning lengthens the attention mask by its virtual tokens (keys and values, not hidden states)."""
    peft = pytest.importorskip("peft")
    from test_drop_in import _uneven_lm_rows

    torch.manual_seed(0)
    config = peft.PrefixTuningConfig(num_virtual_tokens=3, task_type="CAUSAL_LM")
    model = hf_atom.get_peft_model(hf_atom.with_atom(llama_lm()), config)
    trainer = AtomTrainer(model=model, args=arguments(AtomTrainingArguments, tmp_path, atom_weight=1.0, max_steps=2),
                          train_dataset=_uneven_lm_rows())  # fmt: skip
    trainer.train()
    log = trainer.state.log_history[0]
    assert log["atom_pairs"] == 6 and log["atom_loss"] > 0 and math.isfinite(log["loss"])


# ---------------------------------------------------------------------------------------------------- packing


def test_packed_rows_give_the_atom_loss_of_the_same_samples_unpacked():
    """Padding-free packing: one row holds several samples, told apart by position_ids resets."""
    from hf_atom.tokens import select_tokens

    torch.manual_seed(0)
    lengths, width = [3, 5, 2, 4], 6
    samples = [torch.randn(n, width) for n in lengths]
    # packed: two rows of 7 tokens (3 + 4 | 5 + 2), position ids counting from 0 within each sample
    rows = [torch.cat([samples[0], samples[3]]), torch.cat([samples[1], samples[2]])]
    packed = torch.stack(rows)[None].squeeze(0)
    position_ids = torch.tensor([[0, 1, 2, 0, 1, 2, 3], [0, 1, 2, 3, 4, 0, 1]])
    config = AtomConfig(hidden_layer=-1)
    tokens = select_tokens(T.PretrainedConfig(), config, {"hidden_states": (packed,)},
                           {"input_ids": torch.zeros(2, 7, dtype=torch.long), "position_ids": position_ids}, "m")  # fmt: skip
    assert tokens.hidden.shape == (4, 5, width) and tokens.mask.sum(1).tolist() == [3, 4, 5, 2]
    # the same samples unpacked (padded to 5, attention mask)
    padded = torch.zeros(4, 5, width)
    attention = torch.zeros(4, 5, dtype=torch.long)
    for i, sample in enumerate([samples[0], samples[3], samples[1], samples[2]]):
        padded[i, : len(sample)], attention[i, : len(sample)] = sample, 1
    plain = select_tokens(T.PretrainedConfig(), config, {"hidden_states": (padded,)},
                          {"input_ids": torch.zeros(4, 5, dtype=torch.long), "attention_mask": attention}, "m")  # fmt: skip
    head = hf_atom.AtomHead(width, 4)
    loss_packed = hf_atom.atom_loss(*head(tokens.hidden), tokens.mask)
    loss_plain = hf_atom.atom_loss(*head(plain.hidden), plain.mask)
    torch.testing.assert_close(loss_packed, loss_plain)
    assert loss_packed > 0
    # gradients reach every packed token, none is lost
    packed.requires_grad_(True)
    again = select_tokens(T.PretrainedConfig(), config, {"hidden_states": (packed,)},
                          {"input_ids": torch.zeros(2, 7, dtype=torch.long), "position_ids": position_ids}, "m")  # fmt: skip
    hf_atom.atom_loss(*head(again.hidden), again.mask).backward()
    assert (packed.grad.abs().sum(-1) > 0).all()
    # rows without a reset (ordinary position ids) stay as they are
    same = select_tokens(T.PretrainedConfig(), config, {"hidden_states": (padded,)},
                         {"input_ids": torch.zeros(4, 5, dtype=torch.long), "attention_mask": attention,
                          "position_ids": torch.arange(5).expand(4, 5)}, "m")  # fmt: skip
    assert same.hidden is padded


def test_sft_with_packing_pairs_the_packed_samples(tmp_path):
    trainer = _sft(tmp_path, llama_lm(), atom_weight=1.0, packing=True, max_length=32)
    trainer.train()
    log = trainer.state.log_history[0]
    # the 8 samples of 8 tokens are packed into 2 rows of 32, one batch: C(8, 2) = 28 pairs (one per row pair was 1,
    # and a row as one sample gave 0 at batch 1)
    assert log["atom_pairs"] == 28 and log["atom_loss"] > 0


def test_sft_takes_atom_training_arguments_as_sft_trainer_takes_training_arguments(tmp_path):
    pytest.importorskip("trl")
    from test_trl import token_dataset, tokenizer

    from hf_atom.trl import AtomSFTConfig, AtomSFTTrainer

    args = AtomTrainingArguments(
        output_dir=str(tmp_path), report_to="none", use_cpu=True, atom_weight=0.3, max_steps=1
    )
    trainer = AtomSFTTrainer(model=llama_lm(), args=args, train_dataset=token_dataset(), processing_class=tokenizer())
    assert isinstance(trainer.args, AtomSFTConfig) and trainer.args.atom_weight == 0.3 and trainer.args.max_steps == 1
