"""Training and conversion scripts: cue datasets, encoders, ONNX / TensorRT export."""

import os
from pathlib import Path


def default_data() -> Path:
    """The shared data folder: $DEEMO_DATA, else ../shared/data next to the repository."""
    return Path(os.environ.get("DEEMO_DATA", Path(__file__).resolve().parents[1] / "../shared/data"))
