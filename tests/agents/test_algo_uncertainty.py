"""EMPG's pluggable step uncertainty (issue #16): hand-worked token signals, MC dropout, the trained ensemble, the
default's bit-identity with the entropy path, validation, and a short training run per signal.
"""

from __future__ import annotations

import dataclasses
import doctest
import importlib
import math

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

from empg_gym.agents.algorithms import (  # noqa: E402
    UNCERTAINTIES,
    UNCERTAINTY_KINDS,
    EMPGConfig,
    LogitEnsemble,
    LoraEnsemble,
    MCDropout,
    StepBatch,
    UncertaintyHooks,
    build_uncertainty,
    compute_advantages,
    empg_terms,
    generation_signal,
    get_algorithm,
    grpo_advantages,
    logp_variance,
    register_uncertainty,
    step_entropy,
)
from empg_gym.agents.algorithms.uncertainty import entropy, one_minus_p, renyi2  # noqa: E402
from empg_gym.agents.config import TrainConfig  # noqa: E402
from empg_gym.agents.models import tiny_random_model  # noqa: E402
from empg_gym.agents.policy import GenerationConfig, LLMPolicy, LoraSettings  # noqa: E402
from empg_gym.agents.trainer import Trainer  # noqa: E402
from empg_gym.errors import ConfigError  # noqa: E402

SIGNALS = ("entropy", "renyi2", "one_minus_p", "mc_dropout", "lora_ensemble")


def _empg(**knobs):
    return dataclasses.replace(get_algorithm("empg"), empg=EMPGConfig(**knobs))


# ------------------------------------------------------------------------------------- token signals
def _logp(probs):
    return torch.log(torch.tensor(probs, dtype=torch.float64))


@pytest.mark.parametrize("chosen", [0, 3])
def test_uniform_over_four(chosen):
    logp, y = _logp([0.25] * 4), torch.tensor(chosen)
    assert entropy(logp, y).item() == pytest.approx(math.log(4), abs=1e-12)
    assert renyi2(logp, y).item() == pytest.approx(math.log(4), abs=1e-12)
    assert one_minus_p(logp, y).item() == pytest.approx(0.75, abs=1e-12)


def test_one_hot_is_certain_on_every_signal():
    logp, y = torch.log_softmax(torch.tensor([0.0, -1e4, -1e4], dtype=torch.float64), -1), torch.tensor(0)
    assert (entropy(logp, y).item(), renyi2(logp, y).item(), one_minus_p(logp, y).item()) == (0.0, 0.0, 0.0)


@pytest.mark.parametrize("p", [0.1, 0.3, 0.5])
def test_two_tokens(p):
    q = 1 - p
    logp = _logp([p, q])
    assert entropy(logp, torch.tensor(0)).item() == pytest.approx(-(p * math.log(p) + q * math.log(q)), abs=1e-12)
    assert renyi2(logp, torch.tensor(0)).item() == pytest.approx(-math.log(p * p + q * q), abs=1e-12)
    assert one_minus_p(logp, torch.tensor(0)).item() == pytest.approx(q, abs=1e-12)
    assert one_minus_p(logp, torch.tensor(1)).item() == pytest.approx(p, abs=1e-12)
    assert renyi2(logp, torch.tensor(0)).item() <= entropy(logp, torch.tensor(0)).item() + 1e-12


def test_token_signals_work_on_batches():
    logp = torch.log_softmax(torch.randn(3, 5, 7, generator=torch.Generator().manual_seed(0)), -1)
    y = torch.randint(0, 7, (3, 5), generator=torch.Generator().manual_seed(1))
    for fn in (entropy, renyi2, one_minus_p):
        assert fn(logp, y).shape == (3, 5)
    assert torch.all(renyi2(logp, y) <= entropy(logp, y) + 1e-6)
    assert torch.allclose(one_minus_p(logp, y), 1 - logp.gather(-1, y[..., None]).squeeze(-1).exp())


def test_generation_reports_the_asked_signal_without_changing_the_draw():
    policy = LLMPolicy(*tiny_random_model(seed=0))
    outs = {}
    for name in (None, "entropy", "renyi2", "one_minus_p"):
        cfg = GenerationConfig(max_new_tokens=6, uncertainty=name, stop=())
        outs[name] = policy.generate(["Hi.", "Go east."], cfg, generator=torch.Generator().manual_seed(3))
    for name, gens in outs.items():
        for g, base in zip(gens, outs[None], strict=True):
            assert torch.equal(g.response_ids, base.response_ids) and torch.equal(g.entropies, base.entropies)
            assert (g.uncertainty is None) == (name is None)
    for g in outs["entropy"]:
        assert torch.equal(g.uncertainty, g.entropies)  # the same expression, bit for bit
    for g in outs["renyi2"]:
        assert torch.all(g.uncertainty <= g.entropies + 1e-5) and torch.all(g.uncertainty >= 0)
    for g in outs["one_minus_p"]:
        assert torch.allclose(g.uncertainty, 1 - g.log_probs.exp(), atol=1e-6)


# --------------------------------------------------------------------------- the default is the old path
def _batch(seed=0, n=8, T=4):
    g = torch.Generator().manual_seed(seed)
    mask = torch.ones(n, T, dtype=torch.bool)
    mask[1, 2:] = False
    return StepBatch(response_mask=mask, old_logp=torch.zeros(n, T), reward=torch.tensor([1.0, 1, 1, 1, 0, 0, 0, 0]),
                     group_id=torch.zeros(n, dtype=torch.long), traj_id=torch.tensor([0, 0, 1, 1, 2, 2, 3, 3]),
                     step_index=torch.tensor([0, 1] * 4), is_last=torch.tensor([False, True] * 4),
                     token_entropy=torch.rand(n, T, generator=g) * 3)


def _old_empg_advantages(batch):
    """The EMPG advantages as the code computed them before signals were pluggable (GRPO base, no penalty)."""
    A = grpo_advantages(batch.reward, batch.group_id, True, 1e-6, traj_ids=batch.traj_id)
    H = step_entropy(batch.token_entropy, batch.response_mask)
    _, g, f = empg_terms(H, batch.traj_id, batch.step_index, 1.0, 1.0, 1e-8)
    A_mod = g * A + 0.05 * f
    return A_mod - A_mod.mean()


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_default_config_gives_exactly_the_old_advantages(seed):
    batch = _batch(seed)
    assert get_algorithm("empg").empg.uncertainty == "entropy"
    A, _ = compute_advantages(get_algorithm("empg"), batch)
    assert torch.equal(A, _old_empg_advantages(batch))
    # a token_uncertainty in the batch is ignored by the default signal
    noisy = dataclasses.replace(batch, token_uncertainty=torch.rand(batch.response_mask.shape))
    assert torch.equal(compute_advantages(get_algorithm("empg"), noisy)[0], A)


def test_another_signal_reads_token_uncertainty():
    batch = _batch(0)
    same = dataclasses.replace(batch, token_uncertainty=batch.token_entropy.clone())
    A_entropy, _ = compute_advantages(get_algorithm("empg"), batch)
    assert torch.equal(compute_advantages(_empg(uncertainty="renyi2"), same)[0], A_entropy)
    other = dataclasses.replace(batch, token_uncertainty=batch.token_entropy.flip(0))
    A_other, m = compute_advantages(_empg(uncertainty="renyi2"), other)
    assert not torch.equal(A_other, A_entropy)
    assert m["empg/H_mean"] == pytest.approx(float(step_entropy(other.token_uncertainty, other.response_mask).mean()))
    with pytest.raises(ConfigError, match=r"EMPG with uncertainty='renyi2' needs StepBatch.token_uncertainty"):
        compute_advantages(_empg(uncertainty="renyi2"), batch)


def test_a_default_empg_run_trains_on_the_old_advantages(tmp_path):
    """Through the trainer: the advantages of a default EMPG update equal the old formula on the rollout's entropies."""
    seen = []

    class Recording(Trainer):
        def _update(self, batch, advantages, prompts, responses):
            seen.append((batch, advantages))
            return super()._update(batch, advantages, prompts, responses)

    trainer = Recording(_cfg("entropy", updates=1), tmp_path)
    assert type(trainer.uncertainty) is UncertaintyHooks and trainer._generation().uncertainty is None
    trainer.train()
    (batch, A), = seen
    assert batch.token_uncertainty is None
    old = _old_empg_advantages(dataclasses.replace(batch, format_penalty=None)) - batch.format_penalty
    assert torch.equal(A, old)


# --------------------------------------------------------------------------------------- MC dropout
def _responses(policy, n=3):
    gens = policy.generate(["Hi.", "Go east now.", "Take the key."][:n], GenerationConfig(max_new_tokens=5, stop=()),
                           generator=torch.Generator().manual_seed(0))
    return [g.prompt_ids for g in gens], [g.response_ids for g in gens]


def _state(policy):
    return {k: v.detach().clone() for k, v in policy.model.state_dict().items()}


@pytest.mark.parametrize("lora", [False, True])
@pytest.mark.parametrize("training", [False, True])
def test_mc_dropout_variance_and_the_policy_is_left_as_it_was(lora, training):
    policy = LLMPolicy(*tiny_random_model(seed=0), lora=LoraSettings(r=2, target_modules=("q_proj",)) if lora else None)
    prompts, responses = _responses(policy)
    policy.model.train(training)
    before = _state(policy)
    hooks_before = [len(m._forward_hooks) for m in policy.model.modules()]
    lengths = [r.numel() for r in responses]

    def measure(p, seed=5):
        hooks = MCDropout(policy, _empg(uncertainty="mc_dropout", mc_dropout_p=p, uncertainty_samples=4))
        return hooks.measure(prompts, responses, temperature=1.0, chunk_size=2, seed=seed)

    zero = measure(0.0)
    assert zero.shape == (3, max(lengths)) and torch.equal(zero, torch.zeros_like(zero))
    var = measure(0.3)
    mask = torch.arange(var.shape[1])[None] < torch.tensor(lengths)[:, None]
    assert torch.all(var[mask] > 0) and torch.all(var[~mask] == 0)
    assert torch.equal(var, measure(0.3))  # seeded masks
    assert not torch.equal(var, measure(0.3, seed=6))
    assert policy.model.training is training
    assert [len(m._forward_hooks) for m in policy.model.modules()] == hooks_before
    after = _state(policy)
    assert before.keys() == after.keys() and all(torch.equal(before[k], after[k]) for k in before)


def test_logp_variance_is_zero_for_one_pass_or_equal_passes():
    mask = torch.tensor([[True, True, False]])
    one = torch.randn(1, 1, 3)
    assert torch.equal(logp_variance(one, mask), torch.zeros(1, 3))
    assert torch.equal(logp_variance(one.expand(4, -1, -1), mask), torch.zeros(1, 3))
    with pytest.raises(ConfigError, match=r"logps must be \[K, N, T\]"):
        logp_variance(torch.zeros(2, 3), mask)


# ------------------------------------------------------------------------------------------ ensemble
def test_ensemble_members_differ_and_agree_when_identical():
    ens = LogitEnsemble(hidden=8, vocab=5, members=3, rank=2, generator=torch.Generator().manual_seed(0))
    g = torch.Generator().manual_seed(1)
    h, z = torch.randn(2, 4, 8, generator=g), torch.randn(2, 4, 5, generator=g)
    y = torch.randint(0, 5, (2, 4), generator=g)
    mask = torch.ones(2, 4, dtype=torch.bool)
    lp = ens.member_logp(h, z, y, temperature=1.0)
    assert lp.shape == (3, 2, 4)
    assert not torch.equal(lp[0], lp[1]) and not torch.equal(lp[1], lp[2])
    assert torch.all(logp_variance(lp, mask) > 0)
    with torch.no_grad():
        ens.A[1:] = ens.A[0]
        ens.B[1:] = ens.B[0]
    assert torch.equal(logp_variance(ens.member_logp(h, z, y, 1.0), mask), torch.zeros(2, 4))
    single = LogitEnsemble(hidden=8, vocab=5, members=1, rank=2, generator=torch.Generator().manual_seed(0))
    assert torch.equal(logp_variance(single.member_logp(h, z, y, 1.0), mask), torch.zeros(2, 4))


def test_ensemble_trains_its_heads_and_never_the_policy():
    from empg_gym.agents.algorithms import loss_norm

    policy = LLMPolicy(*tiny_random_model(seed=0))
    prompts, responses = _responses(policy)
    algo = _empg(uncertainty="lora_ensemble", uncertainty_samples=3, ensemble_lr=1e-2)
    hooks = LoraEnsemble(policy, algo, lr=1e-6, seed=0)
    assert hooks.optimizer.param_groups[0]["lr"] == 1e-2
    var = hooks.measure(prompts, responses, temperature=1.0, chunk_size=2, seed=0)
    lengths = torch.tensor([r.numel() for r in responses])
    mask = torch.arange(var.shape[1])[None] < lengths[:, None]
    assert torch.all(var[mask] > 0) and torch.all(var[~mask] == 0)
    start = [p.detach().clone() for p in hooks.ensemble.parameters()]
    idx = torch.tensor([2, 0])
    sub = StepBatch(response_mask=mask[idx], old_logp=torch.zeros(2, var.shape[1]), reward=torch.zeros(2),
                    group_id=torch.zeros(2, dtype=torch.long), traj_id=torch.arange(2),
                    step_index=torch.zeros(2, dtype=torch.long), is_last=torch.ones(2, dtype=torch.bool))
    with hooks.capture():
        policy.score([prompts[i] for i in idx], [responses[i] for i in idx])
    hooks.train_on(idx, sub, torch.tensor([1.0, -1.0]), loss_norm(sub.response_mask))
    assert all(p.grad is None for p in policy.model.parameters())
    hooks.step()
    assert all(not torch.equal(a, b) for a, b in zip(start, hooks.ensemble.parameters(), strict=True))
    with pytest.raises(ConfigError, match="no policy forward pass was captured"):
        hooks.train_on(idx, sub, torch.tensor([1.0, -1.0]), loss_norm(sub.response_mask))


# ---------------------------------------------------------------------------------------- validation
def test_config_validation():
    with pytest.raises(ConfigError, match=r"EMPGConfig.uncertainty must be a registered signal, got 'renyi'.*"
                                          r"Did you mean 'renyi2'"):
        EMPGConfig(uncertainty="renyi")
    with pytest.raises(ConfigError, match=r"uncertainty_samples must be an int >= 2 for 'mc_dropout'.*got 1"):
        EMPGConfig(uncertainty="mc_dropout", uncertainty_samples=1)
    with pytest.raises(ConfigError, match=r"uncertainty_samples must be an int >= 1, got 0"):
        EMPGConfig(uncertainty_samples=0)
    with pytest.raises(ConfigError, match=r"mc_dropout_p must be in \[0, 1\).*got 1.0"):
        EMPGConfig(mc_dropout_p=1.0)
    with pytest.raises(ConfigError, match=r"ensemble_rank must be an int >= 1.*got 0"):
        EMPGConfig(ensemble_rank=0)
    with pytest.raises(ConfigError, match=r"ensemble_lr must be > 0 or None.*got -1"):
        EMPGConfig(ensemble_lr=-1)
    with pytest.raises(ConfigError, match=r"'mc_dropout' needs forward passes after the rollout"):
        GenerationConfig(uncertainty="mc_dropout")
    with pytest.raises(ConfigError, match=r"Unknown uncertainty signal 'one_minus'.*Did you mean 'one_minus_p'"):
        GenerationConfig(uncertainty="one_minus")
    with pytest.raises(ConfigError, match=r"uncertainty signal 'renyi2' is already registered"):
        register_uncertainty("renyi2")(lambda logp, token: logp.sum(-1))
    with pytest.raises(ConfigError, match=r"kind must be 'token' or 'model', got 'layer'"):
        register_uncertainty("doc-x", kind="layer")  # type: ignore[arg-type]


def test_only_the_asked_signal_is_built():
    assert set(SIGNALS) <= set(UNCERTAINTIES)
    assert {n: UNCERTAINTY_KINDS[n] for n in SIGNALS} == {"entropy": "token", "renyi2": "token",
                                                          "one_minus_p": "token", "mc_dropout": "model",
                                                          "lora_ensemble": "model"}
    policy = LLMPolicy(*tiny_random_model(seed=0))
    expect = {"entropy": (UncertaintyHooks, None), "renyi2": (UncertaintyHooks, "renyi2"),
              "one_minus_p": (UncertaintyHooks, "one_minus_p"), "mc_dropout": (MCDropout, None),
              "lora_ensemble": (LoraEnsemble, None)}
    for name, (cls, gen) in expect.items():
        algo = _empg(uncertainty=name)
        assert type(build_uncertainty(algo, policy, lr=1e-3, seed=0)) is cls
        assert generation_signal(algo) == gen
    grpo = dataclasses.replace(get_algorithm("grpo"))
    assert type(build_uncertainty(grpo, policy, lr=1e-3, seed=0)) is UncertaintyHooks
    assert generation_signal(grpo) is None


def test_overrides_from_python_toml_and_the_bench(tmp_path):
    from empg_gym.bench.presets import BenchConfig

    for overrides in ({"empg.uncertainty": "renyi2"}, {"empg": {"uncertainty": "renyi2"}}):
        assert TrainConfig(algo="empg", algo_overrides=overrides).algorithm().empg.uncertainty == "renyi2"
    with pytest.raises(ConfigError, match=r"EMPGConfig.uncertainty must be a registered signal, got 'nope'"):
        TrainConfig(algo="empg", algo_overrides={"empg": {"uncertainty": "nope"}})
    with pytest.raises(ConfigError, match=r"algo_overrides key 'empg.samples': EMPGConfig has no field 'samples'"):
        TrainConfig(algo="empg", algo_overrides={"empg": {"samples": 3}})
    with pytest.raises(ConfigError, match=r"algo_overrides key 'empg': empg is not enabled in this preset"):
        TrainConfig(algo="grpo", algo_overrides={"empg": {"uncertainty": "renyi2"}})
    path = tmp_path / "run.toml"
    path.write_text('algo = "empg"\n[algo_overrides.empg]\nuncertainty = "mc_dropout"\nuncertainty_samples = 3\n')
    empg = TrainConfig.from_file(path).algorithm().empg
    assert (empg.uncertainty, empg.uncertainty_samples) == ("mc_dropout", 3)
    bench = BenchConfig(algos=("grpo", "empg"), train={"model": "tiny-actions",
                                                        "algo_overrides": {"empg.uncertainty": "renyi2",
                                                                           "use_kl": False}})
    grpo, empg_run = (bench.train_config("EMPG-KeyDoor-v0", a, 0) for a in ("grpo", "empg"))
    assert grpo.algorithm().empg is None and not grpo.algorithm().use_kl
    assert empg_run.algorithm().empg.uncertainty == "renyi2" and not empg_run.algorithm().use_kl
    sweep = BenchConfig(algos=("grpo", "empg"), sweep={"uncertainty": ["entropy", "renyi2"]},
                        train={"model": "tiny-actions"})
    swept = {label: sweep.train_config("EMPG-KeyDoor-v0", label, 0).algorithm().empg for label in sweep.labels}
    assert {label: e and e.uncertainty for label, e in swept.items()} == {
        "grpo": None, "empg[uncertainty=entropy]": "entropy", "empg[uncertainty=renyi2]": "renyi2"}


def test_module_doctests():
    mod = importlib.import_module("empg_gym.agents.algorithms.uncertainty")
    saved = dict(UNCERTAINTIES), dict(UNCERTAINTY_KINDS)
    try:
        result = doctest.testmod(mod, optionflags=doctest.ELLIPSIS)
    finally:
        for table, old in zip((UNCERTAINTIES, UNCERTAINTY_KINDS), saved, strict=True):
            table.clear()
            table.update(old)
    assert result.attempted > 0 and result.failed == 0


# ------------------------------------------------------------------------------------ training runs
def _cfg(signal, **kw):
    base = dict(env_id="EMPG-KeyRooms-v0", model="tiny-actions", algo="empg", max_new_tokens=1, require_think=False,
                history_length=0, prompt_template="{observation}", progress=False, updates=2, tasks_per_update=2,
                group_size=2, max_steps=4, lr=2e-3, mini_batch_size=16, micro_batch_size=8,
                algo_overrides={"use_kl": False, "empg.uncertainty": signal, "empg.uncertainty_samples": 3})
    base.update(kw)
    return TrainConfig(**base)


@pytest.mark.parametrize("signal", SIGNALS)
def test_a_short_run_per_signal(tmp_path, signal):
    trainer = Trainer(_cfg(signal), tmp_path)
    start = [p.detach().clone() for p in trainer.uncertainty.ensemble.parameters()] \
        if signal == "lora_ensemble" else None
    history = trainer.train()
    assert len(history) == 2
    for m in history:
        assert all(math.isfinite(m[k]) for k in ("adv/mean", "adv/min", "adv/max", "empg/H_mean", "empg/g_mean"))
        assert m["empg/H_mean"] >= 0 and m["empg/g_mean"] == pytest.approx(1.0, abs=1e-5)
        assert math.isfinite(m["rollout/step_entropy"]) and m["rollout/step_entropy"] > 0  # Shannon, whatever H is
    if start is not None:  # the members were trained, and differ from each other
        now = list(trainer.uncertainty.ensemble.parameters())
        assert all(not torch.equal(a, b) for a, b in zip(start, now, strict=True))
        assert not torch.equal(now[1][0], now[1][1])
        assert (tmp_path / "checkpoint" / "uncertainty.pt").is_file()


def test_lora_ensemble_resumes_exactly(tmp_path):
    straight = Trainer(_cfg("lora_ensemble", updates=3, checkpoint_every=1), tmp_path / "a").train()
    Trainer(_cfg("lora_ensemble", updates=2, checkpoint_every=1), tmp_path / "b").train()
    resumed = Trainer(_cfg("lora_ensemble", updates=3, checkpoint_every=1), tmp_path / "b", resume=True).train()
    for key in ("empg/H_mean", "adv/abs_mean", "actor/pg_loss"):
        assert resumed[0][key] == pytest.approx(straight[2][key], abs=1e-6), key
