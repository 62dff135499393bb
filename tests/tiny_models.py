"""Tiny random Hugging Face models built from configs, with a small word-level tokenizer made here (no hub)."""

from __future__ import annotations

import torch
import transformers as tf
from tokenizers import Tokenizer, models, pre_tokenizers, processors

WORDS = ("the a cat dog sat on mat and it was very happy he she doctor nurse asked question . , ! ? "
         "house is big small red blue green runs jumps over lazy quick brown fox").split()
SPECIALS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "<s>", "</s>"]
VOCAB = {w: i for i, w in enumerate(SPECIALS + WORDS)}


def tokenizer(kind: str = "bert", model_max_length: int = 64) -> tf.PreTrainedTokenizerFast:
    """A word-level tokenizer; ``bert`` adds [CLS]/[SEP] (pairs get token type 1), ``plain`` adds nothing,
    ``seq2seq`` appends </s>."""
    tok = Tokenizer(models.WordLevel(VOCAB, unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    if kind == "bert":
        tok.post_processor = processors.TemplateProcessing(
            single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B:1 [SEP]:1",
            special_tokens=[("[CLS]", VOCAB["[CLS]"]), ("[SEP]", VOCAB["[SEP]"])],
        )
    elif kind == "seq2seq":
        tok.post_processor = processors.TemplateProcessing(
            single="$A </s>", pair="$A </s> $B:1 </s>:1", special_tokens=[("</s>", VOCAB["</s>"])],
        )
    return tf.PreTrainedTokenizerFast(
        tokenizer_object=tok, unk_token="[UNK]", pad_token="[PAD]", cls_token="[CLS]", sep_token="[SEP]",
        mask_token="[MASK]", bos_token="<s>", eos_token="</s>", model_max_length=model_max_length,
    )


V = len(VOCAB)
_ENC = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=64,
            max_position_embeddings=64, vocab_size=V)
_S2S = dict(vocab_size=V, d_model=32, encoder_layers=2, decoder_layers=2, encoder_attention_heads=4,
            decoder_attention_heads=4, encoder_ffn_dim=64, decoder_ffn_dim=64, max_position_embeddings=64,
            pad_token_id=0, eos_token_id=6, bos_token_id=5, decoder_start_token_id=5)


def build(name: str, attn_implementation: str | None = None, positions: int = 64):
    """``(model, tokenizer)`` for a tiny random model of the named architecture, in eval mode; ``positions``: the
    longest input it takes (not for T5 and Whisper)."""
    torch.manual_seed(0)
    kw = {"attn_implementation": attn_implementation} if attn_implementation else {}
    enc, s2s = {**_ENC, "max_position_embeddings": positions}, {**_S2S, "max_position_embeddings": positions}
    if name == "bert":
        model, tok = tf.BertModel(tf.BertConfig(**enc, **kw)), tokenizer("bert", positions)
    elif name == "roberta":
        cfg = tf.RobertaConfig(**{**enc, "max_position_embeddings": positions + 2}, pad_token_id=0, **kw)
        model, tok = tf.RobertaModel(cfg), tokenizer("bert", positions)
    elif name == "distilbert":
        cfg = tf.DistilBertConfig(vocab_size=V, dim=32, n_layers=2, n_heads=4, hidden_dim=64,
                                  max_position_embeddings=positions, **kw)
        model, tok = tf.DistilBertModel(cfg), tokenizer("bert", positions)
    elif name == "gpt2":
        cfg = tf.GPT2Config(vocab_size=V, n_embd=32, n_layer=2, n_head=4, n_positions=positions, **kw)
        model, tok = tf.GPT2LMHeadModel(cfg), tokenizer("plain", positions)
    elif name == "llama":  # grouped-query attention (4 query heads share 2 key/value heads) and RoPE
        cfg = tf.LlamaConfig(vocab_size=V, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                             num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=positions,
                             pad_token_id=0, bos_token_id=5, eos_token_id=6, **kw)
        model, tok = tf.LlamaForCausalLM(cfg), tokenizer("plain", positions)
    elif name == "mistral":  # a sliding window of 4 tokens
        cfg = tf.MistralConfig(vocab_size=V, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                               num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=positions,
                               sliding_window=4, pad_token_id=0, bos_token_id=5, eos_token_id=6, **kw)
        model, tok = tf.MistralForCausalLM(cfg), tokenizer("plain", positions)
    elif name == "gemma2":  # logit soft-capping, sliding-window layers alternating with global ones
        cfg = tf.Gemma2Config(vocab_size=V, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                              num_attention_heads=4, num_key_value_heads=2, head_dim=8, max_position_embeddings=positions,
                              sliding_window=4, attn_logit_softcapping=2.0, query_pre_attn_scalar=8,
                              pad_token_id=0, bos_token_id=5, eos_token_id=6, **kw)
        model, tok = tf.Gemma2ForCausalLM(cfg), tokenizer("plain", positions)
    elif name == "gpt_oss":  # learned attention sinks (rows sum to less than 1)
        cfg = tf.GptOssConfig(vocab_size=V, hidden_size=32, intermediate_size=32, num_hidden_layers=2,
                              num_attention_heads=4, num_key_value_heads=2, head_dim=8, num_local_experts=2,
                              num_experts_per_tok=1, max_position_embeddings=positions, sliding_window=4,
                              pad_token_id=0, bos_token_id=5, eos_token_id=6, **kw)
        model, tok = tf.GptOssForCausalLM(cfg), tokenizer("plain", positions)
        with torch.no_grad():
            for layer in model.model.layers:
                layer.self_attn.sinks.normal_(0, 1)
    elif name == "t5":
        cfg = tf.T5Config(vocab_size=V, d_model=32, d_kv=8, d_ff=64, num_layers=2, num_heads=4,
                          pad_token_id=0, eos_token_id=6, decoder_start_token_id=0, **kw)
        model, tok = tf.T5ForConditionalGeneration(cfg), tokenizer("seq2seq")
    elif name == "bart":
        model, tok = tf.BartForConditionalGeneration(tf.BartConfig(**s2s, **kw)), tokenizer("seq2seq", positions)
    elif name == "marian":
        model, tok = tf.MarianMTModel(tf.MarianConfig(**s2s, **kw)), tokenizer("seq2seq", positions)
    elif name == "whisper":
        cfg = tf.WhisperConfig(vocab_size=V, d_model=32, encoder_layers=2, decoder_layers=2,
                               encoder_attention_heads=4, decoder_attention_heads=4, encoder_ffn_dim=64,
                               decoder_ffn_dim=64, num_mel_bins=8, max_source_positions=16,
                               max_target_positions=32, pad_token_id=0, eos_token_id=6, bos_token_id=5,
                               decoder_start_token_id=5, **kw)
        model, tok = tf.WhisperForConditionalGeneration(cfg), tokenizer("plain", positions)
    else:
        raise KeyError(name)
    return model.eval(), tok


ENCODERS = ("bert", "roberta", "distilbert")
DECODERS = ("gpt2", "llama")
SEQ2SEQ = ("t5", "bart", "marian")
ALL = ENCODERS + DECODERS + SEQ2SEQ
