#!/usr/bin/env bash
# The video benchmark clips: 1280x720 25 fps H.264, a still photo (test/fixtures/images/chelsea.png)
# with a moving, animated 320x180 testsrc2 box in the last 10 s of every 16 s, so part of every frame
# is static (what differential pruning drops) and part changes.
# Usage: tools/bench/make-video.sh <seconds> <out.mp4>     e.g. 16 (TTFT), 10 and 180 (memory)
set -euo pipefail
cd "$(dirname "$0")/../.."
ffmpeg -v error -y -loop 1 -i test/fixtures/images/chelsea.png -f lavfi -i testsrc2=size=320x180:rate=25 \
  -filter_complex "[0]scale=1280:720,setsar=1[bg];[bg][1]overlay=x='if(lt(mod(t,16),6),40,40+(mod(t,16)-6)*80)':y=270:shortest=1" \
  -t "$1" -r 25 -c:v libx264 -preset veryfast -pix_fmt yuv420p "$2"
