"""One command for whoever has a GPU: our trainer at the paper's per-step shapes, then verl through our plugin.

On a CUDA machine, with nothing downloaded:

(a) two updates of empg-gym's own trainer (EMPG) on ``EMPG-KeyRooms-v0`` with a randomly initialised
    Qwen2.5-1.5B-shaped model in bf16, at the paper's per-step shapes (16 tasks x 8 trajectories, 512 new tokens,
    history 2, ``<think>``/``<action>`` format; episodes cut after 2 steps, since a random model never finishes one):
    prints generation and update tokens/s and the peak GPU memory;
(b) if verl, vLLM and FSDP import: two steps of ``verl.trainer.main_ppo`` through our plugin, on a KeyRooms export
    and a local random tiny Qwen-shaped model folder, for ``empg``, ``gigpo``, ``empg_gym_grpo`` and the DAPO filter
    settings, checking that ``empg/*`` (for empg), ``actor/entropy`` and the ``won`` metrics are logged.

On a machine without CUDA it prints what it would run and exits 0 (``--device cpu`` runs part (a) on the CPU
instead, at any ``--shape``; the tests run it with ``--shape tiny``). Random weights: throughput and memory only,
never learning.

    python scripts/gpu_smoke.py                                   # GPU: (a) then (b); CPU: the plan
    python scripts/gpu_smoke.py --device cpu --shape tiny --tasks 2 --group 2 --max-new-tokens 8 --skip-verl
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
ENV_ID = "EMPG-KeyRooms-v0"
#: Qwen2Config fields per shape; ``qwen2.5-1.5b`` is Qwen2.5-1.5B-Instruct's published config.
SHAPES = {
    "qwen2.5-1.5b": dict(hidden_size=1536, intermediate_size=8960, num_hidden_layers=28, num_attention_heads=12,
                         num_key_value_heads=2, vocab_size=151936, max_position_embeddings=32768, rope_theta=1e6,
                         tie_word_embeddings=True),
    "tiny": dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
                 num_key_value_heads=2, vocab_size=1024, max_position_embeddings=4096, tie_word_embeddings=True),
}
#: verl runs of part (b): name -> the estimator and extra overrides.
VERL_RUNS = {
    "empg": ["algorithm.adv_estimator=empg", "+algorithm.empg.k=1.0", "+algorithm.empg.zeta=0.05"],
    "gigpo": ["algorithm.adv_estimator=gigpo"],
    "empg_gym_grpo": ["algorithm.adv_estimator=empg_gym_grpo"],
    "dapo": ["algorithm.adv_estimator=empg_gym_grpo", "actor_rollout_ref.actor.clip_ratio_high=0.28",
             "algorithm.filter_groups.enable=True", "algorithm.filter_groups.metric=won"],
}


def random_model_folder(shape: str, dtype: str, folder: Path) -> Path:
    """Save a randomly initialised Qwen2 model of ``shape`` and the byte-level tokenizer to ``folder``."""
    import torch
    from transformers import Qwen2Config, Qwen2ForCausalLM

    from empg_gym.agents.models import byte_level_tokenizer

    torch.manual_seed(0)
    model = Qwen2ForCausalLM(Qwen2Config(**SHAPES[shape], torch_dtype=dtype)).to(getattr(torch, dtype))
    model.save_pretrained(folder)
    byte_level_tokenizer().save_pretrained(folder)
    return folder


def trainer_config(args: argparse.Namespace, model: str, device: str) -> dict[str, object]:
    return dict(env_id=ENV_ID, algo="empg", model=model, dtype=args.dtype, device=device,
                tasks_per_update=args.tasks, group_size=args.group, max_new_tokens=args.max_new_tokens, max_steps=2,
                history_length=2, require_think=True, updates=args.updates, gradient_checkpointing=True,
                mini_batch_size=args.tasks * args.group, micro_batch_size=args.micro_batch, progress=False,
                checkpoint_every=10**6)


def run_trainer(args: argparse.Namespace, device: str, work: Path) -> dict[str, float]:
    """Part (a): ``args.updates`` updates of our trainer; return the throughput and memory it measured."""
    import torch

    from empg_gym.agents.config import TrainConfig
    from empg_gym.agents.trainer import Trainer

    t0 = time.perf_counter()
    folder = random_model_folder(args.shape, args.dtype, work / f"model-{args.shape}")
    print(f"(a) random {args.shape} model saved in {time.perf_counter() - t0:.0f} s", flush=True)
    if device.startswith("cuda"):
        torch.cuda.reset_peak_memory_stats()
    trainer = Trainer(TrainConfig(**trainer_config(args, str(folder), device)), work / "run")
    try:
        rows = trainer.train()
    finally:
        trainer.close()
    last = rows[-1]
    result = {
        "updates": float(len(rows)),
        "gen_tokens_per_s": last["time/gen_tokens_per_s"],
        "update_tokens_per_s": last["time/tokens_per_s"],
        "rollout_s": last["time/rollout"], "update_s": last["time/update"],
        "prompt_len": last["rollout/prompt_len"], "response_len": last["rollout/response_len"],
        "step_rows": last["rollout/num_samples"],
    }
    if device.startswith("cuda"):
        result["peak_gpu_gib"] = torch.cuda.max_memory_allocated() / 2**30
    return result


def verl_available() -> str | None:
    """Return why part (b) cannot run here, or ``None`` when verl, vLLM and FSDP are importable and CUDA is there."""
    missing = [m for m in ("verl", "vllm", "torch.distributed.fsdp") if importlib.util.find_spec(m.split(".")[0]) is None]
    if missing:
        return f"not importable: {', '.join(missing)} (pip install 'verl[vllm]==0.9.1' 'empg-gym[verl]')"
    import torch

    return None if torch.cuda.is_available() else "no CUDA GPU"


def verl_command(name: str, data: Path, model: Path, n_gpus: int) -> list[str]:
    """The ``main_ppo`` command of verl run ``name``: the launch scripts' overrides, shrunk to two small steps."""
    env = {**os.environ, "PRINT_ARGS": "1", "DATA": str(data), "MODEL": str(model), "N_GPUS": str(n_gpus)}
    common = subprocess.run(["bash", str(ROOT / "examples" / "verl" / "run_grpo.sh")], env=env, check=True,
                            capture_output=True, text=True, stdin=subprocess.DEVNULL).stdout.splitlines()
    keep = [o for o in common if not o.startswith(("data.train_files", "data.val_files", "algorithm.adv_estimator",
                                                   "trainer.experiment_name", "actor_rollout_ref.actor.clip_ratio_high"))]
    return [sys.executable, "-m", "verl.trainer.main_ppo", *keep, *VERL_RUNS[name],
            f"data.train_files={data / 'keyrooms_train.parquet'}",
            f"data.val_files={data / 'keyrooms_eval_in_distribution.parquet'}",
            "data.train_batch_size=4", "actor_rollout_ref.rollout.n=4", "actor_rollout_ref.actor.ppo_mini_batch_size=4",
            "actor_rollout_ref.actor.ppo_micro_batch_size_per_gpu=2", "data.max_response_length=64",
            "actor_rollout_ref.rollout.gpu_memory_utilization=0.3", "trainer.total_training_steps=2",
            "trainer.test_freq=-1", "trainer.save_freq=-1", "trainer.val_before_train=False",
            f"trainer.experiment_name=gpu_smoke_{name}"]


def run_verl(work: Path, n_gpus: int) -> dict[str, str]:
    """Part (b): two verl steps per run; return ``{run: "ok" or what was missing}``."""
    from empg_gym.integrations.verl import episode_rows, write_parquet

    data = work / "verl-data"
    for split, n in (("train", 16), ("eval_in_distribution", 8)):
        write_parquet(episode_rows(ENV_ID, split, n_tasks=n), data / f"keyrooms_{split}.parquet")
    model = random_model_folder("tiny", "bfloat16", work / "model-verl-tiny")
    results = {}
    for name in VERL_RUNS:
        t0 = time.perf_counter()
        out = subprocess.run(verl_command(name, data, model, n_gpus), capture_output=True, text=True,
                             stdin=subprocess.DEVNULL, cwd=work)
        log = out.stdout + out.stderr
        (work / f"verl_{name}.log").write_text(log, encoding="utf-8")
        wanted = ["actor/entropy", "won"] + (["empg/"] if name == "empg" else [])
        missing = [w for w in wanted if w not in log]
        ok = out.returncode == 0 and not missing
        results[name] = "ok" if ok else f"exit {out.returncode}, missing {missing} (log: {work / f'verl_{name}.log'})"
        print(f"(b) verl {name}: {results[name]} in {time.perf_counter() - t0:.0f} s", flush=True)
    return results


def plan(args: argparse.Namespace, why: str) -> str:
    cfg = trainer_config(args, f"<random {args.shape} folder>", "cuda")
    lines = [f"gpu_smoke: dry run ({why}); on a CUDA machine this would run:",
             f"  (a) {args.updates} updates of empg-gym's trainer: " + json.dumps(cfg),
             f"  (b) if verl, vLLM and FSDP import: 2 steps of verl.trainer.main_ppo each for {', '.join(VERL_RUNS)} "
             f"on a {ENV_ID} export with a random tiny Qwen folder (checks actor/entropy, won and empg/* metrics)",
             "  then print generation/update tokens/s and peak GPU memory. Nothing was run."]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default=None, help="cuda (default when there is one) or cpu (runs (a) here)")
    parser.add_argument("--shape", default="qwen2.5-1.5b", choices=sorted(SHAPES))
    parser.add_argument("--dtype", default=None, help="bfloat16 on a GPU, float32 on the CPU (default)")
    parser.add_argument("--updates", type=int, default=2)
    parser.add_argument("--tasks", type=int, default=16, help="tasks per update (paper: 16)")
    parser.add_argument("--group", type=int, default=8, help="trajectories per task (paper: 8)")
    parser.add_argument("--max-new-tokens", type=int, default=512, help="paper: 512")
    parser.add_argument("--micro-batch", type=int, default=8)
    parser.add_argument("--skip-verl", action="store_true", help="run part (a) only")
    parser.add_argument("--out", type=Path, default=None, help="keep models, runs and logs here (default: a temp dir)")
    args = parser.parse_args(argv)
    import torch

    device = args.device or ("cuda" if torch.cuda.is_available() else None)
    args.dtype = args.dtype or ("bfloat16" if device and device.startswith("cuda") else "float32")
    if device is None:
        print(plan(args, "no CUDA GPU here; --device cpu runs part (a) on the CPU"))
        return 0
    work = args.out or Path(tempfile.mkdtemp(prefix="empg-gpu-smoke-"))
    work.mkdir(parents=True, exist_ok=True)
    report: dict[str, object] = {"device": torch.cuda.get_device_name() if device.startswith("cuda") else "cpu",
                                 "shape": args.shape, "dtype": args.dtype, "trainer": run_trainer(args, device, work)}
    print("(a) " + json.dumps(report["trainer"]), flush=True)
    why_not = "skipped (--skip-verl)" if args.skip_verl else verl_available()
    report["verl"] = why_not if why_not else run_verl(work, torch.cuda.device_count())
    if why_not:
        print(f"(b) verl: {why_not}")
    (work / "gpu_smoke.json").write_text(json.dumps(report, indent=1), encoding="utf-8")
    print(f"gpu_smoke: report in {work / 'gpu_smoke.json'}")
    failed = isinstance(report["verl"], dict) and any(v != "ok" for v in report["verl"].values())
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
