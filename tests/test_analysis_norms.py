"""Norm-based attention against a brute-force computation, on tiny random models and the real MiniLM.

Besides the norms, each test checks that the per-head vectors ``a_ij v_j W_O^h`` summed over keys and heads (plus
the projection's bias) reproduce what the model's output projection really computed (read with a forward hook), so
the value vectors, the projection and the head order are the model's own.
"""

from __future__ import annotations

import numpy as np
import pytest

import attnscope
import tiny_models
from attnscope.analysis import norm_attention, output_projections
from attnscope.errors import InputError, MissingDataError

TEXT = "the cat sat on the mat and it was happy"

# Where each architecture keeps layer l's output projection, and whether it is nn.Linear (weight transposed).
PROJECTIONS = {
    "bert": lambda m, l: (m.encoder.layer[l].attention.output.dense, True),
    "distilbert": lambda m, l: (m.transformer.layer[l].attention.out_lin, True),
    "gpt2": lambda m, l: (m.transformer.h[l].attn.c_proj, False),
    "llama": lambda m, l: (m.model.layers[l].self_attn.o_proj, True),
}


def projection(module, linear: bool) -> np.ndarray:
    w = module.weight.detach().numpy()
    return w.T if linear else w


def brute_force(attention: np.ndarray, values: np.ndarray, w_os: list[np.ndarray]) -> np.ndarray:
    """``||a_ij v_j W_O^h||`` one entry at a time."""
    L, H, q, k = attention.shape
    d = values.shape[-1]
    out = np.zeros_like(attention)
    for l in range(L):
        for h in range(H):
            w = w_os[l][h * d:(h + 1) * d]
            for i in range(q):
                for j in range(k):
                    out[l, h, i, j] = np.linalg.norm(attention[l, h, i, j] * (values[l, h, j] @ w))
    return out


def capture_with_projection_outputs(model, tok, modules, text=TEXT, **kw):
    """Capture a trace while recording what each output projection module returned."""
    seen = []
    hooks = [m.register_forward_hook(lambda mod, args, out: seen.append(out[0].detach().numpy())) for m in modules]
    try:
        trace = attnscope.capture(model, tok, text, qkv=True, **kw)
    finally:
        for h in hooks:
            h.remove()
    return trace, seen


def assert_vectors_rebuild_the_output(trace, w_os, biases, outputs, kind="self"):
    att, values = trace.dense(kind), trace.qkv[kind]["value"]
    H, d = values.shape[1], values.shape[-1]
    for l, (w, b, real) in enumerate(zip(w_os, biases, outputs)):
        rebuilt = sum((att[l, h] @ values[l, h]) @ w[h * d:(h + 1) * d] for h in range(H)) + b
        np.testing.assert_allclose(rebuilt, real, atol=2e-4)


@pytest.mark.parametrize("arch", sorted(PROJECTIONS))
def test_norms_match_brute_force_on_tiny_models(arch):
    model, tok = tiny_models.build(arch)
    layers = [PROJECTIONS[arch](model, l) for l in range(2)]
    trace, outputs = capture_with_projection_outputs(model, tok, [m for m, _ in layers])
    w_os = [projection(m, linear) for m, linear in layers]
    biases = [m.bias.detach().numpy() if m.bias is not None else 0.0 for m, _ in layers]
    assert_vectors_rebuild_the_output(trace, w_os, biases, outputs)
    got = norm_attention(trace, model)
    assert got.shape == trace.shape() and got.dtype == np.float32
    np.testing.assert_allclose(got, brute_force(trace.dense(), trace.qkv["self"]["value"], w_os), rtol=1e-4,
                               atol=1e-6)


def test_llama_grouped_query_heads_use_their_own_slice_of_the_projection():
    model, tok = tiny_models.build("llama")  # 4 query heads share 2 key/value heads
    trace = attnscope.capture(model, tok, TEXT, qkv=True)
    norms = norm_attention(trace, model)
    v = trace.qkv["self"]["value"]
    np.testing.assert_array_equal(v[:, 0], v[:, 1])  # heads 0 and 1 read the same value vectors...
    assert not np.allclose(norms[:, 0] / np.maximum(trace.dense()[:, 0], 1e-12),
                           norms[:, 1] / np.maximum(trace.dense()[:, 1], 1e-12))  # ...through different W_O rows


@pytest.mark.parametrize("kind", ["encoder", "decoder", "cross"])
def test_encoder_decoder_kinds_find_their_own_projections(kind):
    model, tok = tiny_models.build("bart")
    trace = attnscope.capture(model, tok, TEXT, target="the dog runs", qkv=True)
    layers = {"encoder": [l.self_attn for l in model.model.encoder.layers],
              "decoder": [l.self_attn for l in model.model.decoder.layers],
              "cross": [l.encoder_attn for l in model.model.decoder.layers]}[kind]
    w_os = [a.out_proj.weight.detach().numpy().T for a in layers]
    np.testing.assert_array_equal(np.stack(output_projections(model, kind)), np.stack(w_os))
    got = norm_attention(trace, model, kind=kind)
    np.testing.assert_allclose(got, brute_force(trace.dense(kind), trace.qkv[kind]["value"], w_os), rtol=1e-4,
                               atol=1e-6)


def test_t5_uses_its_o_projection():
    model, tok = tiny_models.build("t5")
    trace = attnscope.capture(model, tok, TEXT, target="the dog runs", qkv=True)
    w_os = [b.layer[0].SelfAttention.o.weight.detach().numpy().T for b in model.encoder.block]
    got = norm_attention(trace, model, kind="encoder")
    np.testing.assert_allclose(got, brute_force(trace.dense("encoder"), trace.qkv["encoder"]["value"], w_os),
                               rtol=1e-4, atol=1e-6)


def test_minilm_norms_rebuild_the_real_attention_output(minilm):
    model, tok = minilm
    modules = [layer.attention.output.dense for layer in model.encoder.layer]
    trace, outputs = capture_with_projection_outputs(model, tok, modules, "The cat sat on the mat.",
                                                     pair="It was very happy.")
    w_os = [m.weight.detach().numpy().T for m in modules]
    assert_vectors_rebuild_the_output(trace, w_os, [m.bias.detach().numpy() for m in modules], outputs)
    got = norm_attention(trace, model)
    assert got.shape == (6, 12, 15, 15)
    np.testing.assert_allclose(got, brute_force(trace.dense(), trace.qkv["self"]["value"], w_os), rtol=1e-4,
                               atol=1e-6)
    # Kobayashi et al.: heads that pour their weight into [CLS]/[SEP] move little through them
    att = trace.dense()
    special = [i for i, t in enumerate(trace.tokens["input"]) if t in ("[CLS]", "[SEP]")]
    weight_share = att[..., special].sum(-1).mean(-1)  # [L, H]
    norm_share = (got[..., special].sum(-1) / got.sum(-1)).mean(-1)
    sinks = weight_share > 0.5
    assert sinks.sum() >= 5
    assert norm_share[sinks].mean() < 0.5 * weight_share[sinks].mean()


def test_model_may_be_given_by_offline_name(minilm, minilm_trace):
    np.testing.assert_allclose(norm_attention(minilm_trace, "minilm"), norm_attention(minilm_trace, minilm[0]),
                               atol=1e-6)


def test_missing_value_vectors_say_how_to_capture_them(minilm):
    trace = attnscope.capture(*minilm, "no vectors here")
    with pytest.raises(MissingDataError, match="qkv=True"):
        norm_attention(trace, minilm[0])


def test_a_model_with_other_layers_is_refused(minilm_trace):
    model, _ = tiny_models.build("bert")
    with pytest.raises(InputError, match="found 2 'self' attention modules .* the trace has 6 layers"):
        norm_attention(minilm_trace, model)
