#!/usr/bin/env bash
# Packs what scripts/device-check.sh needs on a GPU machine that has no network (and maybe no
# Node.js) into .device/ (git-ignored), so that it can travel beside a checkout:
#   .device/node.xz               this machine's Node.js binary, compressed (~24 MB)
#   .device/node_modules.tar.xz   node_modules without build-only packages (~17 MB)
#   .device/ggml.tar.xz           the pinned ggml source (deps/ggml, ~2 MB)
# plus dist/ (the compiled TypeScript, git-ignored too). Carry `.device` and `dist`.
# Usage: bash scripts/device-pack.sh   (after npm install)
set -euo pipefail
cd "$(dirname "$0")/.."
node scripts/build-ts.mjs
node scripts/fetch-ggml.mjs
rm -rf .device && mkdir -p .device
xz -T0 -6 -c "$(readlink -f "$(command -v node)")" > .device/node.xz
tar cJf .device/node_modules.tar.xz --exclude=node_modules/typescript --exclude=node_modules/prebuildify \
  --exclude='node_modules/@types' --exclude='node_modules/.cache' node_modules
tar cJf .device/ggml.tar.xz deps/ggml
du -sh .device dist
