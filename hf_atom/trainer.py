# Copyright 2026 The hf_atom Authors. Licensed under the Apache License, Version 2.0.
"""`AtomTrainer`: `transformers.Trainer` with `loss = task_loss + lambda * L_A` (ATOM_SPEC D6).

Swap `Trainer` -> `AtomTrainer` and `TrainingArguments` -> `AtomTrainingArguments`; everything else (datasets,
collators, callbacks, `compute_metrics`, checkpoints, `accelerate launch` / `torchrun` with DDP, FSDP or DeepSpeed)
is unchanged.

Loss scaling (why it is right):

- The task loss is the model's per-micro-batch mean and `training_step` divides it by the number of gradient
  accumulation steps (`model_accepts_loss_kwargs = False`, `loss_is_scaled_for_ga = False`). In transformers 5 most
  models take `**kwargs`, so Trainer would otherwise assume every model normalises by `num_items_in_batch` and skip
  that division: a sequence-classification loss is then k times too large with k accumulation steps, and doubled
  under 2-process DDP by `average_tokens_across_devices` (checked, DESIGN.md). For causal LMs this means the task
  loss is the mean of micro-batch token means (exact when micro-batches hold equal numbers of label tokens).
- L_A is a per-micro-batch mean too, so it is scaled exactly like the task loss.
- Pairs come from each process's micro-batch, never from the accumulated batch; with
  `atom_gather_across_processes` from the micro-batches of all processes (see `hf_atom.distributed`).
"""

from __future__ import annotations

from typing import Any, Callable, Optional, Union

import torch
from torch import nn
from transformers import Trainer
from transformers.utils import logging

from .distributed import cross_process_atom_loss, is_distributed
from .loss import charge_target_penalty
from .model_card import write_model_card
from .modeling import ATOM_OUTPUT_KEYS, AtomMixin, with_atom
from .tokens import TokenSelector
from .training_args import LOSS_FIELDS, AtomTrainingArguments

logger = logging.get_logger(__name__)

__all__ = ["AtomTrainer"]

# One row of per-step statistics; averaged and logged as f"{name}" (train) or f"eval_{name}".
METRIC_NAMES = (
    "task_loss",
    "atom_loss",
    "atom_charge_penalty",
    "atom_pairs",
    "atom_mean_abs_q",
    "atom_q_positive",
    "atom_q_negative",
    "atom_q_neutral",
    "atom_mean_distance",
    "atom_mean_radius",
)


def _unwrap_peft(model: nn.Module) -> nn.Module:
    get_base_model = getattr(model, "get_base_model", None)
    return get_base_model() if callable(get_base_model) else model


class AtomTrainer(Trainer):
    """A `Trainer` that adds lambda * L_A (plus the charge constraint) to the task loss and logs its parts.

    Args:
        model (`PreTrainedModel`, *optional*): a plain transformers model (atom heads are attached, seeded with
            `args.seed`, without touching the global RNG) or an atom model (`hf_atom.with_atom`, `AutoAtomModel`).
            A PEFT model must wrap an atom model (`hf_atom.get_peft_model`).
        args (`AtomTrainingArguments`): the usual training arguments plus the `atom_*` settings.
        token_selector (`callable`, *optional*): forwarded to `with_atom` for models outside the built-in token table.
        *trainer_args, **kwargs: everything `transformers.Trainer` takes.

    Logged (train, and `eval_`-prefixed in evaluation): `task_loss`, `atom_loss` (L_A), `atom_charge_penalty`,
    `atom_weight` (lambda at that step), `atom_pairs` (pairs per micro-batch), `atom_mean_abs_q`,
    `atom_q_positive` / `atom_q_negative` / `atom_q_neutral` (share of valid tokens with q above
    `atom_stats_threshold`, below minus it, or in between), `atom_mean_distance` (mean dbar over pairs) and
    `atom_mean_radius` (mean r). Evaluation's `eval_loss` is the task loss alone, comparable with a baseline run.
    """

    def __init__(
        self,
        model: Optional[nn.Module] = None,
        args: Optional[AtomTrainingArguments] = None,
        *trainer_args,
        token_selector: Optional[TokenSelector] = None,
        model_init: Optional[Callable[..., nn.Module]] = None,
        **kwargs,
    ):
        if args is None:
            args = AtomTrainingArguments(output_dir="trainer_output")
        if not isinstance(args, AtomTrainingArguments):
            raise ValueError(
                f"AtomTrainer needs `hf_atom.AtomTrainingArguments`, got {type(args).__name__}. It takes every "
                "TrainingArguments field plus the atom settings (e.g. --atom_weight)."
            )
        self._token_selector = token_selector
        if model is not None:
            model = self._prepare_atom_model(model, args)
        if model_init is not None:
            user_init = model_init
            model_init = lambda *a: self._prepare_atom_model(user_init(*a), self.args)  # noqa: E731
        super().__init__(model, args, *trainer_args, model_init=model_init, **kwargs)
        # Per-micro-batch mean losses, scaled for accumulation by training_step (see the module docstring).
        self.model_accepts_loss_kwargs = False
        self.atom_config = self.args.atom_config  # the loss settings, validated once
        self.atom_loss_fn = self.atom_config.loss_module(with_charge_penalty=False)  # the charge term is added here
        self._atom_metrics: dict[str, list[torch.Tensor]] = {"train": [], "eval": []}
        self._warned_no_pairs = False

    # -- set-up -----------------------------------------------------------------------------------------

    @property
    def loss_is_scaled_for_ga(self) -> bool:  # read by Trainer.training_step
        # A user `compute_loss_func` normalises by num_items_in_batch itself; our own losses are micro-batch means.
        return self.compute_loss_func is not None

    def _prepare_atom_model(self, model: nn.Module, args: AtomTrainingArguments) -> nn.Module:
        base = _unwrap_peft(model)
        if base is not model and not isinstance(base, AtomMixin):
            raise ValueError(
                "This PEFT model wraps a model without atom heads. Attach them first, then wrap: "
                "`hf_atom.get_peft_model(hf_atom.with_atom(model), peft_config)`."
            )
        if isinstance(base, AtomMixin):
            current = base.atom_config
            conflicts = {
                name: (value, getattr(current, name))
                for name, value in args.atom_head_overrides.items()
                if getattr(current, name) != value
            }
            if conflicts:
                details = ", ".join(f"--atom_{n}={v!r} but the model has {c!r}" for n, (v, c) in conflicts.items())
                raise ValueError(
                    f"The atom model's heads were built with other settings: {details}. Leave these arguments unset "
                    "to keep the model's heads, or pass a plain model to get new ones."
                )
            if base is not model and not any(p.requires_grad for p in base.atom_head.parameters()):
                logger.warning(
                    "The atom heads of this PEFT model are frozen, so they will neither train nor be saved with the "
                    "adapter. Use `hf_atom.get_peft_model` (it adds `atom_head` to `modules_to_save`)."
                )
            # The loss settings of the arguments apply; record them on the model so checkpoints carry them.
            loss_settings = {name: getattr(args, arg) for arg, name in LOSS_FIELDS.items()}
            base.config.atom_config = current.replace(**loss_settings).to_dict()
            if self._token_selector is not None:
                base.atom_token_selector = self._token_selector
            return model
        # Seeded heads that leave the global RNG untouched, so lambda = 0 reproduces Trainer exactly.
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(args.seed)
            return with_atom(model, args.atom_config, token_selector=self._token_selector)

    # -- loss ---------------------------------------------------------------------------------------------

    def compute_loss(
        self,
        model: nn.Module,
        inputs: dict[str, Union[torch.Tensor, Any]],
        return_outputs: bool = False,
        num_items_in_batch: Optional[Union[torch.Tensor, int]] = None,
    ):
        task_loss, outputs = super().compute_loss(
            model, inputs, return_outputs=True, num_items_in_batch=num_items_in_batch
        )
        if not isinstance(outputs, dict) or "atom_q" not in outputs:
            raise ValueError(
                "The model returned no `atom_q`: AtomTrainer needs an atom model (pass a plain model and it attaches "
                "the heads, or use `hf_atom.with_atom`)."
            )
        q, p, mask = outputs["atom_q"], outputs["atom_p"], outputs["atom_mask"]
        summaries = self.atom_loss_fn.summaries(q, p, mask)
        if self.args.atom_gather_across_processes and is_distributed():
            atom_objective, parts = cross_process_atom_loss(self.atom_loss_fn, summaries)
        else:
            parts = self.atom_loss_fn.loss_from_summaries(summaries)
            atom_objective = parts.loss
        config = self.atom_config
        if config.uses_charge_constraint:
            charge = charge_target_penalty(q, mask, target=config.charge_target)
            atom_objective = atom_objective + config.charge_weight * charge
        else:
            charge = torch.zeros((), device=q.device)

        training = model.training
        self._record("train" if training else "eval", task_loss, parts, charge, q, mask)
        if training:
            weight = self.args.atom_weight_at(self.state.global_step)
            if self.loss_is_scaled_for_ga:  # the task loss is already divided over the accumulated batch
                weight = weight / self.current_gradient_accumulation_steps
            # Always added, even for lambda = 0: the heads then get exact zero gradients (DDP needs every parameter
            # to take part) and every other gradient is bit-identical to Trainer's.
            loss = task_loss + weight * atom_objective.to(task_loss.dtype)
        else:
            loss = task_loss  # eval_loss stays comparable with a baseline run
        return (loss, outputs) if return_outputs else loss

    @torch.no_grad()
    def _record(self, mode: str, task_loss, parts, charge, q, mask) -> None:
        q = q.detach().float()
        valid_tokens = mask.sum().clamp(min=1)
        threshold = self.args.atom_stats_threshold
        positive = ((q > threshold) & mask).sum() / valid_tokens
        negative = ((q < -threshold) & mask).sum() / valid_tokens
        pair_count = parts.pair_mask.sum().clamp(min=1)
        valid_samples = parts.valid.sum().clamp(min=1)
        row = torch.stack(
            [
                task_loss.detach().float(),
                parts.loss.detach().float(),
                charge.detach().float(),
                parts.num_pairs.float(),
                (q.abs() * mask).sum() / valid_tokens,
                positive,
                negative,
                1.0 - positive - negative,
                (parts.pair_distances.detach() * parts.pair_mask).sum() / pair_count,
                (parts.r.detach() * parts.valid).sum() / valid_samples,
                torch.tensor(float(q.shape[0]), device=q.device),  # batch size: weights eval averages
            ]
        )
        self._atom_metrics[mode].append(row)

    # -- logging, evaluation, saving ------------------------------------------------------------------------

    def log(self, logs: dict[str, float], start_time: Optional[float] = None) -> None:
        # evaluate() logs in eval mode, with its metric_key_prefix (eval_, test_, ...) on every key
        mode = "train" if self.model.training else "eval"
        prefix = ""
        if mode == "eval":
            prefix = next((key[: -len("runtime")] for key in logs if key.endswith("_runtime")), "eval_")
        rows = self._atom_metrics[mode]
        if rows:
            stacked = torch.stack(rows)
            # Train: the mean over steps, like Trainer's loss. Eval: the mean over samples, like eval_loss.
            weights = stacked[:, -1] if mode == "eval" else torch.ones_like(stacked[:, -1])
            means = (stacked[:, :-1] * weights[:, None]).sum(dim=0) / weights.sum()
            summary = torch.cat([means, stacked[:, 3].min()[None]])
            if self.accelerator.num_processes > 1:
                summary = self.accelerator.reduce(summary, reduction="mean")
            values = summary.tolist()
            logs.update({prefix + name: round(value, 6) for name, value in zip(METRIC_NAMES, values)})
            if mode == "train":
                logs["atom_weight"] = self.args.atom_weight_at(self.state.global_step)
            # A short last eval batch is expected; a training micro-batch without pairs is worth one warning.
            if mode == "train" and values[-1] == 0 and not self._warned_no_pairs:
                self._warned_no_pairs = True
                logger.warning(
                    "A micro-batch had fewer than two samples with valid tokens: its atomic loss is 0 (ATOM_SPEC D4). "
                    "Use a larger per-device batch size, or --atom_gather_across_processes under data parallelism."
                )
            rows.clear()
        super().log(logs, start_time)

    def predict(self, *args, **kwargs):
        output = super().predict(*args, **kwargs)
        self._atom_metrics["eval"].clear()  # predict() does not log: its statistics must not reach the next eval
        return output

    def prediction_step(self, model, inputs, prediction_loss_only, ignore_keys=None):
        # The atom outputs never reach compute_metrics, whatever the config or the caller's ignore_keys say.
        if ignore_keys is None:
            ignore_keys = list(getattr(self.model.config, "keys_to_ignore_at_inference", None) or ["cache"])
        ignore_keys = list(ignore_keys) + [key for key in ATOM_OUTPUT_KEYS if key not in ignore_keys]
        return super().prediction_step(model, inputs, prediction_loss_only, ignore_keys=ignore_keys)

    def _save(self, output_dir: Optional[str] = None, state_dict=None):
        super()._save(output_dir, state_dict=state_dict)
        output_dir = output_dir if output_dir is not None else self.args.output_dir
        write_model_card(output_dir, _unwrap_peft(self.model), self.args)

    def create_model_card(self, *args, **kwargs) -> None:
        """Writes hf_atom's model card (the paper, the atom settings, how to load) to `args.output_dir`."""
        if self.is_world_process_zero():
            write_model_card(self.args.output_dir, _unwrap_peft(self.model), self.args)

    # -- resuming (hf_atom.checkpoints) --------------------------------------------------------------------------

    def train(self, resume_from_checkpoint: Optional[Union[str, bool]] = None, *args, **kwargs):
        """`Trainer.train`, except that `resume_from_checkpoint=True` resumes from the newest COMPLETE checkpoint.

        A run killed while saving leaves its newest `checkpoint-N` incomplete (e.g. without `trainer_state.json`), on
        which `Trainer` crashes. Here such folders are skipped with a warning naming them and what they lack; a
        checkpoint path that is incomplete raises a `ValueError` saying so. See `hf_atom.checkpoints`.
        """
        if resume_from_checkpoint is not None and resume_from_checkpoint is not False:
            from .checkpoints import resolve_resume_checkpoint

            resume_from_checkpoint = resolve_resume_checkpoint(
                resume_from_checkpoint,
                self.args.output_dir,
                require_optimizer=not self.args.save_only_model,
                world_size=self.args.world_size,
                logger=logger,
            )
        return super().train(resume_from_checkpoint, *args, **kwargs)
