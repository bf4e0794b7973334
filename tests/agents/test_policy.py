"""LLMPolicy and model loading: sampling statistics, re-scoring, stopping, LoRA, the reference policy.

Tiny random Llamas keep these fast; one slow test loads the embedded SmolLM2 and acts in KeyDoor.
"""

from __future__ import annotations

import doctest
import math

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

from empg_gym.agents import models, policy  # noqa: E402
from empg_gym.agents.models import TinyModelConfig, byte_level_tokenizer, load_model, tiny_random_model  # noqa: E402
from empg_gym.agents.policy import GenerationConfig, LLMPolicy, LoraSettings  # noqa: E402
from empg_gym.errors import ConfigError  # noqa: E402

PROMPTS = ["Go.", "A much longer prompt that needs plenty of left padding in a batch.", "Go.", "Middle one here."]



@pytest.fixture()
def tiny() -> LLMPolicy:
    return LLMPolicy(*tiny_random_model(seed=0))


def _fit(pol: LLMPolicy, prompts: list[str], responses: list[str], steps: int = 150, lr: float = 1e-2) -> float:
    """Teach ``pol`` to answer each prompt with its response (+EOS) by minimising -log π via score()."""
    p_ids = pol.encode_prompts(prompts)
    eos = pol.tokenizer.eos_token_id
    r_ids = [torch.tensor(pol.tokenizer(r)["input_ids"] + [eos]) for r in responses]
    opt = torch.optim.Adam(pol.trainable_parameters(), lr=lr)
    pol.model.train()
    loss = torch.tensor(float("inf"))
    for _ in range(steps):
        scores = pol.score(p_ids, r_ids, with_entropy=False)
        loss = -scores.log_probs.sum() / scores.mask.sum()
        opt.zero_grad()
        loss.backward()
        opt.step()
        if loss.item() < 0.02:
            break
    pol.model.eval()
    return loss.item()


def test_module_doctests():
    for module in (models, policy):
        assert doctest.testmod(module, optionflags=doctest.ELLIPSIS).failed == 0


def test_generate_returns_consistent_per_sample_tensors(tiny):
    out = tiny.generate(PROMPTS, GenerationConfig(max_new_tokens=12, stop=()), generator=torch.Generator().manual_seed(0))
    assert len(out) == len(PROMPTS)
    for g, text in zip(out, PROMPTS, strict=True):
        assert g.prompt_ids.dtype == torch.long and g.response_ids.dtype == torch.long
        assert g.response_ids.shape == g.log_probs.shape == g.entropies.shape == (12,)
        assert g.finish_reason == "length"
        assert tiny.tokenizer.decode(g.prompt_ids.tolist()).endswith("<|im_start|>assistant\n")
        assert text in tiny.tokenizer.decode(g.prompt_ids.tolist())
        assert bool((g.log_probs <= 0).all())
        vocab = tiny.model.config.vocab_size
        assert bool((g.entropies >= 0).all()) and bool((g.entropies <= math.log(vocab) + 1e-4).all())


def test_behaviour_log_probs_and_entropies_match_rescoring(tiny):
    cfg = GenerationConfig(max_new_tokens=10, temperature=0.7, top_p=0.9, stop=())
    out = tiny.generate(PROMPTS, cfg, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        scores = tiny.score([g.prompt_ids for g in out], [g.response_ids for g in out], temperature=0.7)
    assert scores.log_probs.shape == scores.entropies.shape == scores.mask.shape == (len(out), 10)
    for i, g in enumerate(out):
        torch.testing.assert_close(scores.log_probs[i, : g.num_tokens], g.log_probs, atol=1e-4, rtol=1e-4)
        torch.testing.assert_close(scores.entropies[i, : g.num_tokens], g.entropies, atol=1e-4, rtol=1e-4)


def test_scoring_in_a_ragged_batch_equals_scoring_alone(tiny):
    """Left-padded prompts and right-padded responses give each row the values and gradients it has alone."""
    prompts = tiny.encode_prompts(["Hi.", "A much longer prompt than the first one, with more words in it."])
    responses = [torch.tensor(tiny.tokenizer("<action>go east</action>")["input_ids"]), torch.tensor([65, 66])]
    tiny.model.train()
    batched = tiny.score(prompts, responses)
    (batched.log_probs.sum() + batched.entropies.sum()).backward()
    batched_grad = tiny.model.model.layers[0].self_attn.q_proj.weight.grad.clone()
    tiny.model.zero_grad()
    alone_grad = torch.zeros_like(batched_grad)
    for i, (p, r) in enumerate(zip(prompts, responses, strict=True)):
        alone = tiny.score([p], [r])
        torch.testing.assert_close(batched.log_probs[i, : r.numel()], alone.log_probs[0], atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(batched.entropies[i, : r.numel()], alone.entropies[0], atol=1e-5, rtol=1e-5)
        assert not batched.mask[i, r.numel():].any() and float(batched.log_probs[i, r.numel():].detach().abs().sum()) == 0
        (alone.log_probs.sum() + alone.entropies.sum()).backward()
        alone_grad += tiny.model.model.layers[0].self_attn.q_proj.weight.grad
        tiny.model.zero_grad()
    assert torch.isfinite(batched_grad).all()
    torch.testing.assert_close(batched_grad, alone_grad, atol=1e-5, rtol=1e-4)


def test_left_padding_does_not_change_a_prompts_greedy_answer(tiny):
    cfg = GenerationConfig(max_new_tokens=10, do_sample=False, stop=())
    alone = tiny.generate([PROMPTS[3]], cfg)[0]
    batched = tiny.generate(PROMPTS, cfg)[3]
    assert alone.response_ids.tolist() == batched.response_ids.tolist()
    torch.testing.assert_close(alone.log_probs, batched.log_probs, atol=1e-4, rtol=1e-4)


def test_sampling_is_reproducible_with_a_seeded_generator(tiny):
    cfg = GenerationConfig(max_new_tokens=8, stop=())
    a = tiny.generate(PROMPTS, cfg, generator=torch.Generator().manual_seed(5))
    b = tiny.generate(PROMPTS, cfg, generator=torch.Generator().manual_seed(5))
    c = tiny.generate(PROMPTS, cfg, generator=torch.Generator().manual_seed(6))
    assert [g.response_ids.tolist() for g in a] == [g.response_ids.tolist() for g in b]
    assert [g.response_ids.tolist() for g in a] != [g.response_ids.tolist() for g in c]


def test_tiny_top_p_equals_greedy(tiny):
    greedy = tiny.generate(PROMPTS, GenerationConfig(max_new_tokens=6, do_sample=False, stop=()))
    nucleus = tiny.generate(
        PROMPTS, GenerationConfig(max_new_tokens=6, top_p=1e-6, stop=()), generator=torch.Generator().manual_seed(0)
    )
    assert [g.response_ids.tolist() for g in greedy] == [g.response_ids.tolist() for g in nucleus]


def test_max_batch_size_splits_without_changing_greedy_results(tiny):
    cfg = GenerationConfig(max_new_tokens=6, do_sample=False, stop=())
    whole = tiny.generate(PROMPTS, cfg)
    split = tiny.generate(PROMPTS, GenerationConfig(max_new_tokens=6, do_sample=False, stop=(), max_batch_size=1))
    assert [g.response_ids.tolist() for g in whole] == [g.response_ids.tolist() for g in split]


def test_single_character_stop_strings_end_responses(tiny):
    stops = tuple("abcdefghijklmnopqrstuvwxyz")
    out = tiny.generate(
        PROMPTS * 2, GenerationConfig(max_new_tokens=40, stop=stops), generator=torch.Generator().manual_seed(2)
    )
    assert any(g.finish_reason == "stop" for g in out)
    for g in out:
        text = tiny.tokenizer.decode(g.response_ids.tolist(), skip_special_tokens=True)
        if g.finish_reason == "stop":
            assert text[-1] in stops and not any(s in text[:-1] for s in stops)
        else:
            assert g.finish_reason == "length" and g.num_tokens == 40 and not any(s in text for s in stops)


def test_score_gradients_train_the_model_to_stop_at_the_action_tag():
    pol = LLMPolicy(*tiny_random_model(seed=1))
    target = "<think>ok</think><action>go east</action>"
    assert _fit(pol, ["Act."], [target + "ignored tail"], steps=400) < 0.1  # Adam at 1e-2 oscillates before ~200 steps
    out = pol.generate(["Act."], GenerationConfig(max_new_tokens=80, do_sample=False))[0]
    assert out.finish_reason == "stop"
    assert out.text == target  # cut at the stop string although the model would continue
    eos_out = pol.generate(["Act."], GenerationConfig(max_new_tokens=80, do_sample=False, stop=()))[0]
    assert eos_out.finish_reason == "eos" and eos_out.text == target + "ignored tail"
    assert eos_out.response_ids[-1].item() == pol.tokenizer.eos_token_id


def test_frozen_reference_stays_put_while_the_policy_trains():
    pol = LLMPolicy(*tiny_random_model(seed=2))
    p, r = pol.encode_prompts(["Hi."]), [torch.tensor(pol.tokenizer("yes")["input_ids"])]
    before = pol.reference_scores(p, r).log_probs.clone()
    with torch.no_grad():
        torch.testing.assert_close(pol.score(p, r).log_probs, before)
    _fit(pol, ["Hi."], ["yes"], steps=20)
    after_ref = pol.reference_scores(p, r).log_probs
    with torch.no_grad():
        after_pol = pol.score(p, r).log_probs
    torch.testing.assert_close(after_ref, before)
    assert float(after_pol.sum()) > float(before.sum()) + 1.0
    assert all(not q.requires_grad for q in pol._reference.parameters())


def test_lora_trains_only_the_adapter_and_its_reference_is_the_base():
    model, tok = tiny_random_model(seed=3)
    base_weight = model.model.layers[0].self_attn.q_proj.weight.detach().clone()
    pol = LLMPolicy(model, tok, lora=LoraSettings(r=4, alpha=8))
    trainable = pol.trainable_parameters()
    assert trainable and all("lora_" in n for n, q in pol.model.named_parameters() if q.requires_grad)
    assert pol.num_parameters(trainable_only=True) < pol.num_parameters() / 5
    p, r = pol.encode_prompts(["Hi."]), [torch.tensor(pol.tokenizer("yes")["input_ids"])]
    before = pol.reference_scores(p, r).log_probs.clone()
    _fit(pol, ["Hi."], ["yes"], steps=20, lr=3e-2)
    with torch.no_grad():
        after_pol = pol.score(p, r).log_probs
    torch.testing.assert_close(pol.reference_scores(p, r).log_probs, before)
    assert float(after_pol.sum()) > float(before.sum()) + 1.0
    torch.testing.assert_close(pol.model.base_model.model.model.layers[0].self_attn.q_proj.base_layer.weight, base_weight)


def test_gradient_checkpointing_gives_the_same_gradients():
    grads = []
    for ckpt in (False, True):
        pol = LLMPolicy(*tiny_random_model(seed=4), gradient_checkpointing=ckpt)
        pol.model.train()
        p, r = pol.encode_prompts(["Hi there."]), [torch.tensor(pol.tokenizer("yes sir")["input_ids"])]
        scores = pol.score(p, r)
        (scores.log_probs.sum() + scores.entropies.sum()).backward()
        grads.append(pol.model.model.layers[0].mlp.up_proj.weight.grad.clone())
    torch.testing.assert_close(grads[0], grads[1])


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"temperature": 0.0}, r"temperature=0.0 must be > 0"),
        ({"top_p": 1.5}, r"top_p=1.5 must be in \(0, 1\]"),
        ({"max_new_tokens": 0}, r"max_new_tokens=0 must be at least 1"),
        ({"stop": "</action>"}, r"must be a tuple of non-empty strings"),
        ({"max_batch_size": 0}, r"max_batch_size=0 must be a positive int"),
    ],
)
def test_generation_config_rejects_bad_values(kwargs, match):
    with pytest.raises(ConfigError, match=match):
        GenerationConfig(**kwargs)


def test_bad_inputs_give_clear_errors(tiny, tmp_path):
    with pytest.raises(ConfigError, match="got a single string"):
        tiny.generate("Go.")
    with pytest.raises(ConfigError, match="Got 1 prompts but 2 responses"):
        tiny.score([torch.tensor([1])], [torch.tensor([2]), torch.tensor([3])])
    with pytest.raises(ConfigError, match="response is empty"):
        tiny.score([torch.tensor([1])], [torch.tensor([], dtype=torch.long)])
    with pytest.raises(ConfigError, match=r"LoRA target_modules \['nope'\] are not layers"):
        LLMPolicy(*tiny_random_model(), lora=LoraSettings(target_modules=("nope",)))
    with pytest.raises(ConfigError, match="does not exist"):
        load_model(str(tmp_path / "missing-model"))
    with pytest.raises(ConfigError, match="not divisible"):
        TinyModelConfig(hidden_size=65)


def test_loading_a_folder_that_is_not_a_model_says_what_to_do(tmp_path):
    (tmp_path / "notes.txt").write_text("not a model")
    with pytest.raises(ConfigError, match="never downloads models by itself"):
        load_model(str(tmp_path))


def test_saved_tiny_model_round_trips_through_load_model(tmp_path):
    model, tok = tiny_random_model(seed=5)
    model.save_pretrained(tmp_path)
    tok.save_pretrained(tmp_path)
    loaded, loaded_tok = load_model(str(tmp_path))
    ids = torch.tensor([loaded_tok("round trip")["input_ids"]])
    with torch.no_grad():
        torch.testing.assert_close(loaded(ids).logits, model(ids).logits)


def test_byte_level_tokenizer_round_trips_env_text():
    tok = byte_level_tokenizer()
    text = "You see a café, <b>tags</b>\n\tand 中文 🙂."
    assert tok.decode(tok(text)["input_ids"]) == text
    assert tok.apply_chat_template([{"role": "user", "content": "hi"}], tokenize=False, add_generation_prompt=True) == (
        "<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n"
    )


@pytest.mark.slow
def test_embedded_smollm2_writes_a_well_formed_keydoor_step():
    """SmolLM2-135M, steered by a system prompt and a ``<think>`` prefix, writes a parseable step (measured 2/8)."""
    from empg_gym.wrappers import make_agent_env, parse_response

    system = (
        "You are a text-game agent. Always answer in exactly this form, on one line: "
        "<think> short reasoning </think><action> one admissible action </action>. "
        "Example: <think>The key is here, I should take it.</think><action>take key</action>"
    )
    pol = LLMPolicy.from_spec("smollm2-135m", system_prompt=system, response_prefix="<think>")
    assert pol.model.config.num_hidden_layers == 30 and pol.model.config.vocab_size == 49152
    env = make_agent_env("EMPG-KeyDoor-v0")
    prompt, _ = env.reset(options={"task_id": "keydoor-3r-s1-k3"})
    out = pol.generate(
        [prompt] * 8, GenerationConfig(max_new_tokens=48, temperature=0.7), generator=torch.Generator().manual_seed(0)
    )
    good = [g for g in out if parse_response(g.text).format_valid]
    assert good, [g.text for g in out]
    assert all(g.finish_reason == "stop" and "</action>" in g.text for g in good)
    _, _, _, _, info = env.step(good[0].text)
    assert info["format_valid"] and info["format_penalty"] == 0.0
    with torch.no_grad():
        scores = pol.score([good[0].prompt_ids], [good[0].response_ids], temperature=0.7)
    torch.testing.assert_close(scores.log_probs[0], good[0].log_probs, atol=1e-3, rtol=1e-3)


def test_response_prefix_is_prompted_and_reported_but_not_sampled():
    pol = LLMPolicy(*tiny_random_model(seed=0), response_prefix="<think>")
    ids = pol.encode_prompts(["Go."])[0]
    assert pol.tokenizer.decode(ids.tolist()).endswith("<|im_start|>assistant\n<think>")
    out = pol.generate(["Go."], GenerationConfig(max_new_tokens=4, stop=()), generator=torch.Generator().manual_seed(0))
    assert out[0].text.startswith("<think>") and out[0].num_tokens == 4
    assert out[0].text == "<think>" + pol.tokenizer.decode(out[0].response_ids.tolist(), skip_special_tokens=True)


def test_reference_scores_in_chunks_equal_one_pass(tiny):
    """Issue #17: the reference pass scores micro-batch-sized chunks; padding them together changes nothing."""
    gen = torch.Generator().manual_seed(0)
    prompts = tiny.encode_prompts(PROMPTS + ["x"])
    responses = [torch.randint(4, 200, (n,), generator=gen) for n in (3, 1, 6, 2, 4)]
    tiny.snapshot_reference()
    whole = tiny.reference_scores(prompts, responses)
    for chunk in (1, 2, 4):
        parts = tiny.reference_scores(prompts, responses, chunk_size=chunk)
        assert parts.log_probs.shape == whole.log_probs.shape == (5, 6) and not parts.log_probs.requires_grad
        assert torch.equal(parts.mask, whole.mask)
        torch.testing.assert_close(parts.log_probs, whole.log_probs, atol=1e-5, rtol=0)
    with pytest.raises(ConfigError, match=r"chunk_size=0 must be a positive int or None"):
        tiny.reference_scores(prompts, responses, chunk_size=0)


def test_a_bf16_model_trains_fp32_master_weights_under_bf16_autocast():
    """Issue #17: a bf16 model keeps float32 trainable weights and runs its forward passes in bf16."""
    model, tok = tiny_random_model(seed=5)
    pol = LLMPolicy(model.to(torch.bfloat16), tok)
    assert pol.compute_dtype == torch.bfloat16
    assert {p.dtype for p in pol.trainable_parameters()} == {torch.float32}
    seen = []
    hook = pol.model.model.layers[0].mlp.down_proj.register_forward_hook(lambda m, i, o: seen.append(o.dtype))
    try:
        out = pol.generate(["Go."], GenerationConfig(max_new_tokens=3), generator=torch.Generator().manual_seed(0))
        scores = pol.score([out[0].prompt_ids], [out[0].response_ids])
    finally:
        hook.remove()
    assert set(seen) == {torch.bfloat16} and scores.log_probs.dtype == torch.float32
    torch.testing.assert_close(scores.log_probs[0], out[0].log_probs, atol=0.05, rtol=0)  # bf16 forward, both ways
    scores.log_probs.sum().backward()
    assert all(p.grad is not None and p.grad.dtype == torch.float32 for p in pol.trainable_parameters())
    pol.snapshot_reference()  # frozen: it needs no master copy
    assert {p.dtype for p in pol._reference.parameters()} == {torch.bfloat16}
    ref = pol.reference_scores([out[0].prompt_ids], [out[0].response_ids])
    torch.testing.assert_close(ref.log_probs, scores.log_probs.detach(), atol=0.05, rtol=0)


def _score_and_grads(pol: LLMPolicy, prompts: list, responses: list, dedup: bool, monkeypatch) -> tuple:
    monkeypatch.setattr(policy, "_deterministic", lambda net: dedup)
    pol.model.zero_grad(set_to_none=True)
    scores = pol.score(prompts, responses)
    weights = torch.arange(1.0, len(prompts) + 1)[:, None]  # every row its own weight in the loss
    ((scores.log_probs * weights).sum() + scores.entropies.sum()).backward()
    grads = {n: p.grad.clone() for n, p in pol.model.named_parameters() if p.grad is not None}
    return scores, grads


def test_scoring_each_distinct_row_once_changes_no_score_and_no_gradient(monkeypatch):
    """Rows that share prompt and response up to their last token run once; scores and gradients stay the same."""
    pol = LLMPolicy(*tiny_random_model(seed=5))
    pol.model.train()
    p = pol.encode_prompts(["Go.", "Longer prompt here.", "Go."])
    a, b, c = (torch.tensor(pol.tokenizer(t)["input_ids"]) for t in ("yes", "yep", "no way"))
    prompts, responses = [p[0], p[1], p[2], p[0], p[0]], [a, a, b, c, a]  # rows 0, 2 and 4 share "Go." + "ye"
    rows, index = policy._distinct_rows(prompts, responses)
    assert rows == [0, 1, 3] and index.tolist() == [0, 1, 0, 2, 0]
    plain, plain_grads = _score_and_grads(pol, prompts, responses, False, monkeypatch)
    shared, shared_grads = _score_and_grads(pol, prompts, responses, True, monkeypatch)
    torch.testing.assert_close(shared.log_probs, plain.log_probs)
    torch.testing.assert_close(shared.entropies, plain.entropies)
    assert shared_grads.keys() == plain_grads.keys()
    for name, grad in plain_grads.items():  # summed in another order: float rounding of the tensor's own size
        torch.testing.assert_close(shared_grads[name], grad, rtol=1e-4, atol=1e-5 * float(grad.abs().max()))


def test_rows_are_not_shared_when_a_pass_is_random_or_watched():
    pol = LLMPolicy(*tiny_random_model(seed=5))
    assert policy._deterministic(pol.model.train()) and policy._deterministic(pol.model.eval())
    handle = pol.model.lm_head.register_forward_hook(lambda *args: None)  # e.g. EMPG's lora_ensemble reads rows
    assert not policy._deterministic(pol.model)
    handle.remove()
    pol.model.config.attention_dropout = 0.1
    assert not policy._deterministic(pol.model.train()) and policy._deterministic(pol.model.eval())


def test_prompt_encodings_are_memoised_per_prompt_and_settings(tiny):
    first = tiny.encode_prompts(["Go.", "Go."])
    assert first[0] is first[1] and first[0].tolist() == tiny._encode("Go.").tolist()
    tiny.response_prefix = "<action>"  # a changed setting is a different prompt
    assert tiny.encode_prompts(["Go."])[0].tolist() == tiny._encode("Go.").tolist() != first[0].tolist()


def test_the_tiny_tokenizer_keeps_only_the_informative_words_of_keyrooms():
    from empg_gym.agents.tiny import env_vocabulary, tiny_action_model

    _, tok = tiny_action_model(*env_vocabulary("EMPG-KeyRooms-v0"))
    obs = ("You are in room 2. You see a white key. A locked blue door leads east. You carry a red key. "
           "Next: the blue key, west.")
    assert tok.convert_ids_to_tokens(tok(obs)["input_ids"]) == [
        "<|im_start|>", "see", "white", "key", "locked", "blue", "door", "east", "carry", "red", "key", "next",
        "blue", "key", "west"]
    assert tok.convert_ids_to_tokens(tok("Nothing happens.")["input_ids"]) == ["<|im_start|>", "nothing"]
    assert tok("Hmm?")["input_ids"] == [tok.bos_token_id]  # unknown words alone still give a prompt token
    assert tok.decode(tok.convert_tokens_to_ids(["<action>go west</action>"])) == "<action>go west</action>"


def test_one_token_responses_reuse_the_logits_of_prompts_met_before(tiny):
    cfg = GenerationConfig(max_new_tokens=1, do_sample=False)
    memo: dict = {}
    first = tiny.generate(["Go.", "Stop."], cfg, prompt_logits=memo)
    assert len(memo) == 2
    calls = []
    handle = tiny.model.register_forward_hook(lambda *args: calls.append(1))
    again = tiny.generate(["Stop.", "Go.", "Go."], cfg, prompt_logits=memo)
    handle.remove()
    assert calls == []  # every prompt was met before: no forward pass
    assert [g.response_ids.tolist() for g in again] == [first[1].response_ids.tolist()] + [
        first[0].response_ids.tolist()] * 2
    torch.testing.assert_close(again[0].log_probs, first[1].log_probs)
    fresh = tiny.generate(["Stop."], cfg)  # without a memo: the same answer, computed afresh
    torch.testing.assert_close(fresh[0].log_probs, first[1].log_probs)
    torch.testing.assert_close(fresh[0].entropies, first[1].entropies)
