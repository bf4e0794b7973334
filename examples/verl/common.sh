#!/usr/bin/env bash
# Shared by the run_*.sh scripts: the data, the model and every setting the runs share (docs/verl.md).
# The paper's settings (docs/algorithms.md) for Qwen2.5-1.5B-Instruct: clip 0.2, token-mean loss, KL (k3 = verl's
# low_var_kl) 0.01 as a loss, lr 1e-6, 16 tasks x 8 trajectories per update, 150 updates, reward 10 x won,
# invalid-format penalty 0.1, history 2, responses up to 512 tokens.
#
# Environment:
#   FAMILY    alfworld (default) | webshop | deepsearch: which env family to train on
#   SOURCE    ALFWorld's games: real (the default when $ALFWORLD_DATA is set: the paper's games) or procedural
#             (the default otherwise: the embedded generated games). Written into every exported row and checked
#             by every worker and at start-up, so no process silently trains on other games.
#   ATTN      the model's attention: sdpa (default; needs nothing) or flash_attention_2 (needs `pip install
#             flash-attn`; then verl's padding-free path is used too)
#   MODEL     default Qwen/Qwen2.5-1.5B-Instruct;  DATA: parquet folder, default ~/data/empg_gym
#   N_GPUS    per node, default 2;  PYTHON: the interpreter that has verl, vLLM and empg-gym (default python3)
#   PRINT_ARGS=1 prints the verl overrides and exits (the CPU tests compose verl's config from them).
# Extra arguments are verl overrides; data.train_files=/data.val_files= among them skip the matching export.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
FAMILY="${FAMILY:-alfworld}"
MODEL="${MODEL:-Qwen/Qwen2.5-1.5B-Instruct}"
DATA="${DATA:-$HOME/data/empg_gym}"
N_GPUS="${N_GPUS:-2}"
PYTHON="${PYTHON:-python3}"
ATTN="${ATTN:-sdpa}"
# Registers the empg_gym agent loop, estimators and trainer mode in every verl process (the package's verl.plugins
# entry point does too; this way a failing import raises instead of being logged at debug level).
export VERL_USE_EXTERNAL_MODULES=empg_gym.integrations.verl

# Prompt limits per family from benchmarks/verl_prompt_lengths.py (oracle episodes, history 2, SmolLM2's tokenizer;
# max step prompt: ALFWorld 1,129, WebShop 1,288, Deep Search 922 tokens on the embedded data), with room for
# longer real pages and passages; the agent loop warns when a prompt is still cut.
case "$FAMILY" in
  alfworld)
    ENV_ID=EMPG-ALFWorld-v0
    SOURCE="${SOURCE:-$([ -n "${ALFWORLD_DATA:-}" ] && echo real || echo procedural)}"
    case "$SOURCE" in real|procedural) ;; *) echo "SOURCE=$SOURCE: choose real or procedural" >&2; exit 2 ;; esac
    ENV_KWARGS="{\"source\": \"$SOURCE\"}"
    TAG="alfworld_$SOURCE"
    MAX_PROMPT=2048 ;;
  webshop)
    ENV_ID=EMPG-WebShop-v0; ENV_KWARGS="{}"; TAG=webshop; MAX_PROMPT=4096 ;;
  deepsearch)
    ENV_ID=EMPG-DeepSearch-v0; ENV_KWARGS="{}"; TAG=deepsearch; MAX_PROMPT=4096 ;;
  *) echo "FAMILY=$FAMILY: choose alfworld, webshop or deepsearch" >&2; exit 2 ;;
esac
case "$ATTN" in
  sdpa) REMOVE_PADDING=False ;;               # verl's padding-free path packs sequences: flash-attn only
  flash_attention_2) REMOVE_PADDING=True ;;
  *) echo "ATTN=$ATTN: choose sdpa or flash_attention_2" >&2; exit 2 ;;
esac

TRAIN_FILE="$DATA/${TAG}_train.parquet"
VAL_FILES="[$DATA/${TAG}_eval_in_distribution.parquet,$DATA/${TAG}_eval_out_of_distribution.parquet]"

export_split() {  # export_split SPLIT: one row per task of SPLIT, reused while its file exists (names carry the source)
  local out="$DATA/${TAG}_$1.parquet"
  if [ -f "$out" ]; then
    echo "common.sh: reusing $out"
    return
  fi
  echo "common.sh: exporting $ENV_ID $1 (env_kwargs $ENV_KWARGS) to $out"
  "$PYTHON" -m empg_gym.cli export-verl --env "$ENV_ID" --split "$1" --env-kwargs "$ENV_KWARGS" --out "$out"
}

COMMON_ARGS=(
  trainer.use_v1=True
  trainer.v1.trainer_mode=empg_gym
  data.train_files="$TRAIN_FILE"
  "data.val_files=$VAL_FILES"
  data.train_batch_size=16
  data.max_prompt_length="$MAX_PROMPT"
  data.max_response_length=512
  actor_rollout_ref.model.path="$MODEL"
  +actor_rollout_ref.model.override_config.attn_implementation="$ATTN"
  actor_rollout_ref.model.enable_gradient_checkpointing=True
  actor_rollout_ref.model.use_remove_padding="$REMOVE_PADDING"
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
  trainer.project_name="empg_gym_$TAG"
)

launch() {  # launch EXTRA_OVERRIDES...: run verl's PPO entry point with the common and the given overrides
  if [ "${PRINT_ARGS:-0}" = "1" ]; then
    printf '%s\n' "${COMMON_ARGS[@]}" "$@"
    exit 0
  fi
  mkdir -p "$DATA"
  local own_train=0 own_val=0 arg
  for arg in "$@"; do
    case "$arg" in
      data.train_files=*|+data.train_files=*|++data.train_files=*) own_train=1 ;;
      data.val_files=*|+data.val_files=*|++data.val_files=*) own_val=1 ;;
    esac
  done
  [ "$own_train" = 1 ] || export_split train
  if [ "$own_val" = 0 ]; then
    export_split eval_in_distribution
    export_split eval_out_of_distribution
  fi
  exec "$PYTHON" -m verl.trainer.main_ppo "${COMMON_ARGS[@]}" "$@"
}
