"""Formats other runtimes read: the int8 plan written for them (tflite_export: LiteRT / TFLite)."""
