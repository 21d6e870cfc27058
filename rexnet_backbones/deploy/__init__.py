"""Inference deployment: BN folding (``fuse``), ONNX export (``onnx``)."""
