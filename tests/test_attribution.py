"""Attribution methods (hf_atom.attribution) on tiny models, each against a plain reference, and the faithfulness
metrics of benchmarks/faithfulness.py on hand-made orderings with known values."""

import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import transformers as T
from tiny_models import bert, tiny_tokenizer, vit

from hf_atom import with_atom
from hf_atom.attribution import ATTRIBUTION_METHODS, PassCounter, get_attribution_method

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
import faithfulness  # noqa: E402

METHODS = sorted(ATTRIBUTION_METHODS)


@pytest.fixture(scope="module")
def text():
    torch.manual_seed(0)
    model = with_atom(bert()).eval()
    tokenizer = tiny_tokenizer()
    encoded = tokenizer(["the cat sat", "a dog"], return_tensors="pt", padding=True, return_special_tokens_mask=True)
    return model, tokenizer, encoded


@pytest.fixture(scope="module")
def sensitive_text(text):
    """The tiny BERT with large embeddings and classifier, so that its probabilities move with the tokens (at
    initialisation they hardly do, and completeness would be checked on 0 = 0)."""
    _, tokenizer, encoded = text
    torch.manual_seed(1)
    model = bert().eval()
    with torch.no_grad():
        model.bert.embeddings.word_embeddings.weight.mul_(30.0)
        model.classifier.weight.mul_(30.0)
    return model, tokenizer, encoded


@pytest.fixture(scope="module")
def image():
    torch.manual_seed(0)
    return with_atom(vit()).eval(), torch.randn(2, 3, 16, 16)


def test_the_registry_holds_every_method():
    assert set(METHODS) == {
        "q",
        "abs_q",
        "attention",
        "rollout",
        "ig",
        "saliency",
        "input_x_gradient",
        "occlusion",
        "random",
    }


@pytest.mark.parametrize("name", METHODS)
def test_text_scores_skip_padding_and_special_tokens(text, name):
    model, tokenizer, encoded = text
    attribution = get_attribution_method(name)(model, encoded, baseline_token_id=tokenizer.pad_token_id)
    # [CLS] the cat sat [SEP] / [CLS] a dog [SEP] [PAD]
    expected = torch.tensor([[False, True, True, True, False], [False, True, True, False, False]])
    assert attribution.scores.shape == (2, 5) and attribution.method == name
    assert torch.equal(attribution.mask, expected)
    assert attribution.scores[expected].isfinite().all() and attribution.scores[~expected].isnan().all()
    assert attribution.scores[expected].abs().sum() > 0
    if not attribution.signed:
        assert (attribution.scores[expected] >= 0).all()
    assert torch.equal(attribution.target, attribution.probabilities.argmax(-1))


@pytest.mark.parametrize("name", METHODS)
def test_image_scores_are_one_per_patch(image, name):
    model, pixels = image
    attribution = get_attribution_method(name)(model, {"pixel_values": pixels})
    assert attribution.scores.shape == (2, 16) and attribution.grid_shape == (4, 4) and attribution.cell_size == (4, 4)
    assert attribution.mask.all() and attribution.scores.isfinite().all()


def test_ig_is_complete_within_captums_delta(sensitive_text):
    model, tokenizer, encoded = sensitive_text
    attribution = get_attribution_method("ig", n_steps=64)(model, encoded, baseline_token_id=tokenizer.pad_token_id)
    ids = encoded["input_ids"]
    baseline_ids = ids.masked_fill(attribution.mask, tokenizer.pad_token_id)
    with torch.no_grad():
        p_input = model(input_ids=ids, attention_mask=encoded["attention_mask"]).logits.softmax(-1)
        p_base = model(input_ids=baseline_ids, attention_mask=encoded["attention_mask"]).logits.softmax(-1)
    rows = torch.arange(2)
    difference = (p_input - p_base)[rows, attribution.target]
    total = attribution.scores.nan_to_num(0.0).sum(-1)  # unscored tokens equal the baseline: 0 by construction
    assert difference.abs().min() > 1e-4  # the check is not 0 = 0
    assert torch.allclose(total - difference, attribution.delta.float(), atol=1e-6)
    assert (attribution.delta.abs() < 0.02 * difference.abs()).all()


def test_image_ig_is_complete_against_the_mean_image(image):
    model, pixels = image
    attribution = get_attribution_method("ig", n_steps=64)(model, {"pixel_values": pixels})
    with torch.no_grad():
        p_input = model(pixel_values=pixels).logits.softmax(-1)
        p_base = model(pixel_values=torch.zeros_like(pixels)).logits.softmax(-1)
    difference = (p_input - p_base)[torch.arange(2), attribution.target]
    assert torch.allclose(attribution.scores.sum(-1) - difference, attribution.delta.float(), atol=1e-6)


def test_occlusion_equals_replacing_each_token(text):
    model, tokenizer, encoded = text
    attribution = get_attribution_method("occlusion")(model, encoded, baseline_token_id=tokenizer.pad_token_id)
    ids, mask = encoded["input_ids"], encoded["attention_mask"]
    for row in range(2):
        target = int(attribution.target[row])
        with torch.no_grad():
            p = model(input_ids=ids[row : row + 1], attention_mask=mask[row : row + 1]).logits.softmax(-1)[0, target]
            for position in torch.nonzero(attribution.mask[row]).flatten():
                changed = ids[row : row + 1].clone()
                changed[0, position] = tokenizer.pad_token_id
                p_changed = model(input_ids=changed, attention_mask=mask[row : row + 1]).logits.softmax(-1)[0, target]
                assert attribution.scores[row, position].item() == pytest.approx((p - p_changed).item(), abs=1e-6)


def test_saliency_and_input_x_gradient_are_the_embedding_gradient(text):
    model, tokenizer, encoded = text
    layer = model.get_input_embeddings()
    ids, mask = encoded["input_ids"], encoded["attention_mask"]
    embeds = layer(ids).detach().requires_grad_()
    baseline = layer(ids.masked_fill(mask.bool() & ~encoded["special_tokens_mask"].bool(), 0)).detach()
    probabilities = model(inputs_embeds=embeds, attention_mask=mask).logits.softmax(-1)
    target = probabilities.argmax(-1)
    probabilities[torch.arange(2), target].sum().backward()  # samples are independent: one backward for both
    saliency = get_attribution_method("saliency")(model, encoded, baseline_token_id=0)
    gradient_x_input = get_attribution_method("input_x_gradient")(model, encoded, baseline_token_id=0)
    scored = saliency.mask
    assert torch.allclose(saliency.scores[scored], embeds.grad.abs().sum(-1)[scored], atol=1e-7)
    reference = ((embeds - baseline) * embeds.grad).sum(-1)
    assert torch.allclose(gradient_x_input.scores[scored], reference[scored], atol=1e-7)


def test_attention_and_rollout_against_a_plain_loop(sensitive_text):
    model, tokenizer, encoded = sensitive_text
    inputs = {k: v for k, v in encoded.items() if k != "special_tokens_mask"}
    model.set_attn_implementation("eager")
    with torch.no_grad():
        attentions = model(**inputs, output_attentions=True).attentions
    model.set_attn_implementation("sdpa")  # the methods switch to eager themselves and switch back
    attention = get_attribution_method("attention")(model, encoded)
    rollout = get_attribution_method("rollout")(model, encoded)
    assert model.config._attn_implementation == "sdpa"
    for row in range(2):
        last = attentions[-1][row].mean(0)[0]
        joint = torch.eye(5)
        for layer in attentions:  # A_l' = (mean_heads A_l + I) / 2, rows renormalised; R = A_L' ... A_1'
            mixed = (layer[row].mean(0) + torch.eye(5)) / 2
            mixed = mixed / mixed.sum(-1, keepdim=True)
            joint = mixed @ joint
        scored = attention.mask[row]
        assert (last[scored] - attentions[-1][row].mean(0)[-1][scored]).abs().max() > 1e-3  # the class token's row
        assert torch.allclose(attention.scores[row][scored], last[scored], atol=1e-6)
        assert torch.allclose(rollout.scores[row][scored], joint[0][scored], atol=1e-6)


def test_q_is_the_atom_heads_charge(text):
    model, tokenizer, encoded = text
    inputs = {k: v for k, v in encoded.items() if k != "special_tokens_mask"}
    q = model.token_importance(**inputs).q
    attribution = get_attribution_method("q")(model, encoded)
    absolute = get_attribution_method("abs_q")(model, encoded)
    scored = attribution.mask
    assert torch.equal(attribution.scores[scored], q[scored]) and torch.equal(absolute.scores[scored], q[scored].abs())


def test_cost_is_counted_per_pass(text):
    model, tokenizer, encoded = text
    one = {k: v[:1] for k, v in encoded.items()}  # [CLS] the cat sat [SEP]: 3 scored tokens
    expected = {
        "q": (1, 0),
        "attention": (1, 0),
        "rollout": (1, 0),
        "random": (1, 0),
        "saliency": (2, 1),  # prediction + the gradient pass
        "input_x_gradient": (2, 1),
        "ig": (1 + 8 + 2, 8),  # prediction + n_steps + Captum's delta (input and baseline)
        "occlusion": (1 + 1 + 3 + 1, 0),  # prediction + Captum's reference + 3 tokens + the unscored group
    }
    for name, counts in expected.items():
        method = get_attribution_method(name, **({"n_steps": 8} if name == "ig" else {}))
        with PassCounter(model) as passes:
            method(model, one, baseline_token_id=0)
        assert (passes.forwards, passes.backwards) == counts, name


def test_normalized_scores_are_in_range(text):
    model, tokenizer, encoded = text
    attribution = get_attribution_method("ig", n_steps=8)(model, encoded, baseline_token_id=0)
    scaled = attribution.normalized()[attribution.mask]
    assert scaled.abs().max() == pytest.approx(1.0) and scaled.abs().min() < 1.0


def test_unknown_method_names_the_choices():
    with pytest.raises(ValueError, match=r"Unknown attribution method 'gradcam'; choose one of q, abs_q"):
        get_attribution_method("gradcam")


def test_q_on_a_plain_model_is_refused(text):
    _, tokenizer, encoded = text
    with pytest.raises(ValueError, match="has no atom heads: q exists only for atom models"):
        get_attribution_method("q")(bert().eval(), encoded)


class _NoEmbeddings(T.BertForSequenceClassification):
    def get_input_embeddings(self):
        raise NotImplementedError


def test_ig_without_reachable_embeddings_is_refused(text):
    _, tokenizer, encoded = text
    model = _NoEmbeddings(bert().config).eval()
    with pytest.raises(ValueError, match=r"has no `get_input_embeddings\(\)`.*Use `--method occlusion`"):
        get_attribution_method("ig")(model, encoded, baseline_token_id=0)


def test_missing_captum_names_the_extra(text, monkeypatch):
    model, _, encoded = text
    monkeypatch.setitem(sys.modules, "captum", None)
    monkeypatch.setitem(sys.modules, "captum.attr", None)
    with pytest.raises(ImportError, match=r'pip install -e "\.\[interpret\]"'):
        get_attribution_method("ig")(model, encoded, baseline_token_id=0)
    get_attribution_method("attention")(model, encoded)  # methods of our own need no Captum


def test_ig_refuses_a_bad_step_count():
    with pytest.raises(ValueError, match="`n_steps` must be a positive integer"):
        get_attribution_method("ig", n_steps=0)


# -- the benchmark's metrics --------------------------------------------------------------------------------------


def _present_share(important: set, units: int):
    """A hand-made "model": the probability is the share of `important` units not removed."""
    return lambda removed: np.asarray([1.0 - sum(m[i] for i in important) / len(important) for m in removed])


def test_deletion_auc_of_a_perfect_ordering():
    # 10 units, the first 5 important. Best order removes them first: p = 1, .8, .6, .4, .2, 0 at 0..50 %,
    # trapezoid area over [0, 0.5] / 0.5 = (0.5 * 1 + 0.8 + 0.6 + 0.4 + 0.2 + 0.5 * 0) / 5 = 0.5
    probability = _present_share(set(range(5)), 10)
    best = faithfulness.faithfulness_metrics(list(range(10)), 10, probability, original=1.0)
    assert best["deletion_auc"] == pytest.approx(0.5)
    # insertion restores the 5 important ones first into an all-removed input: p = 0, .2, ..., 1 -> 0.5
    assert best["insertion_auc"] == pytest.approx(0.5)
    # comprehensiveness: 1 - p(top k removed) = k / 5 for k = 1, 2, 5; sufficiency: 1 - p(top k only) = 1 - k / 5
    assert [best[f"comprehensiveness@{k}"] for k in (10, 20, 50)] == pytest.approx([0.2, 0.4, 1.0])
    assert [best[f"sufficiency@{k}"] for k in (10, 20, 50)] == pytest.approx([0.8, 0.6, 0.0])
    worst = faithfulness.faithfulness_metrics(list(range(9, -1, -1)), 10, probability, original=1.0)
    assert worst["deletion_auc"] == pytest.approx(1.0)  # the unimportant half goes first: p stays 1
    assert worst["insertion_auc"] == pytest.approx(0.0)
    assert worst["comprehensiveness@50"] == pytest.approx(0.0)


def test_curves_only_touch_scored_units():
    sets = faithfulness.removal_sets([4, 1, 2], units=6)  # units 0, 3, 5 are special / padding
    for masks in sets.values():
        assert all(not m[[0, 3, 5]].any() for m in masks)
    assert [int(m.sum()) for m in sets["deletion"]] == [0, 1, 1, 1, 1, 2]  # round(f * 3), at least 1
    assert sets["insertion"][0].tolist() == [False, True, True, False, True, False]


def test_ranking_puts_the_highest_score_first():
    scores = torch.tensor([float("nan"), 0.2, 0.9, -1.0, 0.2])
    mask = torch.tensor([False, True, True, True, True])
    assert faithfulness.ranking(scores, mask).tolist() == [2, 1, 4, 3]


def test_paired_comparisons_pair_samples_averaged_over_seeds():
    """Each method against q and atom against baseline, paired by sample: hand-made per-sample values."""

    def study(weight, q_values, ig_values):
        metrics = {key: None for key in faithfulness.PAIRED_METRICS}

        def method(values):
            return {key: {"mean": float(np.mean(values)), "values": list(values)} for key in metrics}

        return {
            "model": f"w{weight}",
            "atom_weight": weight,
            "methods": {"q": method(q_values), "ig": method(ig_values)},
        }

    samples = 6
    # Two atom seeds: ig is 0.1 lower (better deletion) than q on every sample, after averaging the seeds.
    atom = [study(0.1, [0.8] * samples, [0.7 - 0.01 * s for _ in range(samples)]) for s in (-1, 1)]
    base = [study(0.0, [0.8] * samples, [0.75 + 0.01 * i for i in range(samples)])]
    comparisons = faithfulness.paired_comparisons(atom + base)
    deletion = comparisons["vs_q"]["0.1"]["ig"]["deletion_auc"]
    assert deletion["n"] == samples and deletion["better"] == samples
    assert deletion["mean_difference"] == pytest.approx(-0.1)
    assert deletion["wilcoxon_p"] == pytest.approx(0.03125)  # 6 of 6 the same sign, two-sided exact
    # atom ig (0.7 everywhere) against baseline ig (0.75 .. 0.80): lower on all 6 samples
    atom_vs_base = comparisons["atom_vs_baseline"]["ig"]["deletion_auc"]
    assert atom_vs_base["better"] == samples and atom_vs_base["mean_difference"] == pytest.approx(-0.075)
    insertion = comparisons["atom_vs_baseline"]["ig"]["insertion_auc"]
    assert insertion["better"] == 0  # higher is better there: the same values count as worse
    # means alone (JSON of before) cannot be paired: the error says to rerun
    for model in atom:
        del model["methods"]["q"]["deletion_auc"]["values"]
    with pytest.raises(ValueError, match="per-sample values"):
        faithfulness.paired_comparisons(atom)


def test_text_stride_takes_every_kth_text_and_refuses_zero(tmp_path, capsys):
    (tmp_path / "dev.tsv").write_text("".join(f"src\t1\t\tsentence {i}\n" for i in range(7)))
    assert faithfulness.read_texts(str(tmp_path / "dev.tsv"), None)[::3] == ["sentence 0", "sentence 3", "sentence 6"]
    with pytest.raises(SystemExit):
        faithfulness.main(["--text_stride", "0", "--text_model", "unused"])
    assert "--text_stride must be >= 1" in capsys.readouterr().err
