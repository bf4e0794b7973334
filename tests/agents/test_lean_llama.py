"""LeanLlamaForCausalLM: the same function and parameters as transformers' Llama, the last layer at kept columns."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

from transformers import LlamaConfig, LlamaForCausalLM  # noqa: E402

from empg_gym.agents.lean_llama import LeanLlamaForCausalLM  # noqa: E402
from empg_gym.agents.models import tiny_random_model  # noqa: E402
from empg_gym.agents.policy import LLMPolicy, _left_pad  # noqa: E402
from empg_gym.agents.tiny import env_vocabulary, tiny_action_model  # noqa: E402


def _pair(tied: bool, seed: int = 0, vocab: int = 40, **config: object) -> tuple[LlamaForCausalLM,
                                                                                 LeanLlamaForCausalLM]:
    """A transformers Llama and a lean one with the same weights (random, so no logit is trivially zero)."""
    cfg = LlamaConfig(vocab_size=vocab, hidden_size=32, intermediate_size=48, num_hidden_layers=3,
                      num_attention_heads=4, num_key_value_heads=2, tie_word_embeddings=tied, pad_token_id=0,
                      **config)
    torch.manual_seed(seed)
    reference = LlamaForCausalLM(cfg)
    lean = LeanLlamaForCausalLM(cfg)
    lean.load_state_dict(reference.state_dict())
    return reference, lean


def _batch(seed: int = 1, vocab: int = 40) -> dict[str, torch.Tensor]:
    """A ragged, left-padded batch of 36 tokens (one row of a single token), as :meth:`LLMPolicy.score` builds it."""
    g = torch.Generator().manual_seed(seed)
    rows = [torch.randint(1, vocab, (n,), generator=g) for n in (7, 1, 12, 4, 12)]
    ids, attention = _left_pad(rows, pad_id=0)
    return {"input_ids": ids, "attention_mask": attention, "position_ids": (attention.cumsum(-1) - 1).clamp(min=0),
            "use_cache": False}


def _valid_logits(logits: torch.Tensor, attention: torch.Tensor, keep: int) -> torch.Tensor:
    """The logits of real (not padding) columns: padding columns are never read, and the two models may differ."""
    columns = attention[:, attention.shape[1] - (keep or attention.shape[1]):].bool()
    return logits[columns]


@pytest.mark.parametrize("vocab", [40, 20])  # 20 < 36 tokens: the first layer's projections are looked up
@pytest.mark.parametrize("tied", [True, False])
@pytest.mark.parametrize("keep", [0, 1, 3])
def test_lean_logits_and_gradients_equal_transformers_llama(tied, keep, vocab):
    reference, lean = _pair(tied, vocab=vocab)
    batch = _batch(vocab=vocab)
    grads = []
    for model in (reference, lean):
        model.train()
        logits = model(**batch, logits_to_keep=keep).logits
        assert logits.shape == (5, keep or batch["input_ids"].shape[1], vocab)
        valid = _valid_logits(logits, batch["attention_mask"], keep)
        assert torch.isfinite(logits).all()
        torch.log_softmax(valid, -1)[:, 3].sum().backward()
        grads.append(({n: p.grad.clone() for n, p in model.named_parameters()}, valid.detach()))
    (ref_grads, ref_logits), (lean_grads, lean_logits) = grads
    torch.testing.assert_close(lean_logits, ref_logits, rtol=1e-5, atol=1e-5)
    assert lean_grads.keys() == ref_grads.keys()
    for name, g in ref_grads.items():
        torch.testing.assert_close(lean_grads[name], g, rtol=1e-4, atol=1e-6, msg=name)


def test_padding_is_skipped_and_the_last_layer_runs_at_the_kept_columns_only():
    _, lean = _pair(tied=False)
    seen = {}

    def watch(name):
        def hook(module, args, output):
            seen[name] = tuple(args[0].shape)

        return hook

    lean.model.layers[0].mlp.register_forward_hook(watch("first mlp"))
    lean.model.layers[-1].self_attn.q_proj.register_forward_hook(watch("last q_proj"))
    lean.model.layers[-1].self_attn.k_proj.register_forward_hook(watch("last k_proj"))
    lean.model.layers[-1].mlp.register_forward_hook(watch("last mlp"))
    lean.model.layers[0].self_attn.q_proj.register_forward_hook(watch("first q_proj"))
    lean(**_batch(), logits_to_keep=2)
    # the batch's 5 rows hold 36 real tokens in 12 columns
    assert seen == {"first q_proj": (5, 12, 32), "first mlp": (36, 32), "last k_proj": (5, 12, 32), "last q_proj": (5, 2, 32),
                    "last mlp": (5, 2, 32)}
    _, small = _pair(tied=False, vocab=20)  # fewer vocabulary entries than tokens: projected once per entry
    small.model.layers[0].self_attn.q_proj.register_forward_hook(watch("first q_proj"))
    small(**_batch(vocab=20), logits_to_keep=2)
    assert seen["first q_proj"] == (20, 32)


def test_calls_the_lean_pass_cannot_serve_go_to_transformers(monkeypatch):
    reference, lean = _pair(tied=True)
    calls = []
    monkeypatch.setattr(LeanLlamaForCausalLM, "_lean_logits", lambda self, *a: calls.append(a) or None)
    batch = _batch()
    # generation: a KV cache is asked for, and comes back
    out = lean(**{**batch, "use_cache": True}, logits_to_keep=1)
    assert out.cache is not None and not calls
    torch.testing.assert_close(out.logits, reference(**batch, logits_to_keep=1).logits)
    # labels: transformers computes the loss
    assert lean(**batch, labels=batch["input_ids"]).loss is not None and not calls
    # a hook on a decoder layer (MC dropout's) must see the layer run
    fired = []
    handle = lean.model.layers[1].register_forward_hook(lambda *args: fired.append(1))
    lean(**batch, logits_to_keep=1)
    handle.remove()
    assert fired == [1] and not calls
    # attention dropout while training, and gradient checkpointing
    lean.config.attention_dropout = 0.1
    lean.train()(**batch, logits_to_keep=1)
    lean.config.attention_dropout = 0.0
    lean.activation_checkpointing_enable()
    lean(**batch, logits_to_keep=1)
    assert not calls
    lean.activation_checkpointing_disable()
    lean(**batch, logits_to_keep=1)
    assert len(calls) == 1  # and a plain scoring call takes the lean pass


def test_project_models_are_lean_with_transformers_llama_parameter_names():
    tiny, _ = tiny_random_model(seed=0)
    actions, words = env_vocabulary("EMPG-KeyRooms-v0")
    action_model, _ = tiny_action_model(actions, words, seed=0)
    for model in (tiny, action_model):
        assert isinstance(model, LeanLlamaForCausalLM)
        names = set(model.state_dict()) - {"lm_head.bias"}  # the action model's head has a bias (tiny.py)
        assert names == set(LlamaForCausalLM(model.config).state_dict())


def test_policy_scores_with_the_lean_pass_equal_transformers_scores():
    """``score`` of the tiny action model (untied head with a bias), with and without the lean pass."""
    actions, words = env_vocabulary("EMPG-KeyRooms-v0")
    model, tok = tiny_action_model(actions, words, seed=3)
    with torch.no_grad():
        model.lm_head.weight.normal_(0, 0.5, generator=torch.Generator().manual_seed(0))
    plain = LlamaForCausalLM(model.config)
    plain.lm_head = torch.nn.Linear(model.config.hidden_size, len(tok), bias=True)
    plain.load_state_dict(model.state_dict())
    texts = ["You see a key in room 2.", "A locked door leads east. You carry nothing.", "room"]
    scores = []
    for m in (plain, model):
        pol = LLMPolicy(m, tok)
        responses = [torch.tensor(tok.convert_tokens_to_ids([f"<action>{a}</action>"])) for a in actions[:3]]
        scores.append(pol.score(pol.encode_prompts(texts), responses))
    torch.testing.assert_close(scores[1].log_probs, scores[0].log_probs, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(scores[1].entropies, scores[0].entropies, rtol=1e-5, atol=1e-5)
