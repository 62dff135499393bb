"""BertViz-compatible ``head_view``, ``model_view`` and ``neuron_view.show``: switch by changing one import.

    from bertviz import head_view            # before
    from attnscope.compat import head_view   # after: same arguments, offline, compact, canvas-drawn

    from bertviz.neuron_view import show             # before: only BertViz's forked BERT, GPT-2, RoBERTa
    from attnscope.compat.neuron_view import show    # after: any Hugging Face model (RoPE, grouped-query too)

The signatures are BertViz's. ``html_action="view"`` displays the view in the notebook; ``"return"`` returns
an object whose ``.data`` is the HTML (as BertViz's ``IPython.display.HTML``), which also opens as a file.

On transformers 5, pass ``outputs.attentions`` of a model loaded with ``attn_implementation="eager"``: BertViz's
``outputs[-1]`` is BERT's (empty) cross-attention there, and SDPA, the default, computes no weights. Empty
attention is refused with a message saying so; ``attnscope.capture`` needs neither.
"""

from __future__ import annotations

from typing import Any

from ..errors import InputError, MissingExtraError
from ..trace import Trace
from ..views import View
from ..views import head_view as _head_view
from ..views import model_view as _model_view

_ENC_DEC_ARGS = ("encoder_attention", "decoder_attention", "cross_attention", "encoder_tokens", "decoder_tokens")
#: What to do when the attention handed over holds no weights (:func:`_weights`).
_FIX = ("pass outputs.attentions from a model loaded with attn_implementation='eager', or call "
        "attnscope.capture(model, tokenizer, text), which records the weights under any attention implementation")


def head_view(
    attention=None,
    tokens=None,
    sentence_b_start=None,
    prettify_tokens=True,
    layer=None,
    heads=None,
    encoder_attention=None,
    decoder_attention=None,
    cross_attention=None,
    encoder_tokens=None,
    decoder_tokens=None,
    include_layers=None,
    html_action="view",
):
    """BertViz's ``head_view``: ``attention`` is the tuple of per-layer ``[1, heads, n, n]`` tensors a Hugging Face
    model returns with ``output_attentions=True``; encoder-decoder models pass ``encoder_attention``,
    ``decoder_attention``, ``cross_attention`` with ``encoder_tokens`` and ``decoder_tokens`` instead."""
    trace = _trace(attention, tokens, sentence_b_start, encoder_attention, decoder_attention, cross_attention,
                   encoder_tokens, decoder_tokens)
    view = _head_view(trace, layer=layer, heads=heads, include_layers=include_layers,
                      prettify=bool(prettify_tokens))
    return act(view, html_action)


def model_view(
    attention=None,
    tokens=None,
    sentence_b_start=None,
    prettify_tokens=True,
    display_mode="dark",
    encoder_attention=None,
    decoder_attention=None,
    cross_attention=None,
    encoder_tokens=None,
    decoder_tokens=None,
    include_layers=None,
    include_heads=None,
    html_action="view",
):
    """BertViz's ``model_view`` (arguments as in :func:`head_view`; ``display_mode`` is ``"dark"`` or ``"light"``)."""
    if display_mode not in ("dark", "light"):
        raise InputError(f"display_mode must be 'dark' or 'light'; got {display_mode!r}")
    trace = _trace(attention, tokens, sentence_b_start, encoder_attention, decoder_attention, cross_attention,
                   encoder_tokens, decoder_tokens)
    view = _model_view(trace, include_layers=include_layers, include_heads=include_heads,
                       prettify=bool(prettify_tokens), theme=display_mode)
    return act(view, html_action)


class HTML:
    """What ``html_action="return"`` gives when IPython is not installed: ``.data`` holds the HTML."""

    def __init__(self, data: str):
        self.data = data

    def _repr_html_(self) -> str:
        return self.data


def _trace(attention, tokens, sentence_b_start, encoder_attention, decoder_attention, cross_attention,
           encoder_tokens, decoder_tokens) -> Trace:
    enc_dec = dict(zip(_ENC_DEC_ARGS, (encoder_attention, decoder_attention, cross_attention, encoder_tokens,
                                       decoder_tokens)))
    if attention is None and tokens is not None and all(enc_dec[name] is None for name in _ENC_DEC_ARGS[:3]):
        _weights("attention", attention)  # tokens with no attention: what BertViz's outputs[-1] can be
    if attention is not None:
        attention = _weights("attention", attention)
        if tokens is None:
            raise InputError("'tokens' is required with 'attention' (the list of token strings)")
        given = [name for name, value in enc_dec.items() if value is not None]
        if given:
            raise InputError(
                f"pass either 'attention' (self-attention models) or the encoder-decoder arguments, not both; "
                f"got attention and {given}"
            )
        return Trace.from_arrays(attention, tokens, sentence_b_start=sentence_b_start,
                                 meta={"source": "bertviz-compat"})
    arrays = {k: _weights(f"{k}_attention", v) for k, v in (("encoder", encoder_attention),
                                                             ("decoder", decoder_attention),
                                                             ("cross", cross_attention)) if v is not None}
    if not arrays:
        raise InputError("you must pass 'attention' (self-attention models) or at least one of encoder_attention, "
                         "decoder_attention, cross_attention (encoder-decoder models)")
    need = {"encoder": ["encoder_tokens"], "decoder": ["decoder_tokens"],
            "cross": ["encoder_tokens", "decoder_tokens"]}
    for kind in arrays:
        for name in need[kind]:
            if enc_dec[name] is None:
                raise InputError(f"'{name}' is required with '{kind}_attention'")
    toks = {s: t for s, t in (("encoder", encoder_tokens), ("decoder", decoder_tokens)) if t is not None}
    if sentence_b_start is not None:
        raise InputError("sentence_b_start applies to self-attention models only (pass it with 'attention')")
    return Trace.from_arrays(arrays, toks, meta={"source": "bertviz-compat"})


def _weights(name: str, value):
    """``value``, unless it holds no attention weights (None, an empty tuple, or None for some layer): then an
    InputError naming the two usual causes on transformers 5 and the fix."""
    if value is None or isinstance(value, (tuple, list)) and (not value or any(v is None for v in value)):
        got = ("None" if value is None else "an empty tuple" if not value
               else f"None for {sum(v is None for v in value)} of its {len(value)} layers")
        raise InputError(
            f"{name!r} holds no attention weights ({got}). On transformers 5 BertViz's `outputs[-1]` is BERT's empty "
            "cross_attentions, and a model running SDPA (the default attention) returns no weights even with "
            f"output_attentions=True: {_FIX}"
        )
    return value


def act(view: View, html_action: str) -> Any:
    """Display ``view`` in the notebook (``"view"``) or return it as BertViz does (``"return"``)."""
    if html_action not in ("view", "return"):
        raise InputError(f"html_action must be 'view' or 'return'; got {html_action!r}")
    html = view.fragment()
    try:
        from IPython.display import HTML as IPythonHTML
        from IPython.display import display
    except ImportError:
        if html_action == "view":
            raise MissingExtraError(
                "html_action='view' displays in a notebook and needs IPython (pip install ipython); "
                "use html_action='return' and write its .data to an .html file"
            ) from None
        return HTML(html)
    if html_action == "return":
        return IPythonHTML(html)
    display(IPythonHTML(html))
    return None
