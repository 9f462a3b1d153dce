"""Training and conversion scripts: cue datasets, encoders, ONNX / TensorRT export."""
