"""The causal-LM recipe and the generation evaluation on tiny random models (seconds), and on SmolLM2 (slow)."""

import json
import math
import sys
from pathlib import Path

import pytest
import torch
import transformers as T
from tiny_models import _llama_config, gpt2, tiny_tokenizer

import hf_atom
from hf_atom.metrics import distinct_n

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "recipes"))
sys.path.insert(0, str(REPO / "benchmarks"))

import causal_lm  # noqa: E402
import generation_eval  # noqa: E402

COMMON = [
    "--report_to",
    "none",
    "--use_cpu",
    "true",
    "--save_strategy",
    "no",
    "--disable_tqdm",
    "true",
    "--max_steps",
    "2",
    "--per_device_train_batch_size",
    "4",
    "--per_device_eval_batch_size",
    "4",
]
VERSES = [
    "the cat sat on the mat .",
    "a dog ran far away .",
    "green ideas sleep .",
    "the dog sat on a mat .",
    "a cat ran far .",
    "the green dog sleep away .",
    "a mat sat on the cat .",
    "far away the ideas ran .",
]


def tiny_lm_tokenizer():
    """The tiny WordPiece tokenizer as a decoder's: no [CLS]/[SEP] template, [SEP] is EOS, no pad token."""
    tokenizer = tiny_tokenizer()
    tokenizer.backend_tokenizer.post_processor = None
    tokenizer.eos_token = "[SEP]"
    tokenizer.pad_token = None  # decoders often ship without one: the recipe must add it
    return tokenizer


@pytest.fixture(scope="module")
def tiny_lms(tmp_path_factory):
    root = tmp_path_factory.mktemp("lms")
    torch.manual_seed(0)
    T.LlamaForCausalLM(_llama_config()).save_pretrained(root / "llama")
    tiny_lm_tokenizer().save_pretrained(root / "llama")
    gpt2().save_pretrained(root / "gpt2")
    tiny_lm_tokenizer().save_pretrained(root / "gpt2")
    return root


def write_poem_tsv(path: Path, verses=VERSES):
    path.write_text("".join(f"{i}\t{verse}\t{i % 3 - 1}\n" for i, verse in enumerate(verses)))


def read_results(folder: Path) -> dict:
    return json.loads((folder / "results.json").read_text())


def test_per_line_examples_on_raw_poem_tsv(tmp_path, tiny_lms, monkeypatch):
    import _common

    written = []
    write_results = _common.write_results
    monkeypatch.setattr(_common, "write_results", lambda *a: written.append(a[0]) or write_results(*a))
    write_poem_tsv(tmp_path / "train.tsv")
    write_poem_tsv(tmp_path / "dev.tsv", VERSES[:4])
    out = tmp_path / "out"
    result = causal_lm.main(
        [
            "--model_name_or_path",
            str(tiny_lms / "llama"),
            "--train_file",
            str(tmp_path / "train.tsv"),
            "--validation_file",
            str(tmp_path / "dev.tsv"),
            "--test_file",
            str(tmp_path / "dev.tsv"),
            "--atom_weight",
            "0.1",
            "--output_dir",
            str(out),
            *COMMON,
        ]
    )
    assert read_results(out) == json.loads(json.dumps(result)) and written == [str(out)]  # results.json once
    assert result["text_column"] == "verse_text" and result["num_train"] == 8 and result["num_validation"] == 4
    for split, prefix in (("validation", "eval"), ("test", "test")):
        assert result[split]["perplexity"] == pytest.approx(math.exp(result[split]["loss"]))
        assert result[split]["atom_pairs"] > 0 and "atom_loss" in result[split]
        # run_clm's convention: the Trainer's own metrics file carries the perplexity too
        saved = json.loads((out / f"{prefix}_results.json").read_text())
        assert (
            saved[f"{prefix}_perplexity"]
            == result[split]["perplexity"]
            == pytest.approx(math.exp(saved[f"{prefix}_loss"]))
        )
    model = hf_atom.AutoAtomModel.from_pretrained(out)
    assert type(model).__name__ == "AtomLlamaForCausalLM" and model.config.pad_token_id is not None
    assert (out / "tokenizer_config.json").is_file() and (out / "README.md").is_file()


def test_tokenization_per_line_and_blocks(tiny_lms):
    import datasets

    tokenizer = causal_lm.build_model_and_tokenizer(causal_lm.ModelArguments(str(tiny_lms / "gpt2")))[1]
    splits = datasets.DatasetDict({"train": datasets.Dataset.from_dict({"text": VERSES[:3]})})
    eos = tokenizer.eos_token_id
    per_line = causal_lm.tokenize_splits(
        splits, "text", tokenizer, causal_lm.DataArguments(train_file="x", max_seq_length=4), special_tokens_mask=True
    )["train"]
    # "the cat sat on the mat ." -> truncated to 3 tokens + EOS; labels are the inputs; EOS is a special token
    assert per_line[0]["input_ids"] == tokenizer("the cat sat")["input_ids"] + [eos]
    assert per_line[0]["labels"] == per_line[0]["input_ids"] and per_line[0]["special_tokens_mask"] == [0, 0, 0, 1]
    assert all(len(row["input_ids"]) <= 4 for row in per_line)
    # blocks: 8 + 7 + 5 = 20 tokens with EOS after each text -> 3 blocks of 6, the remainder (2) dropped
    blocks = causal_lm.tokenize_splits(
        splits, "text", tokenizer, causal_lm.DataArguments(train_file="x", block_size=6), special_tokens_mask=False
    )["train"]
    joined = [i for verse in VERSES[:3] for i in tokenizer(verse)["input_ids"] + [eos]]
    assert len(joined) == 20 and [row["input_ids"] for row in blocks] == [joined[0:6], joined[6:12], joined[12:18]]
    no_eos = causal_lm.tokenize_splits(
        splits, "text", tokenizer, causal_lm.DataArguments(train_file="x", add_eos=False), special_tokens_mask=False
    )["train"]
    assert no_eos[2]["input_ids"] == tokenizer(VERSES[2])["input_ids"]


def test_blocks_from_text_file_baseline_with_held_out_split(tmp_path, tiny_lms):
    (tmp_path / "train.txt").write_text("\n".join(VERSES * 3) + "\n\n")
    out = tmp_path / "out"
    result = causal_lm.main(
        [
            "--model_name_or_path",
            str(tiny_lms / "gpt2"),
            "--train_file",
            str(tmp_path / "train.txt"),
            "--block_size",
            "8",
            "--validation_split_percentage",
            "25",
            "--atom_weight",
            "0",
            "--output_dir",
            str(out),
            *COMMON,
        ]
    )
    # 24 lines -> 18 train / 6 held out, then cut into 8-token blocks
    assert result["atom_weight"] == 0 and result["block_size"] == 8 and result["text_column"] == "text"
    assert result["num_validation"] >= 1 and math.isfinite(result["validation"]["perplexity"])
    assert "test" not in result


def test_atom_weight_zero_matches_plain_trainer(tmp_path, tiny_lms):
    """The recipe's baseline is a plain Trainer: same data, collator, seed and loss scale give the same parameters."""
    (tmp_path / "train.txt").write_text("\n".join(VERSES) + "\n")
    # With gradient clipping on (the default): at lambda = 0 the heads get no gradient, so they do not enter the norm.
    args = ["--train_file", str(tmp_path / "train.txt"), "--validation_split_percentage", "0", *COMMON]
    model_args, data_args, training_args = causal_lm.parse_arguments(
        (causal_lm.ModelArguments, causal_lm.DataArguments, hf_atom.AtomTrainingArguments),
        ["--model_name_or_path", str(tiny_lms / "llama"), "--output_dir", str(tmp_path / "a"), "--atom_weight", "0"]
        + args,
    )
    trainer, _ = causal_lm.run(model_args, data_args, training_args)
    T.set_seed(training_args.seed)
    splits, column = causal_lm.load_splits(data_args, seed=training_args.seed)
    model, tokenizer = causal_lm.build_model_and_tokenizer(model_args)
    splits = causal_lm.tokenize_splits(splits, column, tokenizer, data_args, special_tokens_mask=False)
    plain_args = T.TrainingArguments(
        **{
            key: getattr(training_args, key)
            for key in ("max_steps", "per_device_train_batch_size", "use_cpu", "report_to", "seed", "max_grad_norm")
        },
        output_dir=str(tmp_path / "b"),
    )
    plain = T.Trainer(
        model=model,
        args=plain_args,
        train_dataset=splits["train"],
        data_collator=T.DataCollatorForSeq2Seq(tokenizer, label_pad_token_id=-100),
    )
    # AtomTrainer's loss convention (docs/GUIDE.md, "Loss scaling"): per-micro-batch token means. A plain Trainer instead
    # divides causal-LM losses by num_items_in_batch (which counts the unshifted label tokens), a different scale.
    plain.model_accepts_loss_kwargs = False
    plain.train()
    atom_params = dict(trainer.model.named_parameters())
    for name, parameter in plain.model.named_parameters():
        assert torch.equal(parameter, atom_params[name]), name


def test_recipe_errors(tmp_path, tiny_lms):
    (tmp_path / "train.txt").write_text("the cat\n")
    model = ["--model_name_or_path", str(tiny_lms / "gpt2"), "--output_dir", str(tmp_path / "o"), *COMMON]
    with pytest.raises(ValueError, match="Give a dataset"):
        causal_lm.main(model)
    with pytest.raises(ValueError, match="--block_size must be at least 2"):
        causal_lm.main(["--train_file", str(tmp_path / "train.txt"), "--block_size", "1", *model])
    with pytest.raises(ValueError, match="does not exist"):
        causal_lm.main(["--train_file", str(tmp_path / "missing.txt"), *model])
    with pytest.raises(ValueError, match="No text column 'body'"):
        causal_lm.main(["--train_file", str(tmp_path / "train.txt"), "--text_column", "body", *model])
    with pytest.raises(ValueError, match="fewer than --block_size=64 tokens"):
        causal_lm.main(
            ["--train_file", str(tmp_path / "train.txt"), "--block_size", "64", "--validation_split_percentage", "0"]
            + model
        )
    with pytest.raises(ValueError, match="Could not load dataset 'no-such/dataset'"):
        causal_lm.main(["--dataset_name", "no-such/dataset", *model])


def _write(path: Path, content: str | bytes) -> str:
    path.write_bytes(content) if isinstance(content, bytes) else path.write_text(content)
    return str(path)


@pytest.mark.parametrize(
    "make_flags, match",
    [
        (lambda d: ["--train_file", _write(d / "t.txt", "")], r"t.txt' holds no examples"),
        (lambda d: ["--train_file", _write(d / "t.txt", "\n  \n\n")], r"t.txt' holds no examples"),
        (lambda d: ["--train_file", _write(d / "t.csv", "text\n")], r"t.csv' holds no examples"),
        (
            lambda d: ["--train_file", _write(d / "t.txt", "the cat\n"), "--validation_file", _write(d / "v.txt", "")],
            r"v.txt' holds no examples",
        ),
        (lambda d: ["--train_file", _write(d / "t.txt", "caf\xe9 au lait\n".encode("latin-1"))], "is not UTF-8 text"),
        (lambda d: ["--train_file", _write(d / "t.txt", "the cat\n")], "--validation_split_percentage 5 of the 1"),
        (
            lambda d: ["--train_file", _write(d / "t.txt", "the cat\n"), "--max_train_samples", "0"],
            "--max_train_samples must be >= 1",
        ),
        (
            lambda d: [
                "--train_file",
                _write(d / "t.txt", "cat\ndog\n"),
                "--validation_split_percentage",
                "0",
                "--add_eos",
                "false",
            ],  # fmt: skip
            r"The train split\(s\) hold no text of two tokens or more",
        ),
        (lambda d: ["--train_file", _write(d / "t.txt", ""), "--trainer", "sft"], r"t.txt' holds no examples"),
    ],
)
def test_bad_data_is_named_with_its_file_or_flag(make_flags, match, tmp_path, tiny_lms):
    model = ["--model_name_or_path", str(tiny_lms / "gpt2"), "--output_dir", str(tmp_path / "o"), *COMMON]
    with pytest.raises(ValueError, match=match):
        causal_lm.main([*make_flags(tmp_path), *model])


# ---------------------------------------------------------------------------------------------------------
# Generation evaluation
# ---------------------------------------------------------------------------------------------------------


def test_token_nll_matches_a_plain_per_sequence_loop(tiny_lms):
    _, model = generation_eval.load_causal_lm(str(tiny_lms / "llama"))
    sequences = [[5, 6, 7, 8, 9], [10, 11, 12], [4, 13, 14, 15, 16, 17, 18]]
    starts = [1, 2, 4]
    got = generation_eval.token_nll(model, sequences, starts, [0.5, 1.0], batch_size=2)  # padding inside a batch
    for temperature in (0.5, 1.0):
        nll, count = 0.0, 0
        for sequence, start in zip(sequences, starts):
            with torch.no_grad():
                logits = model(input_ids=torch.tensor([sequence])).logits[0].double()
            for position in range(start, len(sequence)):
                nll -= float(torch.log_softmax(logits[position - 1] / temperature, -1)[sequence[position]])
                count += 1
        assert got[temperature][1] == count == 4 + 1 + 3
        assert got[temperature][0] == pytest.approx(nll, rel=1e-5)
    assert generation_eval.perplexity(8.0, 4) == pytest.approx(math.exp(2.0))
    with pytest.raises(ValueError, match="no context"):
        generation_eval.token_nll(model, [[1, 2]], [0], [1.0], batch_size=1)


def test_prompts_and_model_list():
    assert generation_eval.make_prompts(["one two three four", "too short", "a b c d e"], 3) == [
        "one two three",
        "a b c",
    ]
    assert generation_eval.make_prompts(["a b c d", "e f g h"], 2, num_prompts=1) == ["a b"]
    with pytest.raises(ValueError, match="more than --prompt_words=5"):
        generation_eval.make_prompts(["a b c"], 5)
    assert generation_eval.parse_models("a=x, a=y,b=z") == [("a", "x"), ("a", "y"), ("b", "z")]
    with pytest.raises(ValueError, match="LABEL=PATH"):
        generation_eval.parse_models("a=x,just_a_path")


def _summary(points):
    return {
        temperature: {
            "base_ppl_of_samples": {"mean": quality, "std": 0.0, "n": 1},
            "distinct_2": {"mean": diversity, "std": 0.0, "n": 1},
            "self_bleu": {"mean": 1 - diversity, "std": 0.0, "n": 1},
        }
        for temperature, (quality, diversity) in points.items()
    }


def test_curve_comparison_at_equal_quality():
    summary = {
        "baseline": _summary({"0.7": (10.0, 0.2), "1.0": (20.0, 0.4), "1.3": (40.0, 0.6)}),
        # at quality 20 the baseline has 0.4 -> +0.1; at 10 * sqrt(2) (half-way in log) it has 0.3 -> +0.05;
        # quality 80 lies outside the baseline's range -> no comparison
        "atom": _summary({"0.7": (10.0 * math.sqrt(2.0), 0.35), "1.0": (20.0, 0.5), "1.3": (80.0, 0.1)}),
    }
    rows = generation_eval.compare_curves(summary, "baseline", "atom", "base_ppl_of_samples", "distinct_2")
    assert [row["temperature"] for row in rows] == [0.7, 1.0]
    assert [row["gain"] for row in rows] == [pytest.approx(0.05), pytest.approx(0.1)]
    assert generation_eval.verdict(rows) == "above"
    # self-BLEU: lower is more diverse, so the same curves are "above" again
    rows = generation_eval.compare_curves(summary, "baseline", "atom", "base_ppl_of_samples", "self_bleu")
    assert [row["gain"] for row in rows] == [pytest.approx(0.05), pytest.approx(0.1)]
    assert generation_eval.verdict([{"gain": 0.1}, {"gain": -0.1}]) == "crossing"
    assert (
        generation_eval.verdict([{"gain": -0.1}]) == "below" and generation_eval.verdict([]) == "no overlap in quality"
    )


def test_generation_eval_end_to_end_on_tiny_models(tmp_path, tiny_lms, monkeypatch):
    write_poem_tsv(tmp_path / "test.tsv")
    out = tmp_path / "eval"
    argv = [
        "--models",
        f"baseline={tiny_lms / 'llama'},atom={tiny_lms / 'llama'}",
        "--base_model",
        str(tiny_lms / "llama"),
        "--prompt_file",
        str(tmp_path / "test.tsv"),
        "--prompt_words",
        "2",
        "--num_prompts",
        "3",
        "--num_samples",
        "3",
        "--temperatures",
        "0.5,2.0",
        "--max_new_tokens",
        "5",
        "--output_dir",
        str(out),
        "--plot",
        str(tmp_path / "curves.png"),
    ]
    report = generation_eval.main(argv)
    assert (tmp_path / "curves.png").stat().st_size > 0 and (out / "table.md").read_text().startswith("| model |")
    assert json.loads((out / "summary.json").read_text())["summary"] == json.loads(json.dumps(report["summary"]))
    result = json.loads((out / f"baseline__{'llama'}.json").read_text())
    assert result["num_prompts"] == 3 and result["num_heldout"] == len(VERSES)
    low, high = result["temperatures"]["0.5"], result["temperatures"]["2.0"]
    for values in (low, high):
        assert len(values["examples"]) == 3 and all(len(example["samples"]) == 3 for example in values["examples"])
        texts = [sample for example in values["examples"] for sample in example["samples"]]  # all 9 samples
        assert values["distinct_1"] == pytest.approx(distinct_n(texts, 1))
        assert values["distinct_2"] == pytest.approx(distinct_n(texts, 2))
        assert values["base_ppl_of_samples"] >= 1 and math.isfinite(values["base_ppl_of_samples"])  # exp(NLL >= 0)
    # held-out perplexity at T: the model's own scores of the verses + EOS under softmax(logits / T)
    tokenizer, model = generation_eval.load_causal_lm(str(tiny_lms / "llama"))
    ids = [tokenizer(verse)["input_ids"] + [tokenizer.eos_token_id] for verse in VERSES]
    expected = generation_eval.token_nll(model, ids, [1] * len(ids), [2.0], batch_size=1)[2.0]
    assert high["heldout_ppl"] == pytest.approx(generation_eval.perplexity(*expected), rel=1e-5)
    # same model and seed under both labels -> identical numbers; summary over one model has std 0
    assert json.loads((out / "atom__llama.json").read_text())["temperatures"] == result["temperatures"]
    assert report["comparisons"]["atom_vs_baseline:distinct_2@base_ppl_of_samples"]["points"][0]["gain"] == 0
    # a second call with the same settings reuses the per-model JSON
    monkeypatch.setattr(generation_eval, "evaluate_model", None)  # would fail if called
    again = generation_eval.main(argv)
    assert again["summary"] == report["summary"]


@pytest.mark.parametrize(
    "flags, match",
    [
        (["--temperatures", "0,1"], "must be > 0"),
        (["--num_samples", "1"], "must be >= 2"),
        (["--models", "nolabel"], "LABEL=PATH"),
        (["--base_model", ""], "Give --base_model"),
    ],
)
def test_generation_eval_argument_errors(tmp_path, flags, match):
    argv = ["--models", "a=x", "--prompt_file", "p.tsv", "--output_dir", str(tmp_path), "--base_model", "b", *flags]
    with pytest.raises(ValueError, match=match):
        generation_eval.main(argv)


@pytest.mark.slow
def test_recipe_and_generation_eval_on_smollm2(tmp_path):
    """The real SmolLM2-135M checkpoint on Poem Sentiment verses: 2 steps of the last block + heads, then sampling."""
    from assets import offline_model, shared_data

    folder, data = offline_model("smollm2"), shared_data("poem_sentiment")
    out = tmp_path / "smollm2"
    result = causal_lm.main(
        [
            "--model_name_or_path",
            str(folder),
            "--train_file",
            str(data / "train.tsv"),
            "--validation_file",
            str(data / "dev.tsv"),
            "--max_train_samples",
            "8",
            "--max_eval_samples",
            "8",
            "--max_seq_length",
            "32",
            "--trainable_parameters",
            r"layers\.29\.",
            "--output_dir",
            str(out),
            *COMMON,
        ]
    )
    assert result["num_train"] == 8 and math.isfinite(result["validation"]["perplexity"])
    assert result["validation"]["atom_pairs"] > 0
    model = hf_atom.AutoAtomModel.from_pretrained(out)
    assert type(model).__name__ == "AtomLlamaForCausalLM"
    report = generation_eval.main(
        [
            "--models",
            f"atom={out}",
            "--base_model",
            str(folder),
            "--prompt_file",
            str(data / "test.tsv"),
            "--num_prompts",
            "2",
            "--num_samples",
            "2",
            "--temperatures",
            "1.0",
            "--max_new_tokens",
            "6",
            "--output_dir",
            str(tmp_path / "eval"),
        ]
    )
    values = report["summary"]["atom"]["1.0"]
    assert math.isfinite(values["heldout_ppl"]["mean"]) and math.isfinite(values["base_ppl_of_samples"]["mean"])


def test_trainer_flag_picks_the_arguments_class():
    assert causal_lm.training_arguments_class("atom") is hf_atom.AtomTrainingArguments
    assert causal_lm._requested_trainer(["--output_dir", "o", "--trainer", "sft"]) == "sft"
    assert causal_lm._requested_trainer(["--trainer=sft"]) == "sft" and causal_lm._requested_trainer([]) == "atom"
    with pytest.raises(ValueError, match="--trainer must be one of"):
        causal_lm.training_arguments_class("dpo")


def test_trainer_sft_trains_with_trl_and_the_atom_mixin(tmp_path, tiny_lms):
    pytest.importorskip("trl")
    from hf_atom.trl import AtomSFTConfig

    assert causal_lm.training_arguments_class("sft") is AtomSFTConfig
    write_poem_tsv(tmp_path / "train.tsv")
    data = ["--model_name_or_path", str(tiny_lms / "llama"), "--train_file", str(tmp_path / "train.tsv")]
    data += ["--validation_split_percentage", "25", *COMMON]
    flags = [*data, "--trainer", "sft"]
    # an SFTConfig field: accepted with --trainer sft, unknown to AtomTrainingArguments
    result = causal_lm.main([*flags, "--max_length", "16", "--output_dir", str(tmp_path / "sft")])
    assert result["trainer"] == "sft" and result["num_train"] == 6
    assert result["validation"]["atom_pairs"] > 0 and math.isfinite(result["validation"]["perplexity"])
    assert type(hf_atom.AutoAtomModel.from_pretrained(tmp_path / "sft")).__name__ == "AtomLlamaForCausalLM"
    with pytest.raises(ValueError, match=r"not used by the HfArgumentParser: \['--max_length'"):
        causal_lm.main([*data, "--max_length", "16", "--output_dir", str(tmp_path / "a")])
    with pytest.raises(ValueError, match="trl's collator drops"):
        causal_lm.main([*flags, "--atom_exclude_special_tokens", "true", "--output_dir", str(tmp_path / "x")])


def test_trainer_sft_with_packing_pairs_the_packed_samples(tmp_path, tiny_lms):
    """`--trainer sft --packing true`: trl packs samples into rows told apart by position_ids; L_A sees the samples."""
    pytest.importorskip("trl")
    write_poem_tsv(tmp_path / "train.tsv")
    flags = ["--model_name_or_path", str(tiny_lms / "llama"), "--train_file", str(tmp_path / "train.tsv"),
             "--validation_split_percentage", "25", *COMMON, "--trainer", "sft", "--packing", "true",
             "--max_length", "64", "--atom_weight", "1.0"]  # fmt: skip
    from _common import parse_arguments

    argv = flags + ["--output_dir", str(tmp_path / "sft")]
    parsed = parse_arguments(
        (causal_lm.ModelArguments, causal_lm.DataArguments, causal_lm.training_arguments_class("sft")), argv
    )
    trainer, results = causal_lm.run(*parsed)
    train_logs = [log for log in trainer.state.log_history if "atom_pairs" in log and "eval_atom_pairs" not in log]
    assert train_logs and min(log["atom_pairs"] for log in train_logs) >= 1
    assert results["validation"]["atom_pairs"] >= 1 and math.isfinite(results["validation"]["perplexity"])
