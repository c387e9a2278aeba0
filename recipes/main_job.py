"""The main job: baseline vs atom modeling on scikit-learn's bundled digits, offline, in a few minutes on 2 CPUs.

Trains the same small ViT from scratch twice with `AtomTrainer` (lambda = 0, the baseline, and lambda > 0), then
writes into `--output_dir`:

- `comparison.json` and a printed table (test accuracy / macro F1 / loss, atom statistics, train time);
- `training_curves.png` (training loss and validation accuracy of both runs);
- `importance/` (token-importance heat maps of the atom model on test digits, and `index.html`);
- `baseline/` and `atom/` (checkpoints with processor and model card); the atom one is reloaded with
  `AutoAtomModel` and must give identical logits.

    python recipes/main_job.py --output_dir outputs/main_job
"""

from __future__ import annotations

import argparse
import json
import os
from typing import Any

import torch
from _image import TRAINING_DEFAULTS, DataArguments, ModelArguments, load_splits, run

from hf_atom import AtomTrainingArguments, AutoAtomModel
from hf_atom.explain import Explainer, write_index


def training_arguments(output_dir: str, atom_weight: float, args: argparse.Namespace) -> AtomTrainingArguments:
    return AtomTrainingArguments(
        output_dir=output_dir,
        atom_weight=atom_weight,
        seed=args.seed,
        num_train_epochs=args.epochs,
        per_device_train_batch_size=64,
        per_device_eval_batch_size=128,
        learning_rate=3e-3,
        warmup_steps=50,
        weight_decay=0.05,
        eval_strategy="epoch",
        logging_strategy="epoch",
        save_strategy="no",
        report_to="none",
        use_cpu=True,
        disable_tqdm=True,
        **TRAINING_DEFAULTS,  # the image recipe's own defaults (its transforms read the raw image column)
    )


def plot_curves(histories: dict[str, list[dict[str, Any]]], path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (loss_axis, accuracy_axis) = plt.subplots(1, 2, figsize=(10, 4), dpi=100)
    for name, history in histories.items():
        train = [(log["epoch"], log["task_loss"]) for log in history if "task_loss" in log and "loss" in log]
        evals = [(log["epoch"], log["eval_accuracy"]) for log in history if "eval_accuracy" in log]
        if train:
            loss_axis.plot(*zip(*train), marker="o", markersize=3, label=name)
        if evals:
            accuracy_axis.plot(*zip(*evals), marker="o", markersize=3, label=name)
    loss_axis.set(xlabel="epoch", ylabel="training task loss", yscale="log", title="training")
    accuracy_axis.set(xlabel="epoch", ylabel="validation accuracy", title="validation")
    for axis in (loss_axis, accuracy_axis):
        axis.grid(alpha=0.3)
        axis.legend()
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--output_dir", default="outputs/main_job")
    parser.add_argument("--epochs", type=float, default=25)
    parser.add_argument("--atom_weight", type=float, default=0.1)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--num_pictures", type=int, default=8)
    args = parser.parse_args()
    os.makedirs(args.output_dir, exist_ok=True)

    model_args, data_args = ModelArguments(image_size=16), DataArguments(dataset_name="digits")
    runs, histories = {}, {}
    for name, weight in (("baseline", 0.0), ("atom", args.atom_weight)):
        print(f"== training {name} (lambda = {weight}) ==", flush=True)
        trainer, results = run(
            model_args,
            data_args,
            training_arguments(os.path.join(args.output_dir, name), weight, args),
            print_metrics=False,  # this job prints its own table
        )
        runs[name], histories[name] = (trainer, results), trainer.state.log_history

    rows = []
    for name, (_, results) in runs.items():
        test, last_train = results["test"], [log for log in histories[name] if "task_loss" in log][-1]
        rows.append(
            {
                "run": name,
                "atom_weight": results["atom_weight"],
                "test_accuracy": test["accuracy"],
                "test_f1_macro": test["f1_macro"],
                "test_loss": test["loss"],
                "test_atom_loss": test["atom_loss"],
                "test_mean_abs_q": test["atom_mean_abs_q"],
                "final_train_task_loss": last_train["task_loss"],
                "train_runtime_s": results["train_runtime_s"],
            }
        )
    with open(os.path.join(args.output_dir, "comparison.json"), "w") as handle:
        json.dump({"seed": args.seed, "epochs": args.epochs, "runs": rows}, handle, indent=2)

    plot_curves(histories, os.path.join(args.output_dir, "training_curves.png"))

    # token importance of the atom model on the first test digits
    splits, image_column, label_column = load_splits(data_args)
    test = splits["test"].select(range(args.num_pictures))
    atom_trainer = runs["atom"][0]
    explainer = Explainer(atom_trainer.model, atom_trainer.processing_class)
    names = [f"test_{i}_label_{label}.png" for i, label in enumerate(test[label_column])]
    picture_dir = os.path.join(args.output_dir, "importance")
    os.makedirs(picture_dir, exist_ok=True)
    write_index(explainer.explain_images(list(test[image_column]), names, out_dir=picture_dir), picture_dir)

    # the saved atom checkpoint reloads with its heads and gives the same outputs
    reloaded = AutoAtomModel.from_pretrained(os.path.join(args.output_dir, "atom")).eval()
    pixels = atom_trainer.processing_class(
        [image.convert("RGB") for image in test[image_column]], return_tensors="pt"
    )["pixel_values"]
    with torch.no_grad():
        trained = atom_trainer.model.eval()(pixel_values=pixels)
        again = reloaded(pixel_values=pixels)
    identical = torch.equal(trained.logits, again.logits) and torch.equal(trained.atom_q, again.atom_q)

    print("\n| run | lambda | test acc | test macro-F1 | test loss | test L_A | mean abs(q) | train s |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    for row in rows:
        print(
            f"| {row['run']} | {row['atom_weight']:g} | {row['test_accuracy']:.4f} | {row['test_f1_macro']:.4f} | "
            f"{row['test_loss']:.4f} | {row['test_atom_loss']:.4f} | {row['test_mean_abs_q']:.3f} | "
            f"{row['train_runtime_s']:.0f} |"
        )
    print(
        f"\nOne seed ({args.seed}) on {runs['atom'][1]['num_test']} test digits: a difference of one or two digits "
        "is noise; docs/RESULTS.md has mean and std over seeds."
    )
    print(
        f"checkpoint {os.path.join(args.output_dir, 'atom')} reloads with AutoAtomModel: "
        f"{'identical logits and q' if identical else 'MISMATCH'}"
    )
    print(f"pictures: {picture_dir}/index.html, curves: {args.output_dir}/training_curves.png")
    if not identical:
        raise SystemExit("the reloaded atom checkpoint does not reproduce the trained model")


if __name__ == "__main__":
    main()
