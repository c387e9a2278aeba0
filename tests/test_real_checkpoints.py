"""The three real checkpoints of shared/ASSETS.md wrap and train a step with no special code (slow: ~1 min)."""

import pytest
import torch
from assets import offline_model, shared_data
from transformers import AutoImageProcessor, AutoTokenizer

import hf_atom
from hf_atom import AtomConfig

pytestmark = pytest.mark.slow


def train_step(model, inputs):
    model.train()
    optimizer = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    out = model(**inputs)
    atom = hf_atom.atom_loss(out.atom_q, out.atom_p, out.atom_mask)
    loss = out.loss + 0.1 * atom
    assert torch.isfinite(loss) and atom.item() != 0
    loss.backward()
    optimizer.step()
    moved = {n for n, p in model.named_parameters() if not torch.equal(p.detach(), before[n])}
    assert any(n.startswith("atom_head") for n in moved)
    assert any(not n.startswith("atom_head") for n in moved)
    return out


def test_minilm_sequence_classification(tmp_path):
    folder = offline_model("minilm")
    tokenizer = AutoTokenizer.from_pretrained(folder)
    model = hf_atom.AutoAtomModelForSequenceClassification.from_pretrained(folder, num_labels=2)
    texts = ["the cat sat on the mat .", "colorless green ideas sleep furiously", "him went store ."]
    inputs = tokenizer(texts, padding=True, return_tensors="pt")
    out = train_step(model, {**inputs, "labels": torch.tensor([1, 1, 0])})
    assert out.atom_q.shape == inputs["input_ids"].shape
    assert torch.equal(out.atom_mask, inputs["attention_mask"].bool())
    model.save_pretrained(tmp_path)
    reloaded = hf_atom.AutoAtomModel.from_pretrained(tmp_path)
    assert type(reloaded) is type(model)


def test_dinov2_image_classification():
    from PIL import Image

    folder = offline_model("dinov2")
    images_dir = shared_data("pets3", "images")
    paths = sorted(images_dir.glob("*/*.jpg"))[:2]
    processor = AutoImageProcessor.from_pretrained(folder)
    pixels = processor([Image.open(p).convert("RGB") for p in paths], return_tensors="pt")["pixel_values"]
    model = hf_atom.AutoAtomModelForImageClassification.from_pretrained(folder, num_labels=3)
    out = train_step(model, {"pixel_values": pixels, "labels": torch.tensor([0, 0])})
    rows, cols = pixels.shape[-2] // 14, pixels.shape[-1] // 14
    assert out.atom_q.shape == (2, rows * cols)
    assert model.token_importance(pixel_values=pixels).grid().shape == (2, rows, cols)


@pytest.mark.parametrize("task", ["causal_lm", "sequence_classification"])
def test_smollm2(task):
    folder = offline_model("smollm2")
    tokenizer = AutoTokenizer.from_pretrained(folder)
    tokenizer.pad_token = tokenizer.pad_token or tokenizer.eos_token
    texts = ["the old oak stood alone", "a bright and merry morning sang"]
    inputs = tokenizer(texts, padding=True, return_tensors="pt")
    if task == "causal_lm":
        model = hf_atom.AutoAtomModelForCausalLM.from_pretrained(folder, atom_config=AtomConfig(position_dim=64))
        labels = inputs["input_ids"].masked_fill(inputs["attention_mask"] == 0, -100)
    else:
        model = hf_atom.AutoAtomModelForSequenceClassification.from_pretrained(
            folder, num_labels=2, pad_token_id=tokenizer.pad_token_id, atom_config=AtomConfig(position_dim=64)
        )
        labels = torch.tensor([0, 1])
    # train only the last block and the heads: a full step on 135M parameters is slow on 2 CPU cores
    for name, param in model.named_parameters():
        param.requires_grad = name.startswith("atom_head") or ".layers.29." in name or name.startswith("score")
    out = train_step(model, {**inputs, "labels": labels})
    assert out.atom_q.shape == inputs["input_ids"].shape and out.atom_p.shape[-1] == 64
