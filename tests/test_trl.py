"""AtomSFTTrainer: atom modeling inside trl's SFTTrainer (issue #11). trl's loss runs the backbone through its fused
LM head, so these tests check that the atom term still trains the heads and the backbone."""

import pytest
import torch
import transformers as T
from tiny_models import VOCAB, llama_lm, tiny_tokenizer

pytest.importorskip("trl")
datasets = pytest.importorskip("datasets")
from trl import SFTConfig, SFTTrainer  # noqa: E402

from hf_atom.trl import AtomSFTConfig, AtomSFTTrainer  # noqa: E402


def token_dataset(size=8, length=8):
    generator = torch.Generator().manual_seed(0)
    rows = [{"input_ids": torch.randint(3, VOCAB, (length,), generator=generator).tolist()} for _ in range(size)]
    return datasets.Dataset.from_list(rows)


def tokenizer():
    return T.PreTrainedTokenizerFast(
        tokenizer_object=tiny_tokenizer().backend_tokenizer, pad_token="[PAD]", eos_token="[SEP]"
    )


def train(trainer_class, config_class, tmp_path, build=None, **atom):
    torch.manual_seed(0)
    args = config_class(
        output_dir=str(tmp_path),
        per_device_train_batch_size=4,
        max_steps=3,
        learning_rate=1e-2,
        logging_steps=1,
        save_strategy="no",
        report_to="none",
        use_cpu=True,
        disable_tqdm=True,
        seed=0,
        **atom,
    )
    model = (build or llama_lm)()
    trainer = trainer_class(model=model, args=args, train_dataset=token_dataset(), processing_class=tokenizer())
    trainer.train()
    return trainer, {name: param.detach().clone() for name, param in trainer.model.named_parameters()}


def test_lambda_zero_is_exactly_sft_trainer(tmp_path):
    _, plain = train(SFTTrainer, SFTConfig, tmp_path / "plain")
    _, atom = train(AtomSFTTrainer, AtomSFTConfig, tmp_path / "atom", atom_weight=0.0)
    for name, param in plain.items():
        assert torch.equal(param, atom[name]), name


def test_atom_loss_is_logged_and_moves_heads_and_backbone(tmp_path):
    import hf_atom

    # the baseline's heads: the ones the atom run starts from (seed 0), untrained at lambda 0
    baseline_model = lambda: hf_atom.with_atom(llama_lm(), seed=0)  # noqa: E731
    _, baseline = train(AtomSFTTrainer, AtomSFTConfig, tmp_path / "zero", build=baseline_model, atom_weight=0.0)
    trainer, atom = train(AtomSFTTrainer, AtomSFTConfig, tmp_path / "atom", atom_weight=1.0)
    log = trainer.state.log_history[0]
    assert log["atom_loss"] > 0 and log["atom_pairs"] == 6 and "mean_token_accuracy" in log
    assert log["loss"] == pytest.approx(log["task_loss"] + log["atom_loss"] + log["atom_charge_penalty"], rel=1e-4)
    assert not torch.equal(baseline["atom_head.importance.weight"], atom["atom_head.importance.weight"])
    assert not torch.equal(baseline["atom_head.position.weight"], atom["atom_head.position.weight"])
    assert not torch.equal(baseline["model.layers.0.mlp.up_proj.weight"], atom["model.layers.0.mlp.up_proj.weight"])
    assert not torch.equal(baseline["model.embed_tokens.weight"], atom["model.embed_tokens.weight"])


def test_config_parses_sft_and_atom_flags(tmp_path):
    parser = T.HfArgumentParser(AtomSFTConfig)
    (args,) = parser.parse_args_into_dataclasses(
        [
            "--output_dir",
            str(tmp_path),
            "--max_length",
            "64",
            "--atom_weight",
            "0.3",
            "--report_to",
            "none",
            "--use_cpu",
            "true",
        ]
    )
    assert isinstance(args, SFTConfig) and args.max_length == 64 and args.atom_config.weight == 0.3
    with pytest.raises(ValueError, match="--atom_weight"):
        AtomSFTConfig(output_dir=str(tmp_path), use_cpu=True, atom_weight=float("inf"))


def test_impossible_combinations_raise(tmp_path):
    with pytest.raises(TypeError, match="Put the mixin first"):
        from hf_atom import AtomTrainerMixin

        class WrongOrder(SFTTrainer, AtomTrainerMixin):
            pass

    with pytest.raises(TypeError, match="AtomTrainer is the plain-Trainer case"):
        from hf_atom import AtomTrainer

        class Combined(AtomTrainer, SFTTrainer):
            pass

    with pytest.raises(ValueError, match="needs arguments with the atom settings, e.g. `AtomSFTConfig`"):
        AtomSFTTrainer(model=llama_lm(), args=SFTConfig(output_dir=str(tmp_path), report_to="none", use_cpu=True))
    # Trainer takes model objects only, so AtomTrainer does too (AtomSFTTrainer loads names as trl does: test_drop_in).
    from hf_atom import AtomTrainingArguments

    with pytest.raises(ValueError, match="needs a model object"):
        AtomTrainer(
            model="HuggingFaceTB/SmolLM2-135M", args=AtomTrainingArguments(output_dir=str(tmp_path), use_cpu=True)
        )
