"""AtomTrainer: drop-in for Trainer, loss scaling under accumulation, resume, logging, checkpoints, arguments."""

import json
import logging

import numpy as np
import pytest
import torch
import transformers as T
from tiny_models import bert, bert_no_dropout, gpt2_no_dropout, lm_dataset, text_dataset

import hf_atom
from hf_atom import AtomConfig, AtomTrainer, AtomTrainingArguments, with_atom


def arguments(cls, output_dir, **overrides):
    values = dict(
        output_dir=str(output_dir),
        per_device_train_batch_size=4,
        num_train_epochs=2,
        learning_rate=1e-2,
        logging_steps=1,
        save_strategy="no",
        report_to="none",
        use_cpu=True,
        disable_tqdm=True,
        seed=0,
    )
    values.update(overrides)
    return cls(**values)


def seeded(build, seed=0):
    torch.manual_seed(seed)
    return build()


def backbone_state(model):
    return {n: p.detach().clone() for n, p in model.named_parameters() if not n.startswith("atom_head")}


def test_lambda_zero_is_exactly_trainer(tmp_path):
    data = text_dataset(16)
    plain = seeded(bert)  # dropout on: the RNG stream must match too
    T.Trainer(model=plain, args=arguments(T.TrainingArguments, tmp_path / "a"), train_dataset=data).train()
    atom_model = seeded(bert)
    trainer = AtomTrainer(
        model=atom_model, args=arguments(AtomTrainingArguments, tmp_path / "b", atom_weight=0.0), train_dataset=data
    )
    trainer.train()
    expected = backbone_state(plain)
    got = backbone_state(atom_model)
    assert expected.keys() == got.keys()
    assert all(torch.equal(expected[n], got[n]) for n in expected)
    # a plain model at lambda 0 is the parent's run exactly: no heads, no atom statistics
    assert type(atom_model) is type(plain) and "atom_loss" not in trainer.state.log_history[0]
    # an atom model at lambda 0 (a baseline with untrained heads): the same backbone, and the heads' statistics
    with_heads = with_atom(seeded(bert), seed=0)
    trainer = AtomTrainer(
        model=with_heads, args=arguments(AtomTrainingArguments, tmp_path / "d", atom_weight=0.0), train_dataset=data
    )
    trainer.train()
    assert all(torch.equal(expected[n], backbone_state(with_heads)[n]) for n in expected)
    assert "atom_loss" in trainer.state.log_history[0]

    moved = seeded(bert)
    AtomTrainer(
        model=moved, args=arguments(AtomTrainingArguments, tmp_path / "c", atom_weight=1.0), train_dataset=data
    ).train()
    changed = backbone_state(moved)
    assert any(not torch.equal(expected[n], changed[n]) for n in expected)


@pytest.mark.parametrize("family, atom_weight", [("bert", 0.0), ("gpt2", 0.0), ("bert", 0.5)])
def test_gradient_accumulation_matches_large_batch(tmp_path, family, atom_weight):
    """k accumulation steps on b/k equal one step on b for the task loss (a classifier's mean, and a causal LM's
    token mean); for lambda > 0 pairs come from micro-batches, so only lambda = 0 must match exactly."""
    build, data = (bert_no_dropout, text_dataset(8)) if family == "bert" else (gpt2_no_dropout, lm_dataset(8))
    results = []
    for batch, steps in [(4, 1), (2, 2)]:
        model = with_atom(seeded(build), seed=0)  # heads at lambda 0 too: their statistics are compared
        trainer = AtomTrainer(
            model=model,
            args=arguments(
                AtomTrainingArguments,
                tmp_path / f"ga{steps}",
                per_device_train_batch_size=batch,
                gradient_accumulation_steps=steps,
                max_steps=1,
                optim="sgd",
                learning_rate=0.5,
                atom_weight=atom_weight,
            ),
            train_dataset=data,
        )
        trainer.train()
        results.append((backbone_state(model), trainer.state.log_history[0]))
    (large, large_log), (accumulated, accumulated_log) = results
    assert large_log["atom_pairs"] == 6 and accumulated_log["atom_pairs"] == 1  # C(4,2) vs C(2,2) per micro-batch
    if atom_weight == 0:
        assert large_log["loss"] == pytest.approx(accumulated_log["loss"], rel=1e-5)
        for name in large:
            assert torch.allclose(large[name], accumulated[name], atol=1e-6, rtol=1e-5), name
        assert large_log["task_loss"] == pytest.approx(accumulated_log["task_loss"], rel=1e-5)
    else:
        assert any(not torch.allclose(large[n], accumulated[n], atol=1e-6) for n in large)


def test_resume_reaches_the_same_parameters(tmp_path):
    data = text_dataset(24)
    common = dict(num_train_epochs=1, save_strategy="steps", save_steps=3, atom_weight=0.5, atom_weight_warmup_steps=2)
    full_model = seeded(bert)
    AtomTrainer(
        model=full_model, args=arguments(AtomTrainingArguments, tmp_path / "full", **common), train_dataset=data
    ).train()
    assert (tmp_path / "full" / "checkpoint-3").is_dir()

    resumed_model = seeded(bert)
    AtomTrainer(
        model=resumed_model, args=arguments(AtomTrainingArguments, tmp_path / "resumed", **common), train_dataset=data
    ).train(resume_from_checkpoint=str(tmp_path / "full" / "checkpoint-3"))
    full = dict(full_model.named_parameters())
    resumed = dict(resumed_model.named_parameters())
    assert any(n.startswith("atom_head") for n in full)
    for name, param in full.items():
        assert torch.equal(param, resumed[name]), name


def test_checkpoint_carries_heads_settings_and_model_card(tmp_path):
    data = text_dataset(8)
    args = arguments(
        AtomTrainingArguments,
        tmp_path,
        max_steps=2,
        save_strategy="steps",
        save_steps=2,
        atom_weight=0.3,
        atom_softening=0.25,
        atom_position_dim=6,
    )
    trainer = AtomTrainer(model=seeded(bert), args=args, train_dataset=data)
    trainer.train()
    checkpoint = tmp_path / "checkpoint-2"
    config = json.loads((checkpoint / "config.json").read_text())
    assert config["atom_config"]["weight"] == 0.3 and config["atom_config"]["softening"] == 0.25
    card = (checkpoint / "README.md").read_text()
    assert "hf_atom" in card and "2210.03728" in card and "| `softening` | `0.25` |" in card
    reloaded = hf_atom.AutoAtomModel.from_pretrained(checkpoint)
    assert reloaded.atom_head.position.out_features == 6
    for name, param in trainer.model.named_parameters():
        assert torch.equal(param.detach(), reloaded.get_parameter(name).detach()), name
    trainer.save_model(str(tmp_path / "final"))
    assert "hf_atom" in (tmp_path / "final" / "README.md").read_text()


def test_logs_and_clean_eval_predictions(tmp_path):
    data = text_dataset(12)
    seen = {}

    def compute_metrics(prediction):
        seen["predictions"] = prediction.predictions
        return {"accuracy": float((prediction.predictions.argmax(-1) == prediction.label_ids).mean())}

    args = arguments(
        AtomTrainingArguments,
        tmp_path,
        max_steps=3,
        eval_strategy="steps",
        eval_steps=3,
        per_device_eval_batch_size=4,
        atom_weight=0.2,
    )
    trainer = AtomTrainer(
        model=seeded(bert), args=args, train_dataset=data, eval_dataset=data, compute_metrics=compute_metrics
    )
    trainer.train()
    train_log = trainer.state.log_history[0]
    for key in (
        "loss",
        "task_loss",
        "atom_loss",
        "atom_charge_penalty",
        "atom_weight",
        "atom_pairs",
        "atom_mean_abs_q",
        "atom_q_positive",
        "atom_q_negative",
        "atom_q_neutral",
        "atom_mean_distance",
        "atom_mean_radius",
    ):
        assert key in train_log, key
    assert train_log["atom_q_positive"] + train_log["atom_q_negative"] + train_log["atom_q_neutral"] == pytest.approx(
        1
    )
    expected_loss = train_log["task_loss"] + 0.2 * (train_log["atom_loss"] + train_log["atom_charge_penalty"])
    assert train_log["loss"] == pytest.approx(expected_loss, rel=1e-4)
    eval_log = next(log for log in trainer.state.log_history if "eval_loss" in log)
    assert "eval_atom_loss" in eval_log and "eval_accuracy" in eval_log
    assert eval_log["eval_loss"] == pytest.approx(eval_log["eval_task_loss"], rel=1e-5)
    assert isinstance(seen["predictions"], np.ndarray) and seen["predictions"].shape == (12, 3)
    # predict() with explicit ignore_keys also stays clean
    output = trainer.predict(data, ignore_keys=[])
    assert isinstance(output.predictions, np.ndarray) and output.predictions.shape == (12, 3)


def test_bf16_mixed_precision_trains_with_float32_atom_loss(tmp_path):
    args = arguments(AtomTrainingArguments, tmp_path, max_steps=3, bf16=True, atom_weight=0.5)
    model = seeded(bert)
    before = backbone_state(model)
    trainer = AtomTrainer(model=model, args=args, train_dataset=text_dataset(12))
    trainer.train()
    logs = [log for log in trainer.state.log_history if "atom_loss" in log]
    assert len(logs) == 3 and all(np.isfinite(log["loss"]) and log["atom_loss"] > 0 for log in logs)
    after = backbone_state(model)
    assert any(not torch.equal(before[n], after[n]) for n in before)


def test_charge_constraint_can_be_switched_off(tmp_path):
    args = arguments(AtomTrainingArguments, tmp_path, max_steps=1, atom_charge_constraint="none")
    trainer = AtomTrainer(model=seeded(bert), args=args, train_dataset=text_dataset(8))
    trainer.train()
    log = trainer.state.log_history[0]
    assert log["atom_charge_penalty"] == 0
    assert log["loss"] == pytest.approx(log["task_loss"] + 0.1 * log["atom_loss"], rel=1e-4)


def test_weight_warmup():
    args = AtomTrainingArguments(output_dir="unused", atom_weight=0.4, atom_weight_warmup_steps=4, report_to="none")
    assert [args.atom_weight_at(s) for s in (0, 2, 4, 10)] == [0.0, 0.2, 0.4, 0.4]


def test_batch_of_one_gives_zero_atom_loss_and_one_warning(tmp_path, caplog):
    args = arguments(
        AtomTrainingArguments,
        tmp_path,
        per_device_train_batch_size=1,
        max_steps=3,
        atom_weight=1.0,
        atom_charge_constraint="none",
    )
    trainer = AtomTrainer(model=seeded(bert), args=args, train_dataset=text_dataset(4))
    with caplog.at_level(logging.WARNING, logger="hf_atom"):
        trainer.train()
    logs = [log for log in trainer.state.log_history if "atom_loss" in log]
    assert len(logs) == 3 and all(log["atom_loss"] == 0 and log["atom_pairs"] == 0 for log in logs)
    assert all(np.isfinite(log["loss"]) for log in logs)
    assert sum("fewer than two samples" in r.getMessage() for r in caplog.records) == 1


# ---------------------------------------------------------------------------------------------------------
# Arguments and set-up errors
# ---------------------------------------------------------------------------------------------------------


def test_hf_argument_parser_cli_json_yaml(tmp_path):
    parser = T.HfArgumentParser(AtomTrainingArguments)
    (args,) = parser.parse_args_into_dataclasses(
        [
            "--output_dir",
            str(tmp_path),
            "--atom_weight",
            "0.3",
            "--atom_step",
            "literal",
            "--atom_norm_ord",
            "inf",
            "--atom_position_dim",
            "8",
            "--report_to",
            "none",
        ]
    )
    assert args.atom_weight == 0.3 and args.atom_step == "literal" and args.atom_norm_ord == float("inf")
    assert args.atom_config == AtomConfig(weight=0.3, step="literal", norm_ord=float("inf"), position_dim=8)
    (tmp_path / "args.json").write_text(
        json.dumps({"output_dir": str(tmp_path), "atom_weight": 0.0, "report_to": "none"})
    )
    (from_json,) = parser.parse_json_file(str(tmp_path / "args.json"))
    assert from_json.atom_weight == 0.0
    (tmp_path / "args.yaml").write_text(f"output_dir: {tmp_path}\natom_softening: 0.5\nreport_to: none\n")
    (from_yaml,) = parser.parse_yaml_file(str(tmp_path / "args.yaml"))
    assert from_yaml.atom_softening == 0.5
    with pytest.raises(SystemExit):
        parser.parse_args_into_dataclasses(["--output_dir", str(tmp_path), "--atom_step", "sideways"])


@pytest.mark.parametrize(
    "overrides, match",
    [
        ({"atom_weight": -1.0}, "--atom_weight"),
        ({"atom_softening": 0.0}, "--atom_softening"),
        ({"atom_step": "sideways"}, "--atom_step"),
        ({"atom_token_reduction": "max"}, "--atom_token_reduction"),
        ({"atom_position_norm": "cube"}, "--atom_position_norm"),
        ({"atom_hidden_layer": "last"}, "--atom_hidden_layer"),
        ({"atom_weight_warmup_steps": -1}, "--atom_weight_warmup_steps"),
        ({"atom_charge_target": 3.0}, "--atom_charge_target"),
    ],
)
def test_bad_arguments_raise_at_parsing(overrides, match):
    with pytest.raises(ValueError, match=match):
        AtomTrainingArguments(output_dir="unused", report_to="none", **overrides)


def test_unknown_hidden_layer_raises_at_model_set_up(tmp_path):
    with pytest.raises(ValueError, match="hidden_layer=9"):
        AtomTrainer(model=bert(), args=arguments(AtomTrainingArguments, tmp_path, atom_hidden_layer=9))


def test_plain_training_arguments_are_refused(tmp_path):
    with pytest.raises(ValueError, match="AtomTrainingArguments"):
        AtomTrainer(model=bert(), args=arguments(T.TrainingArguments, tmp_path))


def test_atom_model_keeps_heads_and_conflicts_are_reported(tmp_path):
    model = with_atom(bert(), AtomConfig(position_dim=5))
    trainer = AtomTrainer(model=model, args=arguments(AtomTrainingArguments, tmp_path, atom_softening=0.7))
    assert trainer.model.atom_head.position.out_features == 5
    assert trainer.model.atom_config.softening == 0.7  # loss settings of the arguments are recorded
    with pytest.raises(ValueError, match="atom_position_dim=7.*has 5"):
        AtomTrainer(model=model, args=arguments(AtomTrainingArguments, tmp_path, atom_position_dim=7))


def test_peft_model_without_heads_is_refused(tmp_path):
    peft = pytest.importorskip("peft")
    lora = peft.LoraConfig(r=2, target_modules=["query", "value"], task_type="SEQ_CLS")
    with pytest.raises(ValueError, match="hf_atom.get_peft_model"):
        AtomTrainer(model=peft.get_peft_model(bert(), lora), args=arguments(AtomTrainingArguments, tmp_path))
    model = hf_atom.get_peft_model(with_atom(bert()), lora)
    trainer = AtomTrainer(
        model=model, args=arguments(AtomTrainingArguments, tmp_path, max_steps=2), train_dataset=text_dataset(8)
    )
    before = {n: p.detach().clone() for n, p in model.named_parameters() if "atom_head" in n and p.requires_grad}
    trainer.train()
    after = dict(model.named_parameters())
    assert before and any(not torch.equal(before[n], after[n]) for n in before)


# ---------------------------------------------------------------------------------------------------------
# Composability (AtomTrainerMixin), non-finite losses, card, pairs, gathering (issues #11, #13)
# ---------------------------------------------------------------------------------------------------------


def test_eval_pairs_are_per_micro_batch_with_the_minimum(tmp_path):
    data = text_dataset(10)  # eval batches of 4, 4, 2 -> 6, 6, 1 pairs
    args = arguments(AtomTrainingArguments, tmp_path, max_steps=1, per_device_eval_batch_size=4)
    trainer = AtomTrainer(model=seeded(bert), args=args, train_dataset=data, eval_dataset=data)
    metrics = trainer.evaluate()
    assert metrics["eval_atom_pairs"] == pytest.approx((6 + 6 + 1) / 3)
    assert metrics["eval_atom_pairs_min"] == 1 and isinstance(metrics["eval_atom_pairs_min"], int)


def test_non_finite_atom_loss_stops_before_the_weights(tmp_path):
    model = with_atom(seeded(bert), AtomConfig(weight=0.1))
    with torch.no_grad():
        model.atom_head.position.weight.fill_(float("inf"))  # p becomes NaN after the sphere normalisation
    args = arguments(AtomTrainingArguments, tmp_path, max_steps=2, atom_weight=0.1)
    trainer = AtomTrainer(model=model, args=args, train_dataset=text_dataset(8))
    before = backbone_state(model)
    with pytest.raises((FloatingPointError, ValueError), match=r"(step 0.*atomic loss L_A = nan|`p` has NaN)"):
        trainer.train()
    after = backbone_state(model)
    assert all(torch.equal(before[name], after[name]) for name in before)


def test_non_finite_check_names_step_and_part(tmp_path):
    trainer = AtomTrainer(model=seeded(bert), args=arguments(AtomTrainingArguments, tmp_path))
    atom = trainer.atom_objective(torch.rand(3, 4) * 2 - 1, torch.randn(3, 4, 5))
    atom.loss = torch.tensor(float("inf"))
    with pytest.raises(FloatingPointError, match=r"step 0: atomic loss L_A = inf"):
        atom.check_finite(torch.tensor(1.0), step=trainer.state.global_step)
    with pytest.raises(FloatingPointError, match=r"task loss = nan"):
        trainer.atom_objective(torch.zeros(2, 1), torch.ones(2, 1, 1)).check_finite(torch.tensor(float("nan")))


def test_gathering_follows_the_trainers_process_count(tmp_path, monkeypatch):
    """A multi-process launch that the Trainer does not run as data parallel must not pair copies of samples."""
    import hf_atom.regularizer as regularizer

    calls = []
    monkeypatch.setattr(regularizer, "is_distributed", lambda: True)  # e.g. torchrun on CPU without --use_cpu
    monkeypatch.setattr(regularizer, "cross_process_atom_loss", lambda *a: calls.append(a))
    args = arguments(AtomTrainingArguments, tmp_path, max_steps=1, atom_gather_across_processes=True)
    trainer = AtomTrainer(model=seeded(bert), args=args, train_dataset=text_dataset(8))
    assert trainer.accelerator.num_processes == 1
    trainer.train()
    assert calls == []


def test_model_card_keeps_the_trainer_card_and_adds_the_atom_section(tmp_path):
    data = text_dataset(8)
    args = arguments(AtomTrainingArguments, tmp_path, max_steps=1, atom_softening=0.25)
    trainer = AtomTrainer(model=seeded(bert), args=args, train_dataset=data, eval_dataset=data)
    trainer.train()
    trainer.save_model()
    trainer.create_model_card(model_name="tiny-atom-bert", dataset="tiny-text", tags=["demo"])
    card = (tmp_path / "README.md").read_text()
    for trainer_part in ("tiny-atom-bert", "Training hyperparameters", "learning_rate: 0.01", "tiny-text"):
        assert trainer_part in card, trainer_part
    for atom_part in ("## Atom modeling", "2210.03728", "| `softening` | `0.25` |", "- hf_atom", "- demo"):
        assert atom_part in card, atom_part
    trainer.create_model_card(model_name="tiny-atom-bert")  # again: one atom section, not two
    assert (tmp_path / "README.md").read_text().count("## Atom modeling") == 1


def test_mixin_after_a_trainer_with_its_own_compute_loss_is_refused():
    class Parent(T.Trainer):
        def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
            return super().compute_loss(model, inputs, return_outputs, num_items_in_batch)

    with pytest.raises(TypeError, match=r"Put the mixin first: `class WrongOrder\(AtomTrainerMixin, Parent\)`"):

        class WrongOrder(Parent, hf_atom.AtomTrainerMixin):
            pass

    with pytest.raises(TypeError, match=r"AtomTrainer is the plain-Trainer case.*AtomTrainerMixin, Parent"):

        class AtomOnTop(AtomTrainer, Parent):
            pass


def test_a_parent_without_a_gradient_forward_is_refused(tmp_path):
    class DetachedLoss(T.Trainer):
        def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
            with torch.no_grad():
                outputs = model(**inputs)
            loss = outputs.loss.detach().requires_grad_()
            return (loss, outputs) if return_outputs else loss

    class AtomDetached(hf_atom.AtomTrainerMixin, DetachedLoss):
        pass

    class TwoForwards(T.Trainer):
        def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
            return model(**inputs).loss + model(**inputs).loss

    class AtomTwo(hf_atom.AtomTrainerMixin, TwoForwards):
        pass

    args = arguments(AtomTrainingArguments, tmp_path, max_steps=1)
    with pytest.raises(RuntimeError, match="DetachedLoss.compute_loss ran no forward pass with gradients"):
        AtomDetached(model=seeded(bert), args=args, train_dataset=text_dataset(4)).train()
    with pytest.raises(RuntimeError, match="TwoForwards.compute_loss ran 2 forward passes with gradients"):
        AtomTwo(model=seeded(bert), args=args, train_dataset=text_dataset(4)).train()
