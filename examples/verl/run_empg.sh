#!/usr/bin/env bash
# EMPG over GRPO with verl (FAMILY=alfworld|webshop|deepsearch) (docs/verl.md): k = k' = 1, zeta = 0.05 (the paper's). Extra arguments are
# verl overrides.
source "$(dirname "$0")/common.sh"
launch \
  algorithm.adv_estimator=empg \
  +algorithm.empg.k=1.0 \
  +algorithm.empg.k_next=1.0 \
  +algorithm.empg.zeta=0.05 \
  actor_rollout_ref.actor.clip_ratio_high=0.2 \
  trainer.experiment_name="empg_$TAG" \
  "$@"
