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

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "recipes"))

import causal_lm  # noqa: E402

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


def test_per_line_examples_on_raw_poem_tsv(tmp_path, tiny_lms):
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
    assert read_results(out) == json.loads(json.dumps(result))
    assert result["text_column"] == "verse_text" and result["num_train"] == 8 and result["num_validation"] == 4
    for split in ("validation", "test"):
        assert result[split]["perplexity"] == pytest.approx(math.exp(result[split]["loss"]))
        assert result[split]["atom_pairs"] > 0 and "atom_loss" in result[split]
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
    # No clipping: the total gradient norm is taken over all parameters, and the heads' zero-gradient norms in that
    # sum change its rounding by about one ulp (measured: parameters then differ by ~1e-9).
    args = ["--train_file", str(tmp_path / "train.txt"), "--validation_split_percentage", "0", "--max_grad_norm", "0"]
    args += COMMON
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
    # AtomTrainer's loss convention (README, "Loss scaling"): per-micro-batch token means. A plain Trainer instead
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
