#!/usr/bin/env bash
# Shared by run_{grpo,dapo,empg,empg_dapo}.sh: the data, the model and every setting the four runs share.
# ALFWorld, Qwen2.5-1.5B-Instruct, the paper's settings (docs/algorithms.md): clip 0.2, token-mean loss, KL (k3 =
# verl's low_var_kl) 0.01 as a loss, lr 1e-6, 16 tasks x 8 trajectories per update, 150 updates, reward 10 x won,
# invalid-format penalty 0.1, history 2, prompt 2048 / response 512 tokens. See docs/verl.md.
#
# Environment: MODEL (default Qwen/Qwen2.5-1.5B-Instruct), DATA (parquet folder, default ~/data/empg_gym),
# N_GPUS (per node, default 2), PYTHON (default python3, the interpreter that has verl, vLLM and empg-gym),
# PRINT_ARGS=1 prints the verl overrides and exits (the CPU tests compose verl's config from them).
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
MODEL="${MODEL:-Qwen/Qwen2.5-1.5B-Instruct}"
DATA="${DATA:-$HOME/data/empg_gym}"
N_GPUS="${N_GPUS:-2}"
PYTHON="${PYTHON:-python3}"
# Registers the empg_gym agent loop, estimators and trainer mode in every verl process (the package's verl.plugins
# entry point does too; this way a failing import raises instead of being logged at debug level).
export VERL_USE_EXTERNAL_MODULES=empg_gym.integrations.verl

export_split() {  # export_split SPLIT: one row per ALFWorld task of SPLIT (~1-2 s a task the first time)
  local out="$DATA/alfworld_$1.parquet"
  [ -f "$out" ] || "$PYTHON" -m empg_gym.cli export-verl --env EMPG-ALFWorld-v0 --split "$1" --out "$out"
}

COMMON_ARGS=(
  trainer.use_v1=True
  trainer.v1.trainer_mode=empg_gym
  data.train_files="$DATA/alfworld_train.parquet"
  "data.val_files=[$DATA/alfworld_eval_in_distribution.parquet,$DATA/alfworld_eval_out_of_distribution.parquet]"
  data.train_batch_size=16
  data.max_prompt_length=2048
  data.max_response_length=512
  actor_rollout_ref.model.path="$MODEL"
  actor_rollout_ref.model.enable_gradient_checkpointing=True
  actor_rollout_ref.model.use_remove_padding=True
  actor_rollout_ref.actor.optim.lr=1e-6
  actor_rollout_ref.actor.ppo_mini_batch_size=16  # prompts: 16 x 8 = 128 step rows an optimizer step
  actor_rollout_ref.actor.ppo_micro_batch_size_per_gpu=8
  actor_rollout_ref.actor.loss_agg_mode=token-mean
  actor_rollout_ref.actor.clip_ratio_low=0.2
  actor_rollout_ref.actor.use_kl_loss=True
  actor_rollout_ref.actor.kl_loss_coef=0.01
  actor_rollout_ref.actor.kl_loss_type=low_var_kl
  actor_rollout_ref.actor.entropy_coeff=0
  actor_rollout_ref.ref.log_prob_micro_batch_size_per_gpu=16
  actor_rollout_ref.rollout.name=vllm
  actor_rollout_ref.rollout.n=8
  actor_rollout_ref.rollout.temperature=1.0
  actor_rollout_ref.rollout.tensor_model_parallel_size=1
  actor_rollout_ref.rollout.gpu_memory_utilization=0.6
  actor_rollout_ref.rollout.log_prob_micro_batch_size_per_gpu=16
  actor_rollout_ref.rollout.agent.default_agent_loop=empg_gym
  actor_rollout_ref.rollout.agent.agent_loop_config_path="$HERE/agent_loop.yaml"
  algorithm.use_kl_in_reward=False
  algorithm.norm_adv_by_std_in_grpo=True
  trainer.total_training_steps=150
  trainer.n_gpus_per_node="$N_GPUS"
  trainer.nnodes=1
  trainer.test_freq=10
  trainer.save_freq=50
  "trainer.logger=[console]"
  trainer.project_name=empg_gym_alfworld
)

launch() {  # launch EXTRA_OVERRIDES...: run verl's PPO entry point with the common and the given overrides
  if [ "${PRINT_ARGS:-0}" = "1" ]; then
    printf '%s\n' "${COMMON_ARGS[@]}" "$@"
    exit 0
  fi
  mkdir -p "$DATA"
  export_split train
  export_split eval_in_distribution
  export_split eval_out_of_distribution
  exec "$PYTHON" -m verl.trainer.main_ppo "${COMMON_ARGS[@]}" "$@"
}
