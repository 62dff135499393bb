"""Context-mixing measures against their definitions computed the slow, obvious way on tiny models (to < 1e-5).

The slow versions share nothing with attnscope's code but the inputs: they run the whole model once per (layer,
token) with a forward hook on the layer's value projection (the models' own attention implementation runs, SDPA
by default), read the layer's modules' outputs with hooks, and apply each paper's formula entry by entry.

- value zeroing: zero token j's value vector, compare the layer's output (cosine distance), rows divided by sums;
- ALTI / norm: keep only token j's value vector: the output projection then returns token j's share of the
  attention output, so ``T_i(x_j)`` is built from the modules' own outputs (plus the residual on the diagonal,
  through the LayerNorm's linear part in post-LN BERT), and the block output is the model's real one;
- attention x gradient: a test-only eager attention function keeps each layer's softmax weights as tensors that
  require a gradient, and autograd gives ``dF/dA`` directly.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

import attnscope
import tiny_models
from attnscope.analysis import explain
from attnscope.analysis.measures import contributions, rollout_layers
from attnscope.errors import InputError

TEXT = "the cat sat on the mat and it was happy"
ARCHS = ("bert", "gpt2", "llama")


def parts(arch, model, layer):
    """(layer module, value projection and the slice of its output that is the value, output projection,
    post-LN LayerNorm or None) of one layer, written out per family."""
    if arch == "bert":
        lay = model.encoder.layer[layer]
        return lay, lay.attention.self.value, slice(None), lay.attention.output.dense, lay.attention.output.LayerNorm
    if arch == "gpt2":
        lay, d = model.transformer.h[layer], model.config.n_embd
        return lay, lay.attn.c_attn, slice(2 * d, 3 * d), lay.attn.c_proj, None
    lay = model.model.layers[layer]
    return lay, lay.self_attn.v_proj, slice(None), lay.self_attn.o_proj, None


def inputs(tok, text=TEXT):
    return dict(tok(text, return_tensors="pt"))


def run(model, enc, hooks):
    """One forward pass with ``hooks`` [(module, fn)] installed; they record into their closures."""
    handles = [m.register_forward_hook(fn) for m, fn in hooks]
    try:
        with torch.no_grad():
            model(**enc)
    finally:
        for h in handles:
            h.remove()


def grab(store, key, index=None):
    def hook(module, args, output):
        out = output[0] if isinstance(output, tuple) else output
        store[key] = (args[0] if index == "input" else out)[0].detach().clone()
    return hook


def value_edit(columns, keep=None, zero=None):
    """Zero value rows: every token but ``keep``, or only ``zero``."""
    def hook(module, args, output):
        out = output.clone()
        rows = [t for t in range(out.shape[1]) if t != keep] if keep is not None else [zero]
        out[0, rows, columns] = 0.0
        return out
    return hook


def slow_value_zeroing(arch, model, tok) -> np.ndarray:
    enc = inputs(tok)
    n, L = enc["input_ids"].shape[1], model.config.num_hidden_layers
    out = np.zeros((L, n, n))
    for layer in range(L):
        lay, value, cols, _, _ = parts(arch, model, layer)
        base = {}
        run(model, enc, [(lay, grab(base, "out"))])
        for j in range(n):
            got = {}
            run(model, enc, [(value, value_edit(cols, zero=j)), (lay, grab(got, "out"))])
            for i in range(n):
                a, b = got["out"][i].double(), base["out"][i].double()
                out[layer, i, j] = 1.0 - float(a @ b / (a.norm() * b.norm()))
    return out / out.sum(-1, keepdims=True)


def slow_per_token_vectors(arch, model, tok):
    """Per layer: T [n, n, D] (T[i, j] = T_i(x_j)) and the real block output y [n, D], from the modules."""
    enc = inputs(tok)
    n, L = enc["input_ids"].shape[1], model.config.num_hidden_layers
    found = []
    for layer in range(L):
        lay, value, cols, proj, ln = parts(arch, model, layer)
        real = {}
        handle = lay.register_forward_pre_hook(
            lambda m, a, k, real=real: real.update(x=(a[0] if a else k["hidden_states"])[0]), with_kwargs=True)
        run(model, enc, [(proj, grab(real, "proj"))]
            + ([(ln, grab(real, "ln_in", "input")), (ln, grab(real, "ln_out"))] if ln else []))
        handle.remove()
        x = real["x"].double()
        b = proj.bias.detach().double() if proj.bias is not None else torch.zeros(x.shape[-1], dtype=torch.double)
        t = torch.zeros(n, n, x.shape[-1], dtype=torch.double)
        for j in range(n):
            only = {}
            run(model, enc, [(value, value_edit(cols, keep=j)), (proj, grab(only, "proj"))])
            t[:, j] = only["proj"].double() - b
            t[j, j] += x[j]
        if ln is not None:  # post-LN: LN's linear part with each row's scale from the real LN input
            sigma = torch.sqrt(real["ln_in"].double().var(-1, unbiased=False) + ln.eps)
            t = ln.weight.detach().double() * (t - t.mean(-1, keepdim=True)) / sigma[:, None, None]
            y = real["ln_out"].double()
        else:
            y = x + real["proj"].double()
        found.append((t, y))
    return found


def slow_alti(arch, model, tok) -> np.ndarray:
    out = []
    for t, y in slow_per_token_vectors(arch, model, tok):
        n = t.shape[0]
        c = np.zeros((n, n))
        for i in range(n):
            for j in range(n):
                c[i, j] = max(0.0, float(y[i].abs().sum() - (y[i] - t[i, j]).abs().sum()))
        out.append(c / c.sum(-1, keepdims=True))
    return np.stack(out)


def slow_norm(arch, model, tok) -> np.ndarray:
    out = []
    for t, _ in slow_per_token_vectors(arch, model, tok):
        c = t.norm(dim=-1).numpy()
        out.append(c / c.sum(-1, keepdims=True))
    return np.stack(out)


@pytest.mark.parametrize("arch", ARCHS)
def test_value_zeroing_equals_zeroing_one_value_at_a_time(arch):
    model, tok = tiny_models.build(arch)
    want = slow_value_zeroing(arch, model, tok)
    got = contributions((model, tok), TEXT, method="value_zeroing")
    assert got.shape() == (2, 1, *want.shape[1:])
    np.testing.assert_allclose(got.dense()[:, 0], want, atol=1e-5)
    one_at_a_time = contributions((model, tok), TEXT, method="value_zeroing", batch=1)
    np.testing.assert_allclose(one_at_a_time.dense(), got.dense(), atol=1e-6)


@pytest.mark.parametrize("arch", ARCHS)
def test_alti_equals_the_explicit_per_token_decomposition(arch):
    model, tok = tiny_models.build(arch)
    want = slow_alti(arch, model, tok)
    got = contributions((model, tok), TEXT, method="alti")
    np.testing.assert_allclose(got.dense()[:, 0], want, atol=1e-5)
    assert got.meta["measure"]["method"] == "alti" and "Ferrando" in got.meta["measure"]["name"]


@pytest.mark.parametrize("arch", ARCHS)
def test_norm_with_residual_and_layernorm_equals_the_explicit_decomposition(arch):
    model, tok = tiny_models.build(arch)
    got = contributions((model, tok), TEXT, method="norm")
    np.testing.assert_allclose(got.dense()[:, 0], slow_norm(arch, model, tok), atol=1e-5)


class _GradAttention:
    """A test-only eager attention that keeps every layer's weights as tensors requiring a gradient."""

    def __init__(self):
        self.weights = []

    def __call__(self, module, query, key, value, attention_mask, scaling=None, dropout=0.0, **kwargs):
        groups = query.shape[1] // key.shape[1]
        key, value = key.repeat_interleave(groups, 1), value.repeat_interleave(groups, 1)
        scores = query @ key.transpose(2, 3) * (scaling if scaling is not None else query.shape[-1] ** -0.5)
        if attention_mask is not None:
            scores = scores + attention_mask[..., : key.shape[-2]]
        w = torch.softmax(scores, dim=-1)
        w.retain_grad()
        self.weights.append(w)
        return (w @ value).transpose(1, 2).contiguous(), None


@pytest.mark.parametrize("arch", ARCHS)
def test_grad_attention_equals_attention_times_autograd_of_the_weights(arch):
    from transformers import AttentionInterface
    from transformers.masking_utils import AttentionMaskInterface, eager_mask

    model, tok = tiny_models.build(arch)
    got = contributions((model, tok), TEXT, method="grad_attention")
    assert all(p.grad is None for p in model.parameters())  # attnscope's pass left the weights' gradients alone
    slow = _GradAttention()
    AttentionInterface.register("test-grad", slow)
    AttentionMaskInterface.register("test-grad", eager_mask)
    model.set_attn_implementation("test-grad")
    out = model(**inputs(tok))
    # no head (BERT): the length of the mean-pooled last hidden state; else the predicted next token's logit
    score = out.last_hidden_state[0].mean(0).norm() if arch == "bert" else out.logits[0, -1].max()
    score.backward()
    raw = np.stack([(w * w.grad)[0].detach().numpy() for w in slow.weights])
    positive = np.clip(raw, 0, None)
    np.testing.assert_allclose(got.dense(), positive / positive.max(), atol=1e-5)
    measure = got.meta["measure"]
    assert measure["scale"] == pytest.approx(positive.max(), rel=1e-4)
    assert measure["score"] == pytest.approx(float(score.detach()), rel=1e-5)


def test_grad_attention_target_and_position_choose_what_is_explained():
    model, tok = tiny_models.build("llama")
    default = contributions((model, tok), TEXT, method="grad_attention")
    info = default.meta["measure"]
    assert info["explains"] == "token_logit" and info["position"] == len(default.tokens["input"]) - 1
    by_text = contributions((model, tok), TEXT, method="grad_attention", target="dog", position=2)
    by_id = contributions((model, tok), TEXT, method="grad_attention", target=tok.convert_tokens_to_ids("dog"),
                          position=2)
    np.testing.assert_array_equal(by_text.dense(), by_id.dense())
    assert by_text.meta["measure"]["target_text"] == "dog" and by_text.meta["measure"]["token"] == "sat"
    assert not np.allclose(by_text.dense(), default.dense())
    assert by_text.dense()[:, :, 3:].max() == 0.0  # causal: queries after position 2 never reach it
    with pytest.raises(InputError, match="target 'big house' is 2 tokens"):
        contributions((model, tok), TEXT, method="grad_attention", target="big house")
    with pytest.raises(InputError, match="position must be a token index in 0..9"):
        contributions((model, tok), TEXT, method="grad_attention", position=10)


@pytest.mark.parametrize("arch", ARCHS)
@pytest.mark.parametrize("method", ["norm", "alti", "value_zeroing"])
def test_layer_measures_have_rows_summing_to_one_and_respect_the_causal_mask(arch, method):
    trace = contributions(tiny_models.build(arch), TEXT, method=method)
    c = trace.dense()
    assert c.min() >= 0.0
    np.testing.assert_allclose(c.sum(-1), 1.0, atol=1e-6)
    assert trace.meta["kinds"]["self"]["causal"] is (arch != "bert")
    if arch != "bert":
        assert np.triu(c[:, 0], 1).max() == 0.0


def test_rollout_multiplies_layers_and_rolls_identity_layers_out_to_identity():
    eye = np.broadcast_to(np.eye(5, dtype=np.float32), (4, 5, 5))
    np.testing.assert_array_equal(rollout_layers(eye), eye)
    rng = np.random.default_rng(0)
    c = rng.random((3, 5, 5)).astype(np.float32)
    c /= c.sum(-1, keepdims=True)
    got = rollout_layers(c)
    np.testing.assert_allclose(got[2], c[2] @ c[1] @ c[0], rtol=1e-5)
    np.testing.assert_allclose(got.sum(-1), 1.0, atol=1e-5)
    model, tok = tiny_models.build("gpt2")
    per_layer = contributions((model, tok), TEXT, method="alti")
    rolled = contributions((model, tok), TEXT, method="alti", rollout=True)
    np.testing.assert_allclose(rolled.dense()[:, 0], rollout_layers(per_layer.dense()[:, 0]), atol=1e-6)
    assert rolled.meta["measure"]["rollout"] is True and "rolled out" in rolled.meta["measure"]["name"]


@pytest.mark.parametrize("arch", ["gpt2", "llama"])
def test_with_attention_switched_off_every_token_contributes_only_to_itself(arch):
    """Zero output projections: the residual alone carries each token (ALTI and norm are the identity, so is
    their rollout)."""
    model, tok = tiny_models.build(arch)
    for layer in range(2):
        proj = parts(arch, model, layer)[3]
        with torch.no_grad():
            proj.weight.zero_()
            if proj.bias is not None:
                proj.bias.zero_()
    n = len(tok(TEXT)["input_ids"])
    for method in ("alti", "norm"):
        c = contributions((model, tok), TEXT, method=method, rollout=True).dense()[:, 0]
        np.testing.assert_allclose(c, np.broadcast_to(np.eye(n), c.shape), atol=1e-6)


def test_a_trace_is_measured_with_its_own_text_and_every_view_draws_the_result(tmp_path, minilm):
    trace = attnscope.capture(*minilm, "The cat sat on the mat.", pair="It was happy.")
    alti = contributions(trace, method="alti")
    assert alti.tokens == trace.tokens and alti.segments == trace.segments
    assert alti.meta["measure"]["method"] == "alti" and alti.meta["pair"] == "It was happy."
    for view in ("head", "model", "matrix"):
        assert "attnscope" in attnscope.render(view, alti).html()
    loaded = attnscope.load(alti.save(tmp_path / "alti.safetensors"))
    np.testing.assert_array_equal(loaded.dense(), alti.dense())
    assert loaded.meta["measure"] == alti.meta["measure"]


def test_minilm_smoke_values(minilm):
    """The embedded model: the residual keeps most of each token (ALTI's diagonal), and special tokens that draw
    much attention move little (Kobayashi et al.)."""
    e = explain(minilm, "The cat sat on the mat because it was tired.", methods=("alti", "norm", "value_zeroing"))
    measured = {m: t.dense()[:, 0] for m, t in e.measures.items()}
    attention = e.trace.dense().mean(1)  # [L, n, n]
    n = attention.shape[-1]
    special = [0, n - 1]  # [CLS], [SEP]
    diagonal = {m: float(np.mean([np.trace(c) / n for c in v])) for m, v in measured.items()}
    assert diagonal["alti"] > 0.3 and diagonal["norm"] > 0.3, diagonal
    assert np.mean([np.trace(a) / n for a in attention]) < diagonal["alti"]
    to_special = attention[..., special].sum(-1).mean()
    assert measured["norm"][..., special].sum(-1).mean() < 0.5 * to_special
    for c in measured.values():
        np.testing.assert_allclose(c.sum(-1), 1.0, atol=1e-5)


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"method": "saliency"}, "unknown method 'saliency'; expected one of norm, alti, value_zeroing, grad_attention"),
    ({"method": "grad_attention", "rollout": True}, "rollout multiplies one matrix per layer"),
    ({"method": "alti", "target": 3}, "target= and position= choose what grad_attention explains"),
    ({"method": "alti", "batch": 4}, "batch= and memory_mb= size value_zeroing"),
    ({"method": "value_zeroing", "batch": 0}, "batch must be a whole number >= 1"),
])
def test_bad_options_say_what_to_pass(kwargs, message):
    with pytest.raises(InputError, match=message.replace("(", r"\(")):
        contributions(tiny_models.build("gpt2"), TEXT, **kwargs)


def test_models_the_measures_cannot_decompose_are_refused_by_name():
    with pytest.raises(InputError, match="encoder-decoder"):
        contributions(tiny_models.build("bart"), TEXT, method="alti")
    model, tok = tiny_models.build("roberta")
    model.config.model_type = "mystery"
    with pytest.raises(InputError, match="'mystery' model.*bert, distilbert, electra, gpt2, llama"):
        contributions((model, tok), TEXT, method="alti")
    with pytest.raises(InputError, match="needs its tokenizer"):
        contributions(model, TEXT)
