#!/usr/bin/env bash
# GRPO with verl (FAMILY=alfworld|webshop|deepsearch) (docs/verl.md). Extra arguments are verl overrides, e.g. trainer.total_training_steps=10.
# The estimator is empg_gym_grpo, our GRPO, so that GRPO and EMPG differ only by EMPG's modulation: it is verl's own
# `grpo` minus each malformed step's format penalty, which every empg-gym estimator subtracts from the advantage.
source "$(dirname "$0")/common.sh"
launch \
  algorithm.adv_estimator=empg_gym_grpo \
  actor_rollout_ref.actor.clip_ratio_high=0.2 \
  trainer.experiment_name="grpo_$TAG" \
  "$@"
