#!/usr/bin/env bash
# System libraries for Qt's xcb plugin, a virtual X server (Xvfb) and Mesa OpenGL for VTK.
# Debian/Ubuntu; safe to run again. Uses sudo only when not root.
set -euo pipefail
command -v apt-get >/dev/null 2>&1 || { echo "apt-get not found: install Xvfb and the Qt xcb libraries by hand"; exit 0; }
SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends \
  xvfb xauth libxcb-icccm4 libxcb-image0 libxcb-keysyms1 libxcb-randr0 libxcb-render-util0 \
  libxcb-shape0 libxcb-xinerama0 libxcb-xkb1 libxkbcommon-x11-0 libxcb-cursor0 \
  libegl1 libgl1 libglx-mesa0 libegl-mesa0 libgl1-mesa-dri libosmesa6 libdbus-1-3 libfontconfig1 >/dev/null
