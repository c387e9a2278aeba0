"""Build local tiny stand-ins for the Hub assets used by the upstream tests (run once; offline).

Models: tiny random models of the named architectures under assets/<org>/<name>, with the SmolLM2 tokenizer
(a ChatML byte-level BPE, like Qwen's) from .assets/models/smollm2-135m-float32 (made by ../shared/tools/offline_models.py) and trl's bundled chat
template of the family. Datasets: parquet files under assets/trl-internal-testing/<dataset>/<config>/<split>-*.parquet
with a README.md `configs:` block, so `load_dataset("trl-internal-testing/zen", "cfg")` resolves to the local folder
(the tests run with cwd = assets/).
"""

import json
import shutil
import sys
from pathlib import Path

import datasets
import torch
import transformers as T

ROOT = Path(__file__).resolve().parent / "assets"
TOK_SRC = Path(__file__).resolve().parents[2] / ".assets" / "models" / "smollm2-135m-float32"
TPL = Path(T.__file__).parents[1] / "trl" / "chat_templates"
torch.manual_seed(0)


def tokenizer(template):
    tok = T.AutoTokenizer.from_pretrained(TOK_SRC)
    tok.chat_template = (TPL / template).read_text() if template else None
    if template is None:
        tok.chat_template = None
    return tok


COMMON = dict(
    hidden_size=16,
    intermediate_size=32,
    num_hidden_layers=2,
    num_attention_heads=4,
    num_key_value_heads=2,
    head_dim=4,
    max_position_embeddings=1024,
)
MODELS = {
    "tiny-Qwen2ForCausalLM-2.5": ("qwen2", "qwen2_5.jinja", {}),
    "tiny-Qwen3ForCausalLM": ("qwen3", "qwen3.jinja", {}),
    "tiny-Qwen3MoeForCausalLM": (
        "qwen3_moe",
        "qwen3.jinja",
        dict(num_experts=4, num_experts_per_tok=2, moe_intermediate_size=16, decoder_sparse_step=1),
    ),
    "tiny-GPTNeoXForCausalLM": ("gpt_neox", None, dict(num_key_value_heads=None, head_dim=None)),
    "tiny-Cohere2ForCausalLM": (
        "cohere2",
        "cohere2.jinja",
        dict(sliding_window=64, layer_types=["sliding_attention", "full_attention"]),
    ),
    "tiny-Olmo3ForCausalLM": (
        "olmo3",
        "qwen2_5.jinja",
        dict(sliding_window=64, layer_types=["sliding_attention", "full_attention"]),
    ),
    "tiny-Lfm2ForCausalLM": (
        "lfm2",
        "lfm2.jinja",
        dict(layer_types=["conv", "full_attention"], block_ff_dim=32, conv_L_cache=3),
    ),
    "tiny-Lfm2ForCausalLM-2.5": (
        "lfm2",
        "lfm2_2_5.jinja",
        dict(layer_types=["conv", "full_attention"], block_ff_dim=32, conv_L_cache=3),
    ),
    "tiny-GptOssForCausalLM": (
        "gpt_oss",
        "gptoss.jinja",
        dict(
            num_local_experts=4,
            num_experts_per_tok=2,
            sliding_window=64,
            layer_types=["sliding_attention", "full_attention"],
        ),
    ),
    "tiny-Glm4MoeForCausalLM": (
        "glm4_moe",
        "glm4moe.jinja",
        dict(
            n_routed_experts=4,
            num_experts_per_tok=2,
            moe_intermediate_size=16,
            first_k_dense_replace=1,
            n_group=1,
            topk_group=1,
            n_shared_experts=1,
        ),
    ),
    "tiny-LlamaForCausalLM-3.2": ("llama", "llama3_2.jinja", {}),
    "tiny-MistralForCausalLM-0.2": ("mistral", None, {}),
}


def build_model(name, model_type, template, extra):
    out = ROOT / "trl-internal-testing" / name
    tok = tokenizer(template)
    kw = {**COMMON, **extra}
    kw = {k: v for k, v in kw.items() if v is not None}
    kw.update(
        vocab_size=len(tok),
        pad_token_id=tok.pad_token_id,
        eos_token_id=tok.eos_token_id,
        bos_token_id=tok.bos_token_id,
    )
    config = T.AutoConfig.for_model(model_type, **kw)
    config.architectures = [name.split("-")[1]]
    model = T.AutoModelForCausalLM.from_config(config)
    model.save_pretrained(out)
    tok.save_pretrained(out)
    T.GenerationConfig(pad_token_id=tok.pad_token_id, eos_token_id=tok.eos_token_id).save_pretrained(out)
    print("model", name, sum(p.numel() for p in model.parameters()))


ZEN = [
    "Beautiful is better than ugly.",
    "Explicit is better than implicit.",
    "Simple is better than complex.",
    "Complex is better than complicated.",
    "Flat is better than nested.",
    "Sparse is better than dense.",
    "Readability counts.",
    "Special cases aren't special enough to break the rules.",
    "Although practicality beats purity.",
    "Errors should never pass silently.",
    "Unless explicitly silenced.",
    "In the face of ambiguity, refuse the temptation to guess.",
    "There should be one-- and preferably only one --obvious way to do it.",
    "Although that way may not be obvious at first unless you're Dutch.",
    "Now is better than never.",
    "Although never is often better than *right* now.",
    "If the implementation is hard to explain, it's a bad idea.",
    "If the implementation is easy to explain, it may be a good idea.",
    "Namespaces are one honking great idea -- let's do more of those!",
]


def split_rows(rows):
    return {"train": rows[:17], "test": rows[17:]}


def zen_configs():
    def pc(s):
        words = s.split(" ")
        k = max(1, len(words) // 2)
        return " ".join(words[:k]), " " + " ".join(words[k:])

    out = {}
    out["standard_language_modeling"] = [{"text": s} for s in ZEN]
    out["conversational_language_modeling"] = [
        {
            "messages": [
                {"role": "user", "content": f"What is the Zen of Python line {i + 1}?"},
                {"role": "assistant", "content": s},
            ]
        }
        for i, s in enumerate(ZEN)
    ]
    out["standard_prompt_completion"] = [dict(zip(("prompt", "completion"), pc(s))) for s in ZEN]
    out["conversational_prompt_completion"] = [
        {
            "prompt": [{"role": "user", "content": f"What is the Zen of Python line {i + 1}?"}],
            "completion": [{"role": "assistant", "content": s}],
        }
        for i, s in enumerate(ZEN)
    ]
    out["standard_implicit_prompt_preference"] = [
        {"chosen": s, "rejected": ZEN[(i + 1) % len(ZEN)]} for i, s in enumerate(ZEN)
    ]
    out["standard_preference"] = [{"prompt": pc(s)[0], "chosen": pc(s)[1], "rejected": " no."} for s in ZEN]
    return out


def harmony_configs():
    lm = [
        {
            "messages": [
                {"role": "system", "content": "You are a wise assistant."},
                {"role": "user", "content": f"Line {i + 1} of the Zen of Python?"},
                {"role": "assistant", "thinking": "The user wants a Zen line.", "content": s},
            ]
        }
        for i, s in enumerate(ZEN)
    ]
    pcd = [
        {
            "prompt": [{"role": "user", "content": f"Line {i + 1} of the Zen of Python?"}],
            "completion": [{"role": "assistant", "thinking": "A Zen line.", "content": s}],
        }
        for i, s in enumerate(ZEN)
    ]
    return {"language_modeling": lm, "prompt_completion": pcd}


def toolcall_configs():
    tools = [
        {
            "type": "function",
            "function": {
                "name": "get_zen_line",
                "description": "Returns a line of the Zen.",
                "parameters": {
                    "type": "object",
                    "properties": {"index": {"type": "integer", "description": "line"}},
                    "required": ["index"],
                },
            },
        }
    ]
    rows = []
    for i, s in enumerate(ZEN):
        rows.append(
            {
                "messages": [
                    {"role": "user", "content": f"Give me line {i + 1} of the Zen of Python."},
                    {
                        "role": "assistant",
                        "tool_calls": [
                            {"type": "function", "function": {"name": "get_zen_line", "arguments": {"index": i + 1}}}
                        ],
                    },
                    {"role": "tool", "name": "get_zen_line", "content": s},
                    {"role": "assistant", "content": f"Line {i + 1}: {s}"},
                ],
                "tools": json.dumps(tools),
            }
        )
    return {"language_modeling": rows}


def write_dataset(name, configs):
    out = ROOT / "trl-internal-testing" / name
    shutil.rmtree(out, ignore_errors=True)
    yaml = ["---", "configs:"]
    for cfg, rows in configs.items():
        yaml += [f"- config_name: {cfg}", "  data_files:"]
        for split, part in split_rows(rows).items():
            d = out / cfg
            d.mkdir(parents=True, exist_ok=True)
            datasets.Dataset.from_list(part).to_parquet(str(d / f"{split}-00000-of-00001.parquet"))
            yaml += [f"  - split: {split}", f"    path: {cfg}/{split}-*"]
    yaml.append("---")
    (out / "README.md").write_text("\n".join(yaml) + "\n")
    print("dataset", name, list(configs))


def build_tokenizer_only(repo_id, template):
    """A tokenizer folder (no model), e.g. for `chat_template_path="Qwen/Qwen3-4B"`."""
    out = ROOT / repo_id
    tokenizer(template).save_pretrained(out)
    print("tokenizer", repo_id)


if __name__ == "__main__":
    only = sys.argv[1:]
    if not only or "Qwen/Qwen3-4B" in only:
        build_tokenizer_only("Qwen/Qwen3-4B", "qwen3.jinja")
    for name, (mt, tpl, extra) in MODELS.items():
        if only and name not in only:
            continue
        try:
            build_model(name, mt, tpl, extra)
        except Exception as e:
            print("FAILED", name, type(e).__name__, e)
    if not only:
        write_dataset("zen", zen_configs())
        write_dataset("harmony", harmony_configs())
        write_dataset("toolcall", toolcall_configs())
