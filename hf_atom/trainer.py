# Copyright 2026 The hf_atom Authors. Licensed under the Apache License, Version 2.0.
"""Atom modeling in any `transformers.Trainer`: `loss = task_loss + lambda * (L_A + charge term)` (docs/DESIGN.md, D6).

`AtomTrainerMixin` goes in front of any `Trainer` subclass (`class AtomSFTTrainer(AtomTrainerMixin, SFTTrainer)`);
`AtomTrainer` is the plain-`Trainer` case. Swap `Trainer` -> `AtomTrainer` and `TrainingArguments` ->
`AtomTrainingArguments`; everything else (datasets, collators, callbacks, `compute_metrics`, checkpoints,
`accelerate launch` / `torchrun`) is unchanged.

The atom term comes from the SAME forward pass as the task loss, whatever the parent's `compute_loss` does: while it
runs, forward hooks on the atom model (and on its backbone, for trainers that run the backbone themselves, like trl's
fused LM head) capture the pass that has gradients. A parent that runs no such pass, or several, gets a clear error
instead of a silently missing atom term.

Loss scaling (why it is right):

- `AtomTrainer`: Trainer's own scaling. A model whose loss normalises by `num_items_in_batch` (a causal LM's token
  mean) gets it, and `training_step` does not divide again, so lambda = 0 reproduces Trainer's loss exactly. One
  deliberate difference: Trainer treats every model whose forward takes `**kwargs` (most of transformers 5) as one
  that normalises by `num_items_in_batch`, so a classifier's loss, which ignores it, comes out k times too large
  with k accumulation steps (checked on transformers 5). Here such a model's per-micro-batch mean is divided by the
  accumulation steps instead (`loss_uses_num_items`).
- Other parents keep their own scaling; the atom term, a per-micro-batch mean, is divided by the accumulation steps
  exactly when the parent's loss is already scaled for accumulation (Trainer's own rule).
- Pairs come from each process's micro-batch, never from the accumulated batch; with `atom_gather_across_processes`
  from the micro-batches of all the trainer's processes (see `hf_atom.distributed`).
"""

from __future__ import annotations

import functools
import inspect
import os
from typing import Any

import torch
from torch import nn
from transformers import Trainer, TrainerState
from transformers.trainer_utils import TrainOutput
from transformers.utils import logging

from .atom_logging import AtomMetricsBuffer
from .checkpoints import TRAINER_STATE_NAME, final_train_metrics, is_finished_run, resolve_resume_checkpoint
from .configuration import HEAD, AtomConfig
from .forward_capture import capture_atom_forwards, check_compute_loss_order
from .memory import check_memory_processes, load_memory, save_memory
from .model_card import add_atom_section
from .modeling import ATOM_OUTPUT_KEYS, AtomMixin, with_atom
from .peft_utils import add_atom_head_to_peft_config
from .regularizer import AtomObjective
from .tokens import TokenSelector
from .training_args import AtomArgumentsMixin, AtomTrainingArguments

logger = logging.get_logger(__name__)

__all__ = ["AtomTrainer", "AtomTrainerMixin"]


def _unwrap_peft(model: nn.Module) -> nn.Module:
    get_base_model = getattr(model, "get_base_model", None)
    return get_base_model() if callable(get_base_model) else model


class AtomTrainerMixin:
    """Adds lambda * (L_A + charge term) to the loss of any `Trainer` subclass and logs its parts.

    Use it first in the bases: `class MyTrainer(AtomTrainerMixin, SomeTrainer)`, with arguments made by
    `hf_atom.atom_arguments_class(SomeTrainerConfig)`.

    Args:
        model (`PreTrainedModel`, *optional*): a plain transformers model (atom heads are attached, seeded with
            `args.seed`, without touching the global RNG) or an atom model (`hf_atom.with_atom`, `AutoAtomModel`).
            A PEFT model must wrap an atom model (`hf_atom.get_peft_model`). With `atom_weight=0` a plain model gets
            no heads: the run is the parent trainer's exactly (pass an atom model to log untrained heads' statistics).
        args: the parent trainer's arguments plus the `atom_*` settings (e.g. `AtomTrainingArguments`).
        token_selector (`callable`, *optional*): forwarded to `with_atom` for models outside the built-in token table.
        *trainer_args, **kwargs: everything the parent trainer takes.

    Logged (train, and `eval_`-prefixed in evaluation): `task_loss`, `atom_weight` (lambda at that step), every
    statistic of `hf_atom.regularizer.ATOM_STATISTICS` (name -> meaning; `atom_pairs` as the mean per micro-batch)
    and `atom_pairs_min` (fewest pairs in one micro-batch). `eval_loss` is the task loss alone.

    A non-finite task loss, L_A or charge term stops training with an error naming the step and the part, before it
    reaches the weights. The check adds no host synchronisation: it is made after the backward pass is queued, where
    Trainer's `logging_nan_inf_filter` synchronises anyway, and replaces that filter's two reads of the loss (the
    filter would only drop a loss that this check refuses). With `logging_nan_inf_filter=False` it is one
    synchronisation per step of its own (docs/DESIGN.md, "No host synchronisation per step"). Under DeepSpeed, whose
    optimizer step runs inside the backward call, the check is made before backward instead (one synchronisation).
    """

    atom_arguments_class: type = AtomTrainingArguments

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        check_compute_loss_order(cls, AtomTrainerMixin)  # at class definition: the earliest point
        mro = cls.__mro__
        cls._atom_parent_name = mro[mro.index(AtomTrainerMixin) + 1].__name__  # names the parent in errors

    def __init__(
        self,
        model: nn.Module | None = None,
        args: Any | None = None,
        *trainer_args,
        token_selector: TokenSelector | None = None,
        **kwargs,
    ):
        if args is None:
            args = self.atom_arguments_class(output_dir="trainer_output")
        if not isinstance(args, AtomArgumentsMixin):
            raise ValueError(
                f"{type(self).__name__} needs arguments with the atom settings, e.g. `{self.atom_arguments_class.__name__}`"
                f", got {type(args).__name__}. Make them with `hf_atom.atom_arguments_class({type(args).__name__})`: it "
                "takes every field of that class plus the atom settings (e.g. --atom_weight)."
            )
        self._token_selector = token_selector
        self._atom_off = False  # set when lambda = 0 and the model cannot take atom heads: the parent alone
        if isinstance(model, str):
            model = self._load_model_by_name(model, args, kwargs)
        if model is not None:
            model = self._prepare_atom_model(model, args)
        if kwargs.get("peft_config") is not None and not self._atom_off:
            # The parent applies the adapter after the heads are attached: keep them trainable and saved with it.
            kwargs["peft_config"] = add_atom_head_to_peft_config(kwargs["peft_config"])
        if kwargs.get("model_init") is not None:  # only passed on when given: not every parent takes model_init
            user_init = kwargs["model_init"]

            # `wraps` keeps the user's signature: Trainer passes `trial` only to a model_init that takes one.
            @functools.wraps(user_init)
            def model_init(*trial):
                return self._prepare_atom_model(user_init(*trial), self.args)

            kwargs["model_init"] = model_init
        super().__init__(model, args, *trainer_args, **kwargs)
        self.atom_config: AtomConfig = self.args.atom_config  # validated once, at argument parsing
        self.atom_objective = AtomObjective(self.atom_config)
        check_memory_processes(self.atom_config, self.accelerator.num_processes)
        self._atom_metrics = AtomMetricsBuffer()
        self._warned_no_pairs = False
        self._atom_pending: tuple | None = None  # (task loss, atom output, step) to check after this step's backward
        self._atom_nan_filter: bool | None = None  # the user's logging_nan_inf_filter while it is lifted for a step

    # -- set-up -----------------------------------------------------------------------------------------

    def _load_model_by_name(self, name: str, args: AtomArgumentsMixin, trainer_kwargs: dict) -> nn.Module:
        """A model given by name, loaded the way the parent trainer loads one; `Trainer` itself takes objects only."""
        raise ValueError(
            f"{type(self).__name__} needs a model object, got the name {name!r}. Load it first, e.g. "
            "`AutoModelForSequenceClassification.from_pretrained(name)`, and pass the model."
        )

    def _prepare_atom_model(self, model: nn.Module, args: AtomArgumentsMixin) -> nn.Module:
        if args.atom_config.weight == 0 and not isinstance(_unwrap_peft(model), AtomMixin):
            # lambda = 0 with a plain model: the parent trainer exactly, on the very same model (no heads, so no
            # extra parameters, checkpoint tensors or statistics); it takes whatever the parent takes.
            logger.info(
                f"atom_weight is 0: {type(self).__name__} trains this model as {self._atom_parent_name} does, without "
                "atom heads. To log the statistics of untrained heads (a baseline), pass `hf_atom.with_atom(model, "
                "seed=...)`."
            )
            self._atom_off = True
            return model
        return self._attach_atom_heads(model, args)

    def _attach_atom_heads(self, model: nn.Module, args: AtomArgumentsMixin) -> nn.Module:
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
            # The arguments' loss and training settings apply; record them on the model so checkpoints carry them.
            settings = args.atom_config.to_dict()
            base.config.atom_config = current.replace(
                **{name: value for name, value in settings.items() if name not in AtomConfig.field_names(HEAD)}
            ).to_dict()
            if self._token_selector is not None:
                base.atom_token_selector = self._token_selector
            return model
        # Seeded heads that leave the global RNG untouched: the parent's random stream is the same with or without.
        return with_atom(model, args.atom_config, token_selector=self._token_selector, seed=args.seed)

    def _atom_model(self, model: nn.Module) -> AtomMixin:
        # keep_torch_compile=False: under `torch_compile=True` the model is an OptimizedModule around the atom model
        base = _unwrap_peft(self.accelerator.unwrap_model(model, keep_torch_compile=False))
        if not isinstance(base, AtomMixin):
            raise ValueError(
                f"{type(self).__name__} needs an atom model, got {type(base).__name__}: pass a plain model and it "
                "attaches the heads, or use `hf_atom.with_atom`."
            )
        return base

    def _parent_loss_is_scaled_for_ga(self, num_items_in_batch) -> bool:
        """Trainer.training_step's rule: is the loss that compute_loss returns already divided over the accumulation?"""
        if self.loss_is_scaled_for_ga is not None:
            return bool(self.loss_is_scaled_for_ga)
        return bool(
            (self.model_accepts_loss_kwargs and num_items_in_batch is not None) or self.compute_loss_func is not None
        )

    # -- loss ---------------------------------------------------------------------------------------------

    def compute_loss(
        self,
        model: nn.Module,
        inputs: dict[str, torch.Tensor | Any],
        return_outputs: bool = False,
        num_items_in_batch: torch.Tensor | int | None = None,
    ):
        if self._atom_off:
            return super().compute_loss(
                model, inputs, return_outputs=return_outputs, num_items_in_batch=num_items_in_batch
            )
        atom_model = self._atom_model(model)
        with capture_atom_forwards(atom_model) as captured:
            result = super().compute_loss(
                model, inputs, return_outputs=return_outputs, num_items_in_batch=num_items_in_batch
            )
        task_loss, outputs = result if return_outputs else (result, None)
        training = model.training
        q, p, mask = captured.charges(atom_model, training, self._atom_parent_name)

        weight = self.atom_config.weight_at(self.state.global_step) if training else 0.0
        gather = self.atom_config.gather_across_processes and self.accelerator.num_processes > 1
        scaled_for_ga = training and self._parent_loss_is_scaled_for_ga(num_items_in_batch)
        # The logged task_loss is per micro-batch, like the atom statistics: undo the parent's share of accumulation.
        logged_task_loss = task_loss * self.current_gradient_accumulation_steps if scaled_for_ga else task_loss
        if not training or (weight == 0 and self.accelerator.num_processes == 1):
            # Only logged, never added to the loss: no graph, and no value checks, so inputs the parent accepts
            # (e.g. NaN hidden states, which Trainer's logging_nan_inf_filter handles) never raise here. lambda = 0
            # is the parent trainer exactly: the heads get no gradient, so even the global gradient norm of clipping
            # is over the same gradients. Under data parallelism the zero term is still added below, since DDP needs
            # every parameter to take part (the heads then get exact zero gradients).
            with torch.no_grad():
                atom = self.atom_objective(
                    q.detach(), p.detach(), mask, weight=weight, gather_across_processes=gather, validate=False,
                    memory_step=self.state.global_step, use_memory=training,
                )  # fmt: skip
            self._atom_metrics.add("train" if training else "eval", logged_task_loss, atom)
            return (task_loss, outputs) if return_outputs else task_loss  # eval_loss stays comparable with a baseline
        # validate=False: q and p come from the atom heads (q in [-1, 1] by construction) and the mask is boolean; a
        # NaN or inf anywhere is caught by the check after backward (training_step), which costs no host sync.
        atom = self.atom_objective(
            q, p, mask, weight=weight, gather_across_processes=gather, validate=False,
            memory_step=self.state.global_step,
        )  # fmt: skip
        self._atom_metrics.add("train", logged_task_loss, atom)
        self._atom_pending = (task_loss, atom, self.state.global_step)
        objective = atom.objective
        if scaled_for_ga:
            objective = objective / self.current_gradient_accumulation_steps
        loss = task_loss + objective.to(task_loss.dtype)
        if getattr(self, "is_deepspeed_enabled", False):
            # Under DeepSpeed the optimizer step runs INSIDE `accelerator.backward` (accelerate's engine wrapper calls
            # `engine.step()` right after `engine.backward`): the check after backward would come too late, so it is
            # made here, before backward, at one host synchronisation per step of its own.
            self._check_atom_loss(loss, self._atom_pending)
        return (loss, outputs) if return_outputs else loss

    # -- the non-finite check, folded into the parent's own per-step synchronisation --------------------------

    def training_step(self, model: nn.Module, inputs: dict[str, torch.Tensor | Any], *args, **kwargs) -> torch.Tensor:
        """The parent's step (forward, backward), then the non-finite check of the loss it returns.

        The check reads the step's loss once, after its backward pass is queued and before any optimizer step, which
        is where `Trainer` reads it for `logging_nan_inf_filter` (twice: `isnan`, then `isinf`). A finite loss would
        pass that filter unchanged, so for this step the filter is lifted (restored in `floating_point_ops`, which
        `Trainer` calls right after it): the step makes one host synchronisation where `Trainer` makes two. Under
        DeepSpeed the optimizer step is part of the backward call, so the check was made in `compute_loss` instead.
        """
        self._restore_nan_filter()
        self._atom_pending = None
        loss = super().training_step(model, inputs, *args, **kwargs)
        pending, self._atom_pending = self._atom_pending, None
        if pending is None:  # no atom term in this loss (lambda = 0 on one process, or the parent ran no pass)
            return loss
        if not getattr(self, "is_deepspeed_enabled", False):  # under DeepSpeed: checked in compute_loss
            self._check_atom_loss(loss, pending)
        if self.args.logging_nan_inf_filter:
            self._atom_nan_filter = True
            self.args.logging_nan_inf_filter = False  # this loss is known finite: the filter would only read it again
        return loss

    @staticmethod
    def _check_atom_loss(loss: torch.Tensor, pending: tuple) -> None:
        """Raises a `FloatingPointError` naming the part if the step's loss is not finite (one host synchronisation)."""
        # inf * 0 and NaN * 0 are NaN
        if bool(torch.isnan(loss.detach() * 0)):
            task_loss, atom, step = pending
            atom.check_finite(task_loss, step=step)  # names the part that is not finite
            raise FloatingPointError(
                f"Non-finite loss at step {step}: the task loss and the atom objective are finite but their sum "
                f"({loss.detach().float().item()}) is not. It was stopped before reaching the weights; lower the "
                "learning rate or atom_weight."
            )

    def floating_point_ops(self, inputs: dict[str, torch.Tensor | Any]) -> int:
        self._restore_nan_filter()  # Trainer calls this right after its nan/inf filter: the user's setting returns
        return super().floating_point_ops(inputs)

    def _restore_nan_filter(self) -> None:
        if self._atom_nan_filter is not None:
            self.args.logging_nan_inf_filter, self._atom_nan_filter = self._atom_nan_filter, None

    # -- resuming (hf_atom.checkpoints) --------------------------------------------------------------------------

    def train(self, resume_from_checkpoint: str | bool | None = None, *args, **kwargs):
        """`Trainer.train`, except that `resume_from_checkpoint=True` resumes from the newest COMPLETE checkpoint.

        A run killed while saving leaves its newest `checkpoint-N` incomplete (e.g. without `trainer_state.json`), on
        which `Trainer` crashes. Here such folders are skipped with a warning naming them and what they lack; a
        checkpoint path that is incomplete raises a `ValueError` saying so. See `hf_atom.checkpoints`.

        Resuming the last checkpoint of a finished run (what a job scheduler does when it launches a finished job
        again) loads its weights and returns its state without training: `Trainer` would train one step past
        `max_steps` on every launch. Raise `max_steps` (or `num_train_epochs`) to train on.
        """
        if resume_from_checkpoint is not None and resume_from_checkpoint is not False:
            resume_from_checkpoint = resolve_resume_checkpoint(
                resume_from_checkpoint,
                self.args.output_dir,
                require_optimizer=not self.args.save_only_model,
                world_size=self.args.world_size,
                logger=logger,
            )
            if is_finished_run(resume_from_checkpoint, self.args.max_steps, self.args.num_train_epochs):
                return self._return_finished_run(resume_from_checkpoint)
            if not self._atom_off:
                load_memory(self.atom_objective.memory, resume_from_checkpoint)  # the queue is training state (D9)
        try:
            return super().train(resume_from_checkpoint, *args, **kwargs)
        finally:
            self._restore_nan_filter()

    def _save_rng_state(self, output_dir: str) -> None:
        # Trainer saves the RNG states only for checkpoints it can resume from: the cross-batch memory goes with them
        # (identical on every process, so written once), before trainer_state.json marks the checkpoint complete.
        super()._save_rng_state(output_dir)
        memory = None if self._atom_off else self.atom_objective.memory
        if memory is not None and self.args.should_save:
            save_memory(memory, output_dir)

    def _return_finished_run(self, checkpoint: str) -> TrainOutput:
        state = TrainerState.load_from_json(os.path.join(checkpoint, TRAINER_STATE_NAME))
        logger.warning(
            f"{checkpoint} ends a finished run (step {state.global_step} of {state.max_steps}): nothing to train. Its "
            "weights are loaded and its state returned; raise --max_steps (or --num_train_epochs) to train further."
        )
        self._load_from_checkpoint(checkpoint)
        self.state = state
        metrics = final_train_metrics(state.log_history, state.global_step, self.args.output_dir)
        return TrainOutput(state.global_step, metrics.get("train_loss", float("nan")), metrics)

    # -- logging, evaluation, saving ------------------------------------------------------------------------

    def log(self, logs: dict[str, float], *args, **kwargs) -> None:
        # evaluate() logs in eval mode, with its metric_key_prefix (eval_, test_, ...) on every key
        mode = "train" if self.model.training else "eval"
        prefix = ""
        if mode == "eval":
            prefix = next((key[: -len("runtime")] for key in logs if key.endswith("_runtime")), "eval_")
        reduce = None
        if self.accelerator.num_processes > 1:
            reduce = lambda summary: self.accelerator.reduce(summary, reduction="mean")  # noqa: E731
        summary = self._atom_metrics.summary(mode, reduce)
        if summary is not None:
            logs.update({prefix + name: value for name, value in summary.items()})
            if mode == "train":
                logs["atom_weight"] = self.atom_config.weight_at(self.state.global_step)
            # A short last eval batch is expected; a training micro-batch without pairs is worth one warning.
            if mode == "train" and summary["atom_pairs_min"] == 0 and not self._warned_no_pairs:
                self._warned_no_pairs = True
                logger.warning(
                    "A micro-batch had fewer than two samples with valid tokens: its atomic loss is 0 (docs/DESIGN.md, "
                    "D4). Use a larger per-device batch size, or --atom_gather_across_processes under data parallelism."
                )
        super().log(logs, *args, **kwargs)

    def predict(self, *args, **kwargs):
        output = super().predict(*args, **kwargs)
        self._atom_metrics.clear("eval")  # predict() does not log: its statistics must not reach the next eval
        return output

    def prediction_step(self, model, inputs, prediction_loss_only, ignore_keys=None):
        # The atom outputs never reach compute_metrics, whatever the config or the caller's ignore_keys say.
        if ignore_keys is None:
            ignore_keys = list(getattr(self.model.config, "keys_to_ignore_at_inference", None) or ["cache"])
        ignore_keys = list(ignore_keys) + [key for key in ATOM_OUTPUT_KEYS if key not in ignore_keys]
        return super().prediction_step(model, inputs, prediction_loss_only, ignore_keys=ignore_keys)

    def _save(self, output_dir: str | None = None, state_dict=None):
        self._restore_nan_filter()  # the saved training_args.bin holds the user's setting
        super()._save(output_dir, state_dict=state_dict)
        if self._atom_off:  # a plain model, saved as the parent saves it
            return
        output_dir = output_dir if output_dir is not None else self.args.output_dir
        add_atom_section(output_dir, _unwrap_peft(self.model), self.args)

    def create_model_card(self, *args, **kwargs) -> None:
        """The parent trainer's model card (base model, results, hyper-parameters, datasets, tags) plus an atom
        section (the paper, the atom settings, how to load)."""
        super().create_model_card(*args, **kwargs)
        if self.is_world_process_zero() and not self._atom_off:
            add_atom_section(self.args.output_dir, _unwrap_peft(self.model), self.args)


class AtomTrainer(AtomTrainerMixin, Trainer):
    """`transformers.Trainer` with atom modeling: the plain-Trainer case of `AtomTrainerMixin` (see there).

    Example:

    ```python
    >>> args = AtomTrainingArguments(output_dir="out", atom_weight=0.1)
    >>> trainer = AtomTrainer(model=model, args=args, train_dataset=train, eval_dataset=dev)
    >>> trainer.train()  # loss = task loss + 0.1 * (L_A + charge term); logs task_loss, atom_loss, atom_pairs, ...
    ```
    """

    atom_arguments_class = AtomTrainingArguments

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        mro = cls.__mro__
        others = [base.__name__ for base in mro[mro.index(AtomTrainerMixin) + 1 : mro.index(Trainer)]]
        if others:  # AtomTrainer's loss scaling is Trainer's; another trainer keeps its own through the mixin
            raise TypeError(
                f"AtomTrainer is the plain-Trainer case and cannot be combined with {others[0]}. Use "
                f"`class {cls.__name__}(hf_atom.AtomTrainerMixin, {others[0]})` with arguments from "
                f"`hf_atom.atom_arguments_class(...)` (ready-made for trl: `hf_atom.trl.AtomSFTTrainer`)."
            )

    def __init__(self, model: nn.Module | None = None, args: Any | None = None, *trainer_args, **kwargs):
        super().__init__(model, args, *trainer_args, **kwargs)
        if not self._atom_off and self.model is not None:
            # Trainer's rule, except for models whose loss ignores num_items_in_batch (see the module docstring).
            self.model_accepts_loss_kwargs = self.model_accepts_loss_kwargs and loss_uses_num_items(self.model)


def loss_uses_num_items(model: nn.Module) -> bool:
    """Whether the model's loss normalises by `num_items_in_batch` (causal LM: yes; classification: no).

    Trainer passes `num_items_in_batch` to every model whose forward takes `**kwargs` and then skips dividing the loss
    over gradient accumulation; with a loss that ignores it, the loss is k times too large with k accumulation steps.
    Models without a transformers `loss_type` keep Trainer's rule.
    """
    model = _unwrap_peft(model)
    try:
        from transformers.loss.loss_utils import LOSS_MAPPING
    except ImportError:  # pragma: no cover - older transformers
        return True
    if not hasattr(model, "loss_type"):
        return True
    # transformers' own fallback: an unknown or missing loss_type uses the causal-LM loss
    loss = LOSS_MAPPING.get(model.loss_type) or LOSS_MAPPING["ForCausalLM"]
    return "num_items_in_batch" in inspect.signature(loss).parameters
