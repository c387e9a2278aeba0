"""Atom heads on tiny models of every family: outputs, task path, padding, gradients, save/load, PEFT, errors."""

import copy
import inspect
import math
import pickle

import pytest
import torch
import transformers as T
from tiny_models import FAMILIES, bert, vit

import hf_atom
from hf_atom import AtomConfig, AutoAtomModel, atom_loss, atom_summaries, with_atom


def build_pair(family, config=None):
    torch.manual_seed(0)
    base = family.build().eval()
    atom = with_atom(copy.deepcopy(base), config).eval()
    return base, atom


@pytest.mark.parametrize("name", list(FAMILIES))
def test_outputs_shapes_and_identical_task_path(name):
    family = FAMILIES[name]
    base, atom = build_pair(family)
    inputs = family.inputs()
    expected = base(**inputs)
    out = atom(**inputs)
    assert type(atom).__name__ == "Atom" + type(base).__name__
    assert isinstance(atom, type(base)) and isinstance(atom, T.PreTrainedModel)
    # the task path is untouched, bit for bit
    assert torch.equal(out.logits, expected.logits)
    assert torch.equal(out.loss, expected.loss)
    batch = inputs[next(iter(inputs))].shape[0]
    assert out.atom_q.shape == (batch, family.num_tokens)
    assert out.atom_p.shape == (batch, family.num_tokens, family.hidden)
    assert out.atom_mask.shape == (batch, family.num_tokens) and out.atom_mask.dtype == torch.bool
    assert torch.isfinite(out.atom_q).all() and torch.isfinite(out.atom_p).all()
    assert out.atom_q.std() > 0  # charges of a randomly initialised head differ between tokens
    assert "hidden_states" not in out  # only returned when asked for
    assert atom(**inputs, output_hidden_states=True).hidden_states is not None


@pytest.mark.parametrize("name", list(FAMILIES))
def test_atom_loss_backpropagates_into_backbone(name):
    family = FAMILIES[name]
    _, atom = build_pair(family)
    atom.train()
    out = atom(**family.inputs())
    loss = atom_loss(out.atom_q, out.atom_p, out.atom_mask)
    assert loss.item() != 0
    loss.backward()
    head_grads = [p.grad for p in atom.atom_head.parameters()]
    assert all(g is not None and g.abs().sum() > 0 for g in head_grads)
    backbone = [(n, p) for n, p in atom.named_parameters() if not n.startswith("atom_head")]
    with_grad = [n for n, p in backbone if p.grad is not None and p.grad.abs().sum() > 0]
    # the first (embedding / stem) parameters are reached
    assert any(n == backbone[0][0] for n in with_grad), backbone[0][0]


@pytest.mark.parametrize("name", ["bert", "llama_cls", "gpt2"])
@pytest.mark.parametrize("side", ["right", "left"])
def test_padding_never_enters_the_atom(name, side):
    """A padded sample has the same atom summaries as the same sample alone, and masked positions are False."""
    family = FAMILIES[name]
    _, atom = build_pair(family)
    ids = torch.randint(3, 64, (2, 6))
    mask = torch.ones(2, 6, dtype=torch.long)
    short = ids[0, :4].clone()
    if side == "right":
        ids[0, 4:], mask[0, 4:] = 0, 0
        ids[0, :4] = short
    else:
        ids[0, :2], mask[0, :2] = 0, 0
        ids[0, 2:] = short
    with torch.no_grad():
        batched = atom(input_ids=ids, attention_mask=mask)
        alone = atom(input_ids=short[None], attention_mask=torch.ones(1, 4, dtype=torch.long))
    assert torch.equal(batched.atom_mask, mask.bool())
    if side == "left":
        return  # positions shift under left padding unless the caller passes position_ids: masking is what we check
    s_batched = atom_summaries(batched.atom_q[:1], batched.atom_p[:1], batched.atom_mask[:1])
    s_alone = atom_summaries(alone.atom_q, alone.atom_p, alone.atom_mask)
    for a, b in zip(s_batched.as_tuple(), s_alone.as_tuple()):
        assert torch.allclose(a.float(), b.float(), atol=1e-5), (a, b)


def test_padding_values_do_not_change_loss():
    family = FAMILIES["bert"]
    _, atom = build_pair(family)
    inputs = family.inputs()
    out = atom(**inputs)
    loss = atom_loss(out.atom_q, out.atom_p, out.atom_mask)
    # garbage in the padded positions of q and p changes nothing
    q = out.atom_q.masked_fill(~out.atom_mask, 0.99)
    p = out.atom_p.masked_fill(~out.atom_mask[..., None], 1e6)
    assert torch.equal(loss, atom_loss(q, p, out.atom_mask))


def test_vit_class_token_is_optional():
    family = FAMILIES["vit"]
    _, atom = build_pair(family, AtomConfig(include_cls_token=True))
    out = atom(**family.inputs())
    assert out.atom_q.shape == (3, 17)
    importance = atom.token_importance(pixel_values=family.inputs()["pixel_values"])
    assert importance.num_prefix_tokens == 1 and importance.grid().shape == (3, 4, 4)


def test_special_tokens_can_be_excluded():
    family = FAMILIES["bert"]
    _, atom = build_pair(family, AtomConfig(exclude_special_tokens=True))
    inputs = family.inputs()
    special = torch.zeros_like(inputs["input_ids"])
    special[:, 0] = 1
    out = atom(**inputs, special_tokens_mask=special)
    assert not out.atom_mask[:, 0].any()
    assert torch.equal(out.atom_mask[:, 1:], inputs["attention_mask"][:, 1:].bool())
    assert "special_tokens_mask" in inspect.signature(atom.forward).parameters
    with pytest.raises(ValueError, match="special_tokens_mask"):
        atom(**inputs)


def test_hidden_layer_choice():
    family = FAMILIES["bert"]
    torch.manual_seed(0)
    atom = with_atom(family.build().eval(), AtomConfig(hidden_layer=1))
    inputs = family.inputs()
    out = atom(**inputs, output_hidden_states=True)
    q, p = atom.atom_head(out.hidden_states[1])
    assert torch.equal(out.atom_q, q) and torch.equal(out.atom_p, p)


def test_resnet_uses_stage_widths():
    torch.manual_seed(0)
    atom = with_atom(FAMILIES["resnet"].build(), AtomConfig(hidden_layer=0))
    assert atom.atom_head.importance.in_features == 8  # the stem's embedding_size
    out = atom(pixel_values=torch.randn(2, 3, 32, 32))
    assert out.atom_q.shape == (2, 64)  # 8x8 stem cells


def test_custom_token_selector():
    family = FAMILIES["bert"]

    def first_three(model, outputs, inputs):
        hidden = outputs["hidden_states"][-1][:, :3]
        return hidden, None

    torch.manual_seed(0)
    atom = with_atom(family.build(), token_selector=first_three)
    out = atom(**family.inputs())
    assert out.atom_q.shape == (3, 3) and out.atom_mask.all()


def test_importance_head_is_randomly_initialised_on_every_path(tmp_path):
    family = FAMILIES["bert"]
    torch.manual_seed(0)
    base = family.build()
    base.save_pretrained(tmp_path / "plain")
    models = [
        with_atom(family.build()),
        hf_atom.atom_class_for(T.BertForSequenceClassification)(base.config),
        hf_atom.AutoAtomModelForSequenceClassification.from_pretrained(tmp_path / "plain"),
        AutoAtomModel.from_config(T.BertConfig(**{**base.config.to_dict(), "atom_config": None})),
    ]
    for model in models:
        weight = model.atom_head.importance.weight
        assert weight.abs().sum() > 0
        # our init (std 1/sqrt(h)), not the backbone's 0.02 default
        assert 0.5 / math.sqrt(16) < weight.std().item() < 2.0 / math.sqrt(16)


@pytest.mark.parametrize("name", ["bert", "vit", "gpt2", "resnet"])
def test_save_and_reload_round_trip(name, tmp_path):
    family = FAMILIES[name]
    base, atom = build_pair(family, AtomConfig(weight=0.3, softening=0.2, position_dim=5, step="literal"))
    inputs = family.inputs()
    with torch.no_grad():
        out = atom(**inputs)
    atom.save_pretrained(tmp_path)
    reloaded = AutoAtomModel.from_pretrained(tmp_path).eval()
    assert type(reloaded) is type(atom)
    assert reloaded.atom_config == atom.atom_config and reloaded.atom_config.step == "literal"
    with torch.no_grad():
        again = reloaded(**inputs)
    for key in ("logits", "atom_q", "atom_p", "atom_mask"):
        assert torch.equal(again[key], out[key]), key
    # the same folder loads as a plain model (the heads are unexpected keys there)
    plain = family.auto_class.from_pretrained(tmp_path).eval()
    assert type(plain) is type(base)
    with torch.no_grad():
        assert torch.equal(plain(**inputs).logits, out.logits)


def test_task_auto_class_wraps_plain_checkpoint(tmp_path):
    torch.manual_seed(0)
    base = bert().eval()
    base.save_pretrained(tmp_path)
    atom = hf_atom.AutoAtomModelForSequenceClassification.from_pretrained(
        tmp_path, atom_config=AtomConfig(position_dim=4)
    ).eval()
    inputs = FAMILIES["bert"].inputs()
    with torch.no_grad():
        assert torch.equal(atom(**inputs).logits, base(**inputs).logits)
    assert atom.atom_head.position.out_features == 4


def test_with_atom_keeps_weights_and_device_dtype():
    torch.manual_seed(0)
    model = bert().to(torch.float64)
    embedding = model.bert.embeddings.word_embeddings.weight
    atom = with_atom(model)
    assert atom is model and atom.bert.embeddings.word_embeddings.weight is embedding
    assert atom.atom_head.importance.weight.dtype == torch.float64
    # calling again with a new config replaces the heads
    with_atom(atom, AtomConfig(position_dim=3))
    assert atom.atom_head.position.out_features == 3 and atom.atom_config.position_dim == 3


def test_atom_classes_pickle():
    atom_class = hf_atom.atom_class_for(T.BertForSequenceClassification)
    assert pickle.loads(pickle.dumps(atom_class)) is atom_class
    family = FAMILIES["vit"]
    _, atom = build_pair(family)
    out = atom(**family.inputs())
    restored = pickle.loads(pickle.dumps(out))
    assert torch.equal(restored.atom_q, out.atom_q)


def test_return_dict_false_appends_atom_outputs():
    family = FAMILIES["bert"]
    _, atom = build_pair(family)
    inputs = family.inputs()
    as_tuple = atom(**inputs, return_dict=False)
    as_dict = atom(**inputs)
    assert len(as_tuple) == len(as_dict)
    assert torch.equal(as_tuple[-3], as_dict.atom_q)


def test_trainer_sees_the_forward_signature():
    _, atom = build_pair(FAMILIES["bert"])
    params = inspect.signature(atom.forward).parameters
    for name in ("input_ids", "attention_mask", "labels", "special_tokens_mask"):
        assert name in params
    assert set(hf_atom.ATOM_OUTPUT_KEYS) <= set(atom.config.keys_to_ignore_at_inference)


def test_token_importance_text_and_image():
    family = FAMILIES["bert"]
    _, atom = build_pair(family)
    inputs = family.inputs()
    offsets = torch.stack([torch.arange(7), torch.arange(7) + 1], dim=-1).expand(3, 7, 2)
    importance = atom.token_importance(**inputs, offset_mapping=offsets)
    assert importance.q.shape == (3, 7) and not importance.is_image
    rows = importance.tokens(0, text="abcdefg")
    assert [r["position"] for r in rows] == [0, 1, 2, 3, 4]  # padding dropped, order kept
    assert [r["text"] for r in rows] == list("abcde")
    assert rows[0]["token_id"] == int(inputs["input_ids"][0, 0])
    assert torch.allclose(importance.q, atom(**inputs).atom_q)

    _, vit_atom = build_pair(FAMILIES["vit"])
    pixels = FAMILIES["vit"].inputs()["pixel_values"]
    image = vit_atom.token_importance(pixel_values=pixels)
    assert image.is_image and image.grid_shape == (4, 4) and image.cell_size == (4.0, 4.0)
    assert torch.allclose(image.grid().reshape(3, 16), vit_atom(pixel_values=pixels).atom_q)
    with pytest.raises(ValueError, match="grid"):
        importance.grid()


def test_peft_keeps_heads_trainable_and_round_trips(tmp_path):
    peft = pytest.importorskip("peft")
    torch.manual_seed(0)
    base = bert().eval()
    base.save_pretrained(tmp_path / "base")
    atom = AutoAtomModel.from_pretrained(tmp_path / "base", atom_config=AtomConfig())
    # the heads were freshly initialised: save them as part of the base for a deterministic reload
    atom.save_pretrained(tmp_path / "atom_base")
    lora = peft.LoraConfig(r=2, target_modules=["query", "value"], task_type="SEQ_CLS")
    model = hf_atom.get_peft_model(atom, lora)
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert any("atom_head" in n for n in trainable)
    assert any("lora_" in n for n in trainable)
    assert not any("word_embeddings" in n for n in trainable)
    # one step that moves the heads
    inputs = FAMILIES["bert"].inputs()
    out = model(**inputs)
    (out.loss + atom_loss(out.atom_q, out.atom_p, out.atom_mask)).backward()
    with torch.no_grad():
        for p in model.parameters():
            if p.requires_grad and p.grad is not None:
                p -= 0.5 * p.grad
    model.eval()
    with torch.no_grad():
        expected = model(**inputs)
    model.save_pretrained(tmp_path / "adapter")
    fresh = AutoAtomModel.from_pretrained(tmp_path / "atom_base").eval()
    with torch.no_grad():
        before = fresh(**inputs).atom_q
    reloaded = peft.PeftModel.from_pretrained(fresh, tmp_path / "adapter").eval()
    with torch.no_grad():
        again = reloaded(**inputs)
    assert torch.allclose(again.atom_q, expected.atom_q) and torch.allclose(again.logits, expected.logits)
    assert not torch.allclose(again.atom_q, before)  # the trained heads came from the adapter
    # a plain peft.get_peft_model would have frozen the heads
    frozen = peft.get_peft_model(AutoAtomModel.from_pretrained(tmp_path / "atom_base"), lora)
    assert not any(p.requires_grad for n, p in frozen.named_parameters() if "atom_head" in n)


# ---------------------------------------------------------------------------------------------------------
# Errors
# ---------------------------------------------------------------------------------------------------------


def test_unsupported_model_raises():
    with pytest.raises(ValueError, match="PreTrainedModel"):
        with_atom(torch.nn.Linear(3, 3))
    with pytest.raises(ValueError, match="AtomConfig"):
        with_atom(bert(), {"weight": 0.1})


def test_hidden_layer_out_of_range_raises_at_construction():
    with pytest.raises(ValueError, match="hidden_layer=7.*3 hidden states"):
        with_atom(bert(), AtomConfig(hidden_layer=7))
    with pytest.raises(ValueError, match="hidden_layer=-4"):
        with_atom(vit(), AtomConfig(hidden_layer=-4))


def test_missing_inputs_raise():
    _, atom = build_pair(FAMILIES["bert"])
    with pytest.raises(ValueError, match="needs one of .*input_ids"):
        atom(attention_mask=torch.ones(2, 3))
    _, vit_atom = build_pair(FAMILIES["vit"])
    with pytest.raises(ValueError, match="pixel_values"):
        vit_atom(labels=torch.tensor([0]))


class NoHiddenStatesConfig(T.PretrainedConfig):
    model_type = "no_hidden_states_test"

    def __init__(self, hidden_size=4, **kwargs):
        self.hidden_size = hidden_size
        super().__init__(**kwargs)


class NoHiddenStatesModel(T.PreTrainedModel):
    config_class = NoHiddenStatesConfig

    def __init__(self, config):
        super().__init__(config)
        self.linear = torch.nn.Linear(config.hidden_size, 2)
        self.post_init()

    def forward(self, input_ids=None, **kwargs):
        return T.modeling_outputs.SequenceClassifierOutput(logits=self.linear(torch.ones(input_ids.shape[0], 4)))


def test_model_without_hidden_states_raises_clearly():
    with pytest.raises(ValueError, match="input_dim"):
        with_atom(NoHiddenStatesModel(NoHiddenStatesConfig(hidden_size=4)))
    atom = with_atom(NoHiddenStatesModel(NoHiddenStatesConfig()), AtomConfig(input_dim=4))
    with pytest.raises(ValueError, match="returned no `hidden_states`.*token_selector"):
        atom(input_ids=torch.ones(2, 3, dtype=torch.long))


def test_push_to_hub_uploads_heads_and_settings(tmp_path, monkeypatch):
    """push_to_hub goes through save_pretrained: the uploaded folder is a full atom checkpoint (Hub calls faked)."""
    import shutil
    import types

    import transformers.utils.hub as hub

    uploaded = tmp_path / "uploaded"
    monkeypatch.setattr(
        hub,
        "hf_api",
        lambda: types.SimpleNamespace(create_repo=lambda repo_id, **kwargs: types.SimpleNamespace(repo_id=repo_id)),
    )
    monkeypatch.setattr(
        hub,
        "create_and_tag_model_card",
        lambda *a, **k: types.SimpleNamespace(save=lambda path: open(path, "w").write("card")),
    )

    def fake_upload(self, folder, repo_id, **kwargs):
        shutil.copytree(folder, uploaded)
        return repo_id

    monkeypatch.setattr(T.PreTrainedModel, "_upload_modified_files", fake_upload, raising=False)
    _, atom = build_pair(FAMILIES["bert"], AtomConfig(position_dim=3))
    assert atom.push_to_hub("someone/atom-bert") == "someone/atom-bert"
    reloaded = AutoAtomModel.from_pretrained(uploaded)
    assert reloaded.atom_head.position.out_features == 3
    assert torch.equal(reloaded.atom_head.importance.weight, atom.atom_head.importance.weight)
