"""Traces from other interpretability tools: attention that was computed by something other than attnscope.capture.

- :mod:`attnscope.adapters.transformer_lens`: a TransformerLens ``ActivationCache`` (``model.run_with_cache``),
  patterns plus the query/key/value vectors the neuron view needs; :meth:`attnscope.Trace.from_transformer_lens`.
- :mod:`attnscope.adapters.nnsight`: attention weights of a Hugging Face model traced with nnsight, interventions
  included; :meth:`attnscope.Trace.from_nnsight`.

Each adapter only reads what its tool produced (no import of the tool itself); the extras
``pip install 'attnscope[transformer-lens]'`` / ``'attnscope[nnsight]'`` install the tools.
"""
