#!/usr/bin/env bash
# EMPG over DAPO with verl (FAMILY=alfworld|webshop|deepsearch) (docs/verl.md): EMPG (k = k' = 1, zeta = 0.05) on our GRPO advantage, with
# verl's clip-higher (0.28) and dynamic sampling. Extra arguments are verl overrides.
source "$(dirname "$0")/common.sh"
launch \
  algorithm.adv_estimator=empg \
  +algorithm.empg.k=1.0 \
  +algorithm.empg.k_next=1.0 \
  +algorithm.empg.zeta=0.05 \
  actor_rollout_ref.actor.clip_ratio_high=0.28 \
  algorithm.filter_groups.enable=True \
  algorithm.filter_groups.metric=won \
  trainer.experiment_name="empg_dapo_$TAG" \
  "$@"
