"""A Llama whose scoring passes skip the work no kept logit reads: what makes a tiny model's update cheap on a CPU.

:meth:`~empg_gym.agents.policy.LLMPolicy.score` asks for the logits of the last ``T`` columns only
(``logits_to_keep``) of a left-padded batch. transformers' Llama computes every layer at every column of the
padded grid. :class:`LeanLlamaForCausalLM` computes the same function with less:

- norms, projections and MLPs run on the real tokens only, packed without their padding (attention, which needs
  the grid, runs on it);
- under causal attention every layer but the last needs keys and values at every column, but the *last* layer
  needs its queries, attention output, MLP and final norm only at the ``T`` kept columns: it computes them there;
- the first layer's input norm and projections depend on the token alone: when the vocabulary has fewer entries
  than the batch has tokens (a tiny model's word-level vocabulary), they run once per entry and are looked up.

The logits agree with ``LlamaForCausalLM``'s to float rounding; the parameters and their names are the same, and so
is the call. A lean pass is taken only for a plain float32 scoring call (token ids in, no cache, no labels) where
nothing could tell the difference; any other call goes to transformers' forward unchanged (generation with a KV
cache, hooks on decoder layers or norms, dropout in training, gradient checkpointing, half precision, attention
kernels other than ``sdpa``/``eager``).

For a 30-layer LLM scoring 500-token prompts the saving is the padding plus ``(L - T) / L`` of one layer. For the
2-layer tiny action model (34 vocabulary entries, ``~13``-token prompts, a third of the grid padding, one-token
actions) it is about 45% of an update's forward and backward (issue #22; ``benchmarks/bench_lean_llama.py``).

Example:
    >>> import torch
    >>> from transformers import LlamaConfig
    >>> config = LlamaConfig(vocab_size=32, hidden_size=16, intermediate_size=32, num_hidden_layers=2,
    ...                      num_attention_heads=4, num_key_value_heads=2)
    >>> model = LeanLlamaForCausalLM(config).eval()
    >>> ids = torch.tensor([[0, 0, 5, 6, 7], [3, 4, 5, 6, 7]])
    >>> mask = torch.tensor([[0, 0, 1, 1, 1], [1, 1, 1, 1, 1]])
    >>> lean = model(input_ids=ids, attention_mask=mask, logits_to_keep=2).logits
    >>> full = model(input_ids=ids, attention_mask=mask, logits_to_keep=2, use_cache=True).logits  # transformers'
    >>> lean.shape, bool(torch.allclose(lean, full, atol=1e-5))
    (torch.Size([2, 2, 32]), True)
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from transformers import LlamaForCausalLM
from transformers.modeling_outputs import CausalLMOutputWithPast

#: Attention kernels whose math the lean pass reproduces (both are softmax attention over a boolean mask).
LEAN_ATTENTION = ("sdpa", "eager")


class LeanLlamaForCausalLM(LlamaForCausalLM):
    """``LlamaForCausalLM`` with a lean pass for scoring calls; see the module docstring."""

    def forward(  # type: ignore[override]
        self,
        input_ids: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        position_ids: torch.Tensor | None = None,
        cache: Any = None,
        inputs_embeds: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
        use_cache: bool | None = None,
        logits_to_keep: int | torch.Tensor = 0,
        **kwargs: Any,
    ) -> Any:
        """``LlamaForCausalLM.forward``; a plain float32 scoring call (no cache, no labels) takes the lean pass."""
        plain = cache is None and inputs_embeds is None and labels is None and not use_cache
        if plain and self._lean_call(input_ids, logits_to_keep, kwargs):
            assert input_ids is not None and isinstance(logits_to_keep, int)
            return CausalLMOutputWithPast(logits=self._lean_logits(input_ids, attention_mask, position_ids,
                                                                   logits_to_keep))
        return super().forward(input_ids=input_ids, attention_mask=attention_mask, position_ids=position_ids,
                               cache=cache, inputs_embeds=inputs_embeds, labels=labels, use_cache=use_cache,
                               logits_to_keep=logits_to_keep, **kwargs)

    def _lean_call(self, input_ids: torch.Tensor | None, logits_to_keep: Any, kwargs: dict[str, Any]) -> bool:
        """Whether this plain call (no cache, no labels) is one the lean pass computes as transformers would."""
        if input_ids is None or input_ids.dim() != 2 or not isinstance(logits_to_keep, int) or logits_to_keep < 0:
            return False
        if any(v is not None for v in kwargs.values()):
            return False  # output_attentions, output_hidden_states, return_dict...: transformers' forward has them
        config = self.config
        if config._attn_implementation not in LEAN_ATTENTION or getattr(config, "pretraining_tp", 1) != 1:
            return False
        model = self.model
        checkpointing = model.gradient_checkpointing or any(getattr(m, "gradient_checkpointing", False)
                                                            for m in model.layers)
        if self.training and (checkpointing or config.attention_dropout > 0):
            return False
        if model.embed_tokens.weight.dtype != torch.float32 or torch.is_autocast_enabled(input_ids.device.type):
            return False  # half precision: transformers' casts (norms and softmax in float32) are its own
        hooks = torch.nn.modules.module
        if hooks._global_forward_hooks or hooks._global_forward_pre_hooks:
            return False
        # modules the lean pass does not call as modules: a hook on one (MC dropout's on decoder layers) must run
        skipped = [model, model.norm, *model.layers, *(m for layer in model.layers
                                                         for m in (layer.self_attn, layer.input_layernorm,
                                                                   layer.post_attention_layernorm))]
        return not any(m._forward_hooks or m._forward_pre_hooks for m in skipped)

    def _lean_logits(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None,
                     position_ids: torch.Tensor | None, logits_to_keep: int) -> torch.Tensor:
        """Logits of the last ``logits_to_keep`` columns (all when 0); see :func:`_decoder_layer` for the layers."""
        n, length = input_ids.shape
        device = input_ids.device
        keep = length if logits_to_keep == 0 else min(logits_to_keep, length)
        valid = (attention_mask.bool() if attention_mask is not None
                 else torch.ones(n, length, dtype=torch.bool, device=device))
        if position_ids is None:
            position_ids = torch.arange(length, device=device).expand(n, length)
        tokens = valid.flatten().nonzero().squeeze(1)  # the real (not padding) columns among the N * L
        hidden = self.model.embed_tokens(input_ids.flatten().index_select(0, tokens))  # (tokens, width)
        cos, sin = self.model.rotary_emb(hidden, position_ids=position_ids)  # (N, L, head_dim)
        half = sin.shape[-1] // 2
        cos, signed_sin = cos[:, None], torch.cat([-sin[..., :half], sin[..., half:]], dim=-1)[:, None]  # (N, 1, L, d)
        # column i attends to the real columns j <= i; a padding column attends to itself only (its output is
        # never read, and a softmax over nothing would be NaN)
        index = torch.arange(length, device=device)
        allowed = (index[None, :] <= index[:, None]) & valid[:, None, :] | torch.eye(length, dtype=torch.bool,
                                                                                        device=device)
        # the first layer's input is the embedding of a token: with fewer vocabulary entries than tokens in the
        # batch, its norm and projections run once per entry and are looked up
        embedding = self.model.embed_tokens.weight
        lookup = (input_ids, embedding) if embedding.shape[0] < tokens.numel() else None
        layers = self.model.layers
        for i, layer in enumerate(layers):
            queries = keep if i == len(layers) - 1 else 0
            hidden = _decoder_layer(layer, hidden, tokens, (n, length), cos, signed_sin, allowed[:, None], queries,
                                    lookup if i == 0 else None)
        return self.lm_head(_rms_norm(self.model.norm, hidden))


def _decoder_layer(layer: Any, hidden: torch.Tensor, tokens: torch.Tensor, shape: tuple[int, int],
                   cos: torch.Tensor, signed_sin: torch.Tensor, allowed: torch.Tensor, queries: int,
                   lookup: tuple[torch.Tensor, torch.Tensor] | None = None) -> torch.Tensor:
    """One Llama decoder layer over the real tokens ``hidden`` ``(tokens, width)``, packed without padding.

    Attention runs on the padded ``(N, L)`` grid (``tokens`` are the real columns' flat indices); norms,
    projections and the MLP run on real tokens only. With ``queries > 0`` (the last layer) queries, attention
    output and MLP are computed at the last ``queries`` columns of the grid only, which are returned ``(N, queries,
    width)``; keys and values still cover every column. ``lookup = (input_ids, embedding)`` says that ``hidden`` is
    ``embedding[input_ids]`` (the first layer): the input norm and the projections are computed per row of
    ``embedding`` and looked up by ``input_ids``. ``cos`` and ``signed_sin`` are the rotary tables, ``(N, 1, L, d)``
    (see :func:`_rotary`).
    """
    attn = layer.self_attn
    n, length = shape
    width, head = hidden.shape[-1], attn.head_dim
    first = length - queries if queries else 0
    if lookup is not None:
        ids, embedding = lookup
        normed = _rms_norm(layer.input_layernorm, embedding)
        k, v = F.embedding(ids, attn.k_proj(normed)), F.embedding(ids, attn.v_proj(normed))
        q = F.embedding(ids[:, first:], attn.q_proj(normed))
    else:
        x = _scatter(_rms_norm(layer.input_layernorm, hidden), tokens, n * length).view(n, length, width)
        k, v, q = attn.k_proj(x), attn.v_proj(x), attn.q_proj(x[:, first:])
    k = _rotary(k.view(n, length, -1, head).transpose(1, 2), cos, signed_sin)
    v = v.view(n, length, -1, head).transpose(1, 2)
    q = _rotary(q.view(n, length - first, -1, head).transpose(1, 2), cos[:, :, first:],
                signed_sin[:, :, first:])
    out = F.scaled_dot_product_attention(q, k, v, attn_mask=allowed[:, :, first:], scale=attn.scaling,
                                         enable_gqa=True)
    out = attn.o_proj(out.transpose(1, 2).reshape(n, length - first, -1))
    if queries:
        hidden = _scatter(hidden, tokens, n * length).view(n, length, width)[:, first:] + out
    else:
        hidden = hidden + out.reshape(n * length, -1).index_select(0, tokens)
    return hidden + layer.mlp(_rms_norm(layer.post_attention_layernorm, hidden))


def _rms_norm(norm: Any, x: torch.Tensor) -> torch.Tensor:
    """``LlamaRMSNorm`` ``norm`` applied to ``x`` as one fused op."""
    return F.rms_norm(x, (x.shape[-1],), norm.weight, norm.variance_epsilon)


def _scatter(rows: torch.Tensor, index: torch.Tensor, size: int) -> torch.Tensor:
    """``(size, width)`` zeros with ``rows`` at ``index`` (the padded grid of packed rows)."""
    return rows.new_zeros(size, rows.shape[-1]).index_copy(0, index, rows)


def _rotary(x: torch.Tensor, cos: torch.Tensor, signed_sin: torch.Tensor) -> torch.Tensor:
    """Llama's rotary position embedding of ``x`` ``(N, heads, L, d)``; ``cos``, ``signed_sin`` are ``(N, 1, L, d)``.

    Llama computes ``x * cos + rotate_half(x) * sin`` with ``rotate_half(x) = [-x2, x1]``. Here the sign sits in
    ``signed_sin = [-sin1, sin2]`` and the halves swap by one ``roll``: the same products, bit for bit, with one op
    where ``rotate_half`` takes four (two slices, a negation, a concatenation), forward and backward.
    """
    return x * cos + x.roll(x.shape[-1] // 2, -1) * signed_sin
