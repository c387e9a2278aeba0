"""Diversity against quality of finetuned causal LMs, over sampling temperatures (docs/DESIGN.md, D8).

From held-out prompts (the first `--prompt_words` words of each held-out verse) every model samples
`--num_samples` continuations per prompt at each temperature (pure ancestral sampling: top-k and top-p off). Per
model and temperature it reports:

- quality: `heldout_ppl`, the token-pooled perplexity of the held-out verses (with EOS, as in training) under the
  model's sampling distribution softmax(logits / T), i.e. how well the distribution the samples come from fits real
  text (at T = 1 the usual held-out perplexity); and `base_ppl_of_samples`, the token-pooled perplexity of the
  sampled continuations (given their prompt, EOS excluded) under the base model (`--base_model`, T = 1);
- diversity (`hf_atom.metrics`, on continuations only, the shared prompt left out): pooled `distinct_1`,
  `distinct_2`; `self_bleu` over all samples of the temperature (Texygen's definition; `--self_bleu_hypotheses`
  texts are scored, each against all the others); `self_bleu_within_prompt`, the mean over prompts of the self-BLEU
  of that prompt's samples (do several samples for one prompt differ?); and `mean_words` of a continuation.

Models are given as `label=path` pairs; several paths under one label (seeds) are averaged (mean and standard
deviation over paths). Writes one JSON per model (reused on the next call unless the settings changed), a summary
JSON, a Markdown table (also printed), and a plot of diversity against quality per label.

    python benchmarks/generation_eval.py --models baseline=out/b_s0,baseline=out/b_s1,atom=out/a_s0,atom=out/a_s1 \\
        --base_model HuggingFaceTB/SmolLM2-135M --prompt_file ../shared/data/poem_sentiment/test.tsv \\
        --output_dir out/generation --plot docs/images/lm_diversity_quality.png
"""

from __future__ import annotations

import json
import logging
import math
import os
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from _stats import mean_std
from transformers import AutoModelForCausalLM, AutoTokenizer
from transformers.utils import logging as hf_logging

from hf_atom.metrics import distinct_n, self_bleu, word_tokenize

# The recipes' shared helpers (argument parsing, local text files): a script folder, not a package.
sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "recipes"))
from _common import parse_arguments  # noqa: E402
from _data import TEXT_COLUMNS, pick_column, read_local_files  # noqa: E402

logger = logging.getLogger(__name__)

QUALITY_KEYS = ("heldout_ppl", "base_ppl_of_samples")
DIVERSITY_KEYS = ("distinct_1", "distinct_2", "self_bleu", "self_bleu_within_prompt")
# settings that change a model's numbers: a cached JSON is reused only when all of them match
RESULT_SETTINGS = (
    "prompt_file",
    "text_column",
    "prompt_words",
    "num_prompts",
    "num_samples",
    "temperatures",
    "max_new_tokens",
    "batch_size",  # groups the prompts for generate, so it changes the random draws
    "num_examples",
    "self_bleu_n",
    "self_bleu_hypotheses",
    "base_model",
    "seed",
)


@dataclass
class GenerationEvalArguments:
    models: str = field(
        metadata={
            "help": "Comma-separated LABEL=PATH pairs (e.g. baseline=out/b_s0,atom=out/a_s0); repeat a label "
            "for several seeds."
        }
    )
    prompt_file: str = field(
        metadata={
            "help": "Held-out texts, comma-separated local files (.txt one per line, raw Poem Sentiment .tsv, "
            ".csv, .json): the prompts and the held-out perplexity."
        }
    )
    output_dir: str = field(metadata={"help": "Per-model JSON, summary.json and table.md go here."})
    base_model: str | None = field(
        default=None, metadata={"help": "Model that scores the samples (the pre-finetuning checkpoint). Required."}
    )
    text_column: str | None = field(default=None, metadata={"help": f"Default: the first of {TEXT_COLUMNS}."})
    prompt_words: int = field(default=3, metadata={"help": "Words of a held-out text that form its prompt."})
    num_prompts: int | None = field(
        default=None, metadata={"help": "Sample from the first N prompts only (held-out perplexity uses all texts)."}
    )
    num_samples: int = field(default=4, metadata={"help": "Continuations per prompt and temperature (>= 2)."})
    temperatures: str = field(default="0.7,1.0,1.3", metadata={"help": "Comma-separated sampling temperatures."})
    max_new_tokens: int = field(default=24, metadata={"help": "Longest continuation (EOS ends one earlier)."})
    batch_size: int = field(
        default=32, metadata={"help": "Prompts per generation batch; sequences per scoring batch."}
    )
    self_bleu_n: int = field(default=3, metadata={"help": "Highest n-gram order of self-BLEU (Texygen's default 3)."})
    self_bleu_hypotheses: int | None = field(
        default=128, metadata={"help": "Texts scored for the all-samples self-BLEU (each against all others)."}
    )
    seed: int = field(default=0, metadata={"help": "Sampling seed (each temperature reseeds with it)."})
    plot: str | None = field(default=None, metadata={"help": "PNG of diversity against quality per label."})
    reuse: bool = field(default=True, metadata={"help": "Reuse a model's JSON when its settings match."})
    num_examples: int = field(default=3, metadata={"help": "Prompts whose samples are kept in the JSON."})

    def __post_init__(self):
        self.model_list = parse_models(self.models)
        if not self.base_model:
            raise ValueError("Give --base_model (the checkpoint before finetuning): it scores the samples.")
        try:
            self.temperature_list = [float(t) for t in self.temperatures.split(",")]
        except ValueError as error:
            raise ValueError(f"--temperatures must be comma-separated numbers, got {self.temperatures!r}.") from error
        if not self.temperature_list or min(self.temperature_list) <= 0:
            raise ValueError(
                f"--temperatures must be > 0 (sampling; greedy has no diversity), got {self.temperatures}."
            )
        if self.num_samples < 2:
            raise ValueError(f"--num_samples must be >= 2 (self-BLEU compares samples), got {self.num_samples}.")
        for name in ("prompt_words", "max_new_tokens", "batch_size", "self_bleu_n"):
            if getattr(self, name) < 1:
                raise ValueError(f"--{name} must be >= 1, got {getattr(self, name)}.")


def parse_models(spec: str) -> list[tuple[str, str]]:
    """`"a=p1,a=p2,b=p3"` -> `[("a", "p1"), ("a", "p2"), ("b", "p3")]`, in order."""
    pairs = []
    for item in (part.strip() for part in spec.split(",") if part.strip()):
        label, sep, path = item.partition("=")
        if not sep or not label.strip() or not path.strip():
            raise ValueError(f"--models takes LABEL=PATH pairs separated by commas; {item!r} is not one.")
        pairs.append((label.strip(), path.strip()))
    if not pairs:
        raise ValueError("--models is empty; give LABEL=PATH pairs, e.g. baseline=out/b_s0,atom=out/a_s0.")
    return pairs


# ---------------------------------------------------------------------------------------------------------
# Data
# ---------------------------------------------------------------------------------------------------------


def load_texts(files: str, text_column: str | None) -> list[str]:
    """The non-empty texts of comma-separated local files (the recipes' readers: `recipes/_data.py`)."""
    columns = read_local_files(files)
    column = pick_column(list(columns), text_column, TEXT_COLUMNS, "text")
    return [str(text).strip() for text in columns[column] if str(text).strip()]


def make_prompts(texts: Sequence[str], prompt_words: int, num_prompts: int | None = None) -> list[str]:
    """The first `prompt_words` words of every text that has more words than that (something left to continue)."""
    prompts = [" ".join(text.split()[:prompt_words]) for text in texts if len(text.split()) > prompt_words]
    if not prompts:
        raise ValueError(f"No held-out text has more than --prompt_words={prompt_words} words; lower it.")
    return prompts[:num_prompts] if num_prompts is not None else prompts


# ---------------------------------------------------------------------------------------------------------
# Model side
# ---------------------------------------------------------------------------------------------------------


def load_causal_lm(path: str):
    """Tokenizer (left padding, pad = EOS when missing) and the plain causal LM: atom heads, if saved, are not
    needed to generate and are ignored."""
    tokenizer = AutoTokenizer.from_pretrained(path)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    tokenizer.padding_side = "left"
    verbosity = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()  # "unexpected keys atom_head.*" is expected for atom checkpoints
    try:
        model = AutoModelForCausalLM.from_pretrained(path)
    finally:
        hf_logging.set_verbosity(verbosity)
    return tokenizer, model.eval()


@torch.no_grad()
def token_nll(
    model, sequences: Sequence[Sequence[int]], starts: Sequence[int], temperatures: Sequence[float], batch_size: int
) -> dict[float, tuple[float, int]]:
    """Summed negative log-likelihood and token count of `sequences[i][starts[i]:]` (each token given all tokens
    before it) under softmax(logits / T), for every T. `starts[i] >= 1`: the first token has no context."""
    totals = {t: [0.0, 0] for t in temperatures}
    pad = 0
    for begin in range(0, len(sequences), batch_size):
        chunk, chunk_starts = sequences[begin : begin + batch_size], starts[begin : begin + batch_size]
        length = max(len(s) for s in chunk)
        ids = torch.full((len(chunk), length), pad, dtype=torch.long)
        attention = torch.zeros_like(ids)
        scored = torch.zeros((len(chunk), length), dtype=torch.bool)
        for row, (sequence, start) in enumerate(zip(chunk, chunk_starts)):
            if start < 1:
                raise ValueError("token_nll: the first token has no context; start scoring at position >= 1.")
            ids[row, : len(sequence)] = torch.as_tensor(list(sequence))
            attention[row, : len(sequence)] = 1
            scored[row, start : len(sequence)] = True
        logits = model(input_ids=ids, attention_mask=attention).logits[:, :-1].float()
        targets, mask = ids[:, 1:], scored[:, 1:]
        for t in temperatures:
            log_probs = torch.log_softmax(logits / t, dim=-1).gather(-1, targets[..., None])[..., 0]
            totals[t][0] += float(-(log_probs * mask).sum())
            totals[t][1] += int(mask.sum())
    return {t: (nll, count) for t, (nll, count) in totals.items()}


def perplexity(nll: float, count: int) -> float:
    return math.exp(nll / count) if count else float("nan")


@torch.no_grad()
def sample_continuations(
    model,
    tokenizer,
    prompts: Sequence[str],
    temperature: float,
    num_samples: int,
    max_new_tokens: int,
    batch_size: int,
    seed: int,
) -> list[tuple[list[int], list[int]]]:
    """(prompt ids, continuation ids without EOS/padding) for every prompt x sample, prompt-major order."""
    torch.manual_seed(seed)
    out = []
    for begin in range(0, len(prompts), batch_size):
        encoded = tokenizer(list(prompts[begin : begin + batch_size]), return_tensors="pt", padding=True)
        generated = model.generate(
            **encoded,
            do_sample=True,
            temperature=temperature,
            top_k=0,
            top_p=1.0,
            num_return_sequences=num_samples,
            max_new_tokens=max_new_tokens,
            pad_token_id=tokenizer.pad_token_id,
            eos_token_id=tokenizer.eos_token_id,
        )
        width = encoded["input_ids"].shape[1]
        for row in range(generated.shape[0]):
            prompt_row = row // num_samples
            prompt_ids = encoded["input_ids"][prompt_row][encoded["attention_mask"][prompt_row].bool()].tolist()
            continuation = []
            for token in generated[row, width:].tolist():
                if token == tokenizer.eos_token_id or token == tokenizer.pad_token_id:
                    break
                continuation.append(token)
            out.append((prompt_ids, continuation))
    return out


def evaluate_model(path: str, base, prompts: list[str], heldout: list[str], args: GenerationEvalArguments) -> dict:
    """All numbers of one model: per temperature, quality and diversity, plus a few example samples."""
    base_tokenizer, base_model = base
    tokenizer, model = load_causal_lm(path)
    probe = "the quiet river runs"
    if tokenizer(probe)["input_ids"] != base_tokenizer(probe)["input_ids"]:
        raise ValueError(f"{path} and --base_model {args.base_model} tokenize differently; give the matching base.")
    started = time.time()
    eos = [tokenizer.eos_token_id] if tokenizer.eos_token_id is not None else []
    heldout_ids = [tokenizer(text)["input_ids"] + eos for text in heldout]
    heldout_nll = token_nll(model, heldout_ids, [1] * len(heldout_ids), args.temperature_list, args.batch_size)
    result: dict[str, Any] = {
        "model": path,
        "num_prompts": len(prompts),
        "num_heldout": len(heldout),
        "temperatures": {},
    }
    for index, temperature in enumerate(args.temperature_list):
        samples = sample_continuations(
            model,
            tokenizer,
            prompts,
            temperature,
            args.num_samples,
            args.max_new_tokens,
            args.batch_size,
            seed=args.seed + index,
        )
        texts = [tokenizer.decode(ids, skip_special_tokens=True).strip() for _, ids in samples]
        scored = [(p + c, len(p)) for p, c in samples if c]
        base_nll = token_nll(
            base_model, [s for s, _ in scored], [start for _, start in scored], [1.0], args.batch_size
        )
        groups = [texts[i : i + args.num_samples] for i in range(0, len(texts), args.num_samples)]
        words = {text: word_tokenize(text) for text in texts}  # each sample tokenized once for all four metrics
        result["temperatures"][str(temperature)] = {
            "heldout_ppl": perplexity(*heldout_nll[temperature]),
            "base_ppl_of_samples": perplexity(*base_nll[1.0]),
            "distinct_1": distinct_n(texts, 1, tokenize=words.__getitem__),
            "distinct_2": distinct_n(texts, 2, tokenize=words.__getitem__),
            "self_bleu": self_bleu(
                texts,
                args.self_bleu_n,
                tokenize=words.__getitem__,
                max_hypotheses=args.self_bleu_hypotheses,
                seed=args.seed,
            ),
            "self_bleu_within_prompt": float(
                np.mean([self_bleu(group, args.self_bleu_n, tokenize=words.__getitem__) for group in groups])
            ),
            "mean_words": float(np.mean([len(text.split()) for text in texts])),
            "empty_share": float(np.mean([not text for text in texts])),
            "examples": [
                {"prompt": prompts[i], "samples": groups[i]} for i in range(min(args.num_examples, len(groups)))
            ],
        }
    result["eval_seconds"] = round(time.time() - started, 1)
    return result


# ---------------------------------------------------------------------------------------------------------
# Summary, curve comparison, plot
# ---------------------------------------------------------------------------------------------------------

METRICS = (
    "heldout_ppl",
    "base_ppl_of_samples",
    "distinct_1",
    "distinct_2",
    "self_bleu",
    "self_bleu_within_prompt",
    "mean_words",
)


def summarize(per_model: list[tuple[str, dict]]) -> dict[str, dict[str, dict[str, dict[str, float]]]]:
    """label -> temperature -> metric -> {mean, std, n} over the models of the label (`_stats.mean_std`: ddof = 1,
    0 for one model; non-finite values left out)."""
    grouped: dict[str, list[dict]] = {}
    for label, result in per_model:
        grouped.setdefault(label, []).append(result)
    summary: dict[str, Any] = {}
    for label, results in grouped.items():
        summary[label] = {}
        for temperature in results[0]["temperatures"]:
            summary[label][temperature] = {}
            for metric in METRICS:
                values = mean_std(r["temperatures"][temperature][metric] for r in results)
                summary[label][temperature][metric] = values._asdict()
    return summary


def compare_curves(summary: dict, reference: str, other: str, quality: str, diversity: str) -> list[dict[str, float]]:
    """Where `other`'s curve lies relative to `reference`'s at EQUAL quality: for each temperature point of `other`
    whose quality lies within `reference`'s range, `reference`'s diversity is interpolated (linearly in log
    perplexity) at that quality. `gain` > 0 means more diverse at equal quality (for self-BLEU, lower is more
    diverse, so the sign is flipped)."""
    sign = -1.0 if "bleu" in diversity else 1.0
    ref_points = sorted((math.log(v[quality]["mean"]), v[diversity]["mean"]) for v in summary[reference].values())
    xs, ys = [p[0] for p in ref_points], [p[1] for p in ref_points]
    rows = []
    for temperature, values in summary[other].items():
        x = math.log(values[quality]["mean"])
        if not xs[0] <= x <= xs[-1]:
            continue
        interpolated = float(np.interp(x, xs, ys))
        rows.append(
            {
                "temperature": float(temperature),
                "quality": values[quality]["mean"],
                "diversity": values[diversity]["mean"],
                "reference_diversity_at_equal_quality": interpolated,
                "gain": sign * (values[diversity]["mean"] - interpolated),
            }
        )
    return rows


def verdict(rows: list[dict[str, float]]) -> str:
    if not rows:
        return "no overlap in quality"
    gains = [row["gain"] for row in rows]
    if all(g > 0 for g in gains):
        return "above"
    if all(g < 0 for g in gains):
        return "below"
    return "crossing"


def _cell(values: dict, metric: str, digits: int = 3) -> str:
    v = values[metric]
    return f"{v['mean']:.{digits}f} ± {v['std']:.{digits}f}" if v["n"] > 1 else f"{v['mean']:.{digits}f}"


def markdown_table(summary: dict) -> str:
    header = (
        "| model | T | held-out PPL (at T) | base PPL of samples | distinct-1 | distinct-2 | self-BLEU | "
        "self-BLEU within prompt | words | seeds |"
    )
    lines = [header, "|" + " --- |" * 10]
    for label, temps in summary.items():
        for temperature, values in temps.items():
            lines.append(
                f"| {label} | {temperature} | {_cell(values, 'heldout_ppl', 2)} | {_cell(values, 'base_ppl_of_samples', 2)} | "
                f"{_cell(values, 'distinct_1')} | {_cell(values, 'distinct_2')} | {_cell(values, 'self_bleu')} | "
                f"{_cell(values, 'self_bleu_within_prompt')} | {_cell(values, 'mean_words', 1)} | {values['heldout_ppl']['n']} |"
            )
    return "\n".join(lines)


def plot_curves(summary: dict, path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = (
        (
            "base_ppl_of_samples",
            "distinct_2",
            "base-model perplexity of the samples (lower: better)",
            "distinct-2 (higher: more diverse)",
        ),
        (
            "base_ppl_of_samples",
            "self_bleu",
            "base-model perplexity of the samples (lower: better)",
            "self-BLEU (lower: more diverse)",
        ),
        ("heldout_ppl", "distinct_2", "held-out perplexity at T (lower: better)", "distinct-2 (higher: more diverse)"),
    )
    figure, axes = plt.subplots(1, len(panels), figsize=(5 * len(panels), 4))
    for axis, (quality, diversity, xlabel, ylabel) in zip(axes, panels):
        for label, temps in summary.items():
            ordered = sorted(temps.items(), key=lambda item: float(item[0]))
            x = [v[quality]["mean"] for _, v in ordered]
            y = [v[diversity]["mean"] for _, v in ordered]
            xerr = [v[quality]["std"] for _, v in ordered]
            yerr = [v[diversity]["std"] for _, v in ordered]
            axis.errorbar(x, y, xerr=xerr, yerr=yerr, marker="o", capsize=3, label=label)
            for (temperature, _), xi, yi in zip(ordered, x, y):
                axis.annotate(
                    f"T={float(temperature):g}", (xi, yi), textcoords="offset points", xytext=(4, 4), fontsize=7
                )
        axis.set_xscale("log")
        axis.set_xlabel(xlabel)
        axis.set_ylabel(ylabel)
        axis.grid(alpha=0.3)
        axis.legend()
    figure.suptitle("Diversity against quality over sampling temperatures (mean ± std over seeds)")
    figure.tight_layout()
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    figure.savefig(path, dpi=120)
    plt.close(figure)


# ---------------------------------------------------------------------------------------------------------
# Run
# ---------------------------------------------------------------------------------------------------------


def _cache_path(output_dir: str, label: str, path: str) -> str:
    name = os.path.basename(os.path.normpath(path)) or "model"
    return os.path.join(output_dir, f"{label}__{name}.json")


def run(args: GenerationEvalArguments) -> dict[str, Any]:
    torch.set_num_threads(max(1, min(torch.get_num_threads(), int(os.environ.get("OMP_NUM_THREADS", "64")))))
    texts = load_texts(args.prompt_file, args.text_column)
    prompts = make_prompts(texts, args.prompt_words, args.num_prompts)
    heldout = texts  # perplexity is cheap (one forward per batch): always on every held-out text
    settings = {name: getattr(args, name) for name in RESULT_SETTINGS}
    os.makedirs(args.output_dir, exist_ok=True)
    base = None
    per_model = []
    for label, path in args.model_list:
        cache = _cache_path(args.output_dir, label, path)
        if args.reuse and os.path.isfile(cache):
            with open(cache, encoding="utf-8") as handle:
                cached = json.load(handle)
            if cached.get("settings") == settings and cached.get("model") == path:
                per_model.append((label, cached))
                continue
        if base is None:
            base = load_causal_lm(args.base_model)
        result = evaluate_model(path, base, prompts, heldout, args)
        result["settings"] = settings
        with open(cache, "w", encoding="utf-8") as handle:
            json.dump(result, handle, indent=2)
        logger.info("%s (%s): %.0f s", label, path, result["eval_seconds"])
        per_model.append((label, result))
    summary = summarize(per_model)
    labels = list(summary)
    comparisons = {}
    if len(labels) >= 2:
        reference = labels[0]
        for other in labels[1:]:
            for quality in QUALITY_KEYS:
                for diversity in DIVERSITY_KEYS:
                    rows = compare_curves(summary, reference, other, quality, diversity)
                    comparisons[f"{other}_vs_{reference}:{diversity}@{quality}"] = {
                        "verdict": verdict(rows),
                        "points": rows,
                    }
    table = markdown_table(summary)
    report = {
        "settings": settings,
        "models": [list(pair) for pair in args.model_list],
        "summary": summary,
        "comparisons": comparisons,
    }
    with open(os.path.join(args.output_dir, "summary.json"), "w", encoding="utf-8") as handle:
        json.dump(report, handle, indent=2)
    with open(os.path.join(args.output_dir, "table.md"), "w", encoding="utf-8") as handle:
        handle.write(table + "\n")
    print(table)
    for name, comparison in comparisons.items():
        print(f"{name}: {comparison['verdict']}")
    if args.plot:
        plot_curves(summary, args.plot)
    return report


def main(argv: list[str] | None = None) -> dict[str, Any]:
    (args,) = parse_arguments((GenerationEvalArguments,), argv)
    logging.basicConfig(level=logging.INFO)
    return run(args)


if __name__ == "__main__":
    main()
