"""deemo-edge: on-device, privacy-preserving multimodal emotion recognition and reasoning."""

__version__ = "0.1.0"
