"""A tiny AtomTrainer run that saves a checkpoint after every step, for the SIGKILL recovery test.

    python train_checkpointing.py OUTPUT_DIR [--resume] [--max_steps N]
    run(output_dir, max_steps=8, resume=False, log_file=None)   # the same, as a process target (tests)

Trains the tiny BERT of `tiny_models` (seeded, one thread, so every run is bit-reproducible) and, once training is
done, writes the final parameters to OUTPUT_DIR/final.safetensors (written to a temporary name, then renamed, so
the file exists only when it is whole). `--resume` passes `resume_from_checkpoint=True`.
"""

import argparse
import os

import torch
from safetensors.torch import save_file
from tiny_models import bert, text_dataset

from hf_atom import AtomTrainer, AtomTrainingArguments


def training_arguments(output_dir: str, max_steps: int) -> AtomTrainingArguments:
    return AtomTrainingArguments(
        output_dir=output_dir,
        per_device_train_batch_size=4,
        max_steps=max_steps,
        learning_rate=1e-2,
        save_strategy="steps",
        save_steps=1,
        logging_steps=1,
        report_to="none",
        use_cpu=True,
        disable_tqdm=True,
        seed=0,
        atom_weight=0.5,
    )


def train(output_dir: str, max_steps: int, resume: bool) -> dict[str, torch.Tensor]:
    torch.manual_seed(0)
    model = bert()
    trainer = AtomTrainer(model=model, args=training_arguments(output_dir, max_steps), train_dataset=text_dataset(32))
    trainer.train(resume_from_checkpoint=True if resume else None)
    return {name: param.detach().clone().contiguous() for name, param in model.named_parameters()}


def run(output_dir: str, max_steps: int = 8, resume: bool = False, log_file: str | None = None) -> None:
    """Trains (or resumes), then writes OUTPUT_DIR/final.safetensors; `log_file` takes this process's stdout/stderr."""
    if log_file is not None:
        handle = os.open(log_file, os.O_WRONLY | os.O_CREAT | os.O_APPEND)
        os.dup2(handle, 1)
        os.dup2(handle, 2)
    torch.set_num_threads(1)
    params = train(output_dir, max_steps, resume)
    final = os.path.join(output_dir, "final.safetensors")
    save_file(params, final + ".tmp")
    os.replace(final + ".tmp", final)
    print("finished", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("output_dir")
    parser.add_argument("--resume", action="store_true")
    parser.add_argument("--max_steps", type=int, default=8)
    args = parser.parse_args()
    run(args.output_dir, args.max_steps, args.resume)


if __name__ == "__main__":
    main()
