"""Tiny models for CPU learning checks: a random Llama whose vocabulary holds the env's actions as single tokens.

A randomly initialised model with a byte tokenizer would need thousands of updates just to spell ``take key``.
For a check that *learning* works end to end in CPU minutes, :func:`tiny_action_model` builds a word-level
tokenizer whose vocabulary is the informative words of the env's text plus one token per action, written in the
answer format (``<action>take key</action>``). One sampled token is one well-formed action, so the check measures
what the trainer must get right (advantages, losses, updates), not spelling.

The tokenizer drops punctuation and every word outside its vocabulary (``You are in room 2.`` says nothing a
KeyRooms policy needs) and opens each text with ``<|im_start|>``: a KeyRooms prompt is then about 15 tokens instead
of 33, and on a CPU an update of a model this small costs in proportion to its tokens (issue #22).

Example:
    >>> model, tok = tiny_action_model(["go east", "take key"], words=["room", "key"], seed=0)
    >>> tok.decode(tok.encode("<action>take key</action>"), skip_special_tokens=True)
    '<action>take key</action>'
    >>> tok.convert_ids_to_tokens(tok.encode("You see a key in room 2."))
    ['<|im_start|>', 'key', 'room']
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any


def env_vocabulary(env_id: str) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """Return ``(actions, words)`` an env declares for action-token models (``action_vocabulary``/``text_vocabulary``).

    Example:
        >>> actions, words = env_vocabulary("EMPG-KeyDoor-v0")
        >>> actions[:2], "carry" in words
        (('go east', 'go west'), True)
    """
    import gymnasium as gym

    from empg_gym.errors import ConfigError

    spec = gym.spec(env_id)
    env_class = gym.envs.registration.load_env_creator(spec.entry_point) if isinstance(spec.entry_point, str) \
        else spec.entry_point
    actions = getattr(env_class, "action_vocabulary", None)
    if not actions:
        raise ConfigError(
            f"model='tiny-actions' needs an env with a finite action vocabulary, and {env_id!r} declares none "
            "(a class attribute action_vocabulary); use 'tiny', 'smollm2-135m' or a model folder."
        )
    return tuple(actions), tuple(getattr(env_class, "text_vocabulary", ()))


def action_token(action: str) -> str:
    """Return the single token that stands for ``action`` in the answer format."""
    return f"<action>{action}</action>"


def tiny_action_model(
    actions: Sequence[str], words: Sequence[str] = (), *, seed: int = 0, hidden_size: int = 64, layers: int = 2,
    format_prior: float = 30.0,
) -> tuple[Any, Any]:
    """Return ``(model, tokenizer)``: a random Llama over ``[specials] + words + one token per action``.

    The output head starts with zero weights and a bias of ``-format_prior`` on every token that is not an action
    (0 on the actions), so the first policy is uniform over the actions: a stand-in for an instruction-tuned LLM
    that knows the answer format but not the task. With the default 30 a non-action token has probability ~e^-30
    and (its gradient being proportional to it) stays there; with a small prior (say 5) policy-gradient updates
    whose advantages are mostly negative move mass onto the never-sampled non-action tokens, and the policy forgets
    the format. ``format_prior=0`` starts uniform over the whole vocabulary.
    """
    import torch
    from tokenizers import (
        AddedToken,
        Regex,
        Tokenizer,
        decoders,
        models,
        normalizers,
        pre_tokenizers,
        processors,
    )
    from transformers import LlamaConfig, PreTrainedTokenizerFast

    from empg_gym.agents.models import CHATML_TEMPLATE, seeded_llama

    specials = ["[UNK]", "<|im_start|>", "<|im_end|>", "<|pad|>"]
    vocab = {tok: i for i, tok in enumerate(specials)}
    for w in words:
        vocab.setdefault(w.lower(), len(vocab))
    backend = Tokenizer(models.WordLevel(vocab=vocab, unk_token="[UNK]"))
    backend.normalizer = normalizers.Sequence([normalizers.Lowercase(),
                                               normalizers.Replace(Regex(_unknown_pattern(vocab)), " ")])
    backend.pre_tokenizer = pre_tokenizers.Whitespace()
    backend.post_processor = processors.TemplateProcessing(single="<|im_start|> $A", special_tokens=[
        ("<|im_start|>", vocab["<|im_start|>"])])  # a text of unknown words alone still has a token
    backend.decoder = decoders.WordPiece(prefix="##", cleanup=False)
    backend.add_special_tokens(specials)
    # plain added tokens (kept when decoding), matched in the raw text before the normalizer strips "<", ">", "/"
    backend.add_tokens([AddedToken(action_token(a), normalized=False) for a in actions])
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=backend, unk_token="[UNK]", bos_token="<|im_start|>",
                                        eos_token="<|im_end|>", pad_token="<|pad|>")
    tokenizer.chat_template = CHATML_TEMPLATE
    config = LlamaConfig(
        vocab_size=len(tokenizer), hidden_size=hidden_size, intermediate_size=2 * hidden_size,
        num_hidden_layers=layers, num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=4096,
        bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id, tie_word_embeddings=False,
    )
    model = seeded_llama(config, seed)
    head = torch.nn.Linear(hidden_size, len(tokenizer), bias=True)
    action_ids = tokenizer.convert_tokens_to_ids([action_token(a) for a in actions])
    with torch.no_grad():
        head.weight.zero_()
        head.bias.fill_(-format_prior)
        head.bias[action_ids] = 0.0
    model.lm_head = head
    model.eval()
    return model, tokenizer


def _unknown_pattern(vocab: dict[str, int]) -> str:
    """Return a regex matching punctuation and every word that is not in ``vocab`` (the normalizer blanks them).

    Example:
        >>> import re
        >>> re.sub(_unknown_pattern({"key": 0, "red": 1}), " ", "you see a red key, keys.").split()
        ['red', 'key']
    """
    import re

    words = sorted((w for w in vocab if re.fullmatch(r"\w+", w)), key=len, reverse=True)
    return r"\b(?!(?:" + "|".join(map(re.escape, words)) + r")\b)\w+\b|[^\w\s]"
