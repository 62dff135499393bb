"""BertViz-compatible ``head_view``, ``model_view`` and ``neuron_view.show``: switch by changing one import.

    from bertviz import head_view            # before
    from attnscope.compat import head_view   # after: same arguments, offline, compact, canvas-drawn

    from bertviz.neuron_view import show             # before: only BertViz's forked BERT, GPT-2, RoBERTa
    from attnscope.compat.neuron_view import show    # after: any Hugging Face model (RoPE, grouped-query too)

The signatures are BertViz's. ``html_action="view"`` displays the view in the notebook; ``"return"`` returns
an object whose ``.data`` is the HTML (as BertViz's ``IPython.display.HTML``), which also opens as a file.
"""

from __future__ import annotations

from typing import Any

from ..errors import InputError, MissingExtraError
from ..trace import Trace
from ..views import View
from ..views import head_view as _head_view
from ..views import model_view as _model_view

_ENC_DEC_ARGS = ("encoder_attention", "decoder_attention", "cross_attention", "encoder_tokens", "decoder_tokens")


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
    if attention is not None:
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
    arrays = {k: v for k, v in (("encoder", encoder_attention), ("decoder", decoder_attention),
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
