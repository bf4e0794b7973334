#!/usr/bin/env bash
# DAPO with verl (FAMILY=alfworld|webshop|deepsearch) (docs/verl.md): our GRPO advantage with verl's clip-higher (0.28) and verl's dynamic
# sampling (drop groups whose trajectories all won or all failed, and draw more). Extra arguments are verl overrides.
source "$(dirname "$0")/common.sh"
launch \
  algorithm.adv_estimator=empg_gym_grpo \
  actor_rollout_ref.actor.clip_ratio_high=0.28 \
  algorithm.filter_groups.enable=True \
  algorithm.filter_groups.metric=won \
  trainer.experiment_name="dapo_$TAG" \
  "$@"
