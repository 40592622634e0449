#!/bin/bash
# Issue 15 decisions: paired 300-step demo-sized runs on BSDS500 train, then one eval on 50 train photos.
cd "$(dirname "$0")/.." && . .venv/bin/activate
D=../shared/datasets/BSDS500/images/train
COMMON="--set train.iterations=300 --set train.checkpoint_every=100 --set grouping.infer_hierarchy=transformers"
run() { name=$1; shift; [ -f runs/fid15/$name/checkpoint.pt ] && grep -q '"step": 300' runs/fid15/$name/log.jsonl 2>/dev/null && return
  echo "== $name $(date +%T)"; hsg train --config demo --data $D --out runs/fid15/$name $COMMON "$@" > runs/fid15/$name.log 2>&1; echo "   done $(date +%T)"; }
run base
run form_original --set grouping.form=original
run dropout01 --set grouping.dropout=0.1
run kmeans_original --set grouping.kmeans_init=original
run normw_weight --set train.norm_weight_group=weight
run dmon_joint --set loss.dmon_graph=joint
run base_seed2 --set train.seed=236
echo "== eval $(date +%T)"
hsg eval bsds --bsds ../shared/datasets/BSDS500 --split train --limit 50 --baselines none --no-curves \
  --checkpoint runs/fid15/base/checkpoint.pt \
  --compare form_original=runs/fid15/form_original/checkpoint.pt \
  --compare dropout01=runs/fid15/dropout01/checkpoint.pt \
  --compare kmeans_original=runs/fid15/kmeans_original/checkpoint.pt \
  --compare normw_weight=runs/fid15/normw_weight/checkpoint.pt \
  --compare dmon_joint=runs/fid15/dmon_joint/checkpoint.pt \
  --compare base_seed2=runs/fid15/base_seed2/checkpoint.pt \
  --out runs/fid15/eval > runs/fid15/eval.log 2>&1
echo "== all done $(date +%T)"
