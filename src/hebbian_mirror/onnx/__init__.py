"""ONNX files written by `hebbian-mirror export` as a family: Darknet's own stages around onnxruntime."""
