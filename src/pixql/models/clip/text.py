"""CLIP text batches padded to their longest text instead of the full context length.

open_clip pads every text to the context length (77 tokens) and runs all of it. With a
causal mask, no real token attends to the padding after it, so where the pooling picks a
real token (:func:`can_trim`) the all-padding tail of a batch can be dropped
(:func:`trim_padding`) and the text tower run on the shorter sequence
(:func:`encode_text_trimmed`). Used by the embedder (torch), the ONNX exporter (the exported
text tower takes any length) and the row-by-row ONNX runner.
"""

from __future__ import annotations

from typing import Any

import torch

#: open_clip text pooling types for which trailing padding can be dropped (see can_trim)
TRIMMABLE_POOLS = frozenset({"argmax", "eos", "first"})


def can_trim(model: Any) -> bool:
    """Whether padding can be dropped without changing ``model``'s text embeddings.

    That holds for open_clip's own text tower (``CLIP``) with a causal mask (earlier tokens
    never attend to later padding) and a pooling that picks a real token.
    """
    return (
        hasattr(model, "token_embedding")
        and getattr(model, "attn_mask", None) is not None
        and getattr(model, "text_pool_type", "") in TRIMMABLE_POOLS
    )


def trim_padding(tokens: torch.Tensor) -> torch.Tensor:
    """Drop trailing columns that are padding (0) in every row.

    Token id 0 is also a real token (``!``), so only the columns after each row's last
    non-zero token (its end token) are padding.
    """
    nonzero = (tokens != 0).any(dim=0).nonzero()
    length = int(nonzero.max()) + 1 if nonzero.numel() else 1
    return tokens[:, :length]


def encode_text_trimmed(model: Any, tokens: torch.Tensor) -> torch.Tensor:
    """open_clip's ``CLIP.encode_text`` for a sequence shorter than the context length.

    Identical to the library's method except that the positional embedding and the causal
    mask are cut to the batch's length ``L`` (the library adds all 77 positions). ``model``
    is an open_clip ``CLIP`` whose text tower :func:`can_trim` accepts (its attributes are
    open_clip's internals, hence ``Any``).
    """
    from open_clip.transformer import text_global_pool

    length = tokens.shape[1]
    cast_dtype = model.transformer.get_cast_dtype()
    x = model.token_embedding(tokens).to(cast_dtype)
    x = x + model.positional_embedding[:length].to(cast_dtype)
    x = model.transformer(x, attn_mask=model.attn_mask[:length, :length])
    x = model.ln_final(x)
    x = text_global_pool(
        x, tokens, model.text_pool_type, eos_token_id=getattr(model, "text_eos_id", None)
    )
    if model.text_projection is not None:
        if isinstance(model.text_projection, torch.nn.Linear):
            x = model.text_projection(x)
        else:
            x = x @ model.text_projection
    return x
