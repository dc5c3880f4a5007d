"""Other runtimes: the int8 plan in their format (.tflite: tflite_export, tflite_import) and the runtimes
themselves as the peers an artifact is checked against (LiteRT: litert; ONNX Runtime: onnxruntime)."""
