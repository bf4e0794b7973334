#!/usr/bin/env bash
# GiGPO on verl (docs/verl.md): episode-level GRPO plus a step-level term normalised within groups of steps that share
# the task and an identical observation (gamma 0.95, omega 1: our preset's defaults; override with
# algorithm.gigpo.omega=... etc.). FAMILY=alfworld|webshop|deepsearch; extra arguments are verl overrides.
source "$(dirname "$0")/common.sh"
launch \
  algorithm.adv_estimator=gigpo \
  +algorithm.gigpo.omega=1.0 \
  +algorithm.gigpo.gamma=0.95 \
  actor_rollout_ref.actor.clip_ratio_high=0.2 \
  trainer.experiment_name="gigpo_$TAG" \
  "$@"
