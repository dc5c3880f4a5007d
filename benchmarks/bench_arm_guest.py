"""Runs inside the emulated aarch64 Python of benchmarks/bench_arm.py (no edgepack there): COUNT
inferences of one input with ONNX Runtime or LiteRT (XNNPACK, its default CPU path), one thread, and
saves the last output. bench_arm.py counts the instructions of runs with 1 and 3 inferences.

    python3.11 bench_arm_guest.py onnxruntime|litert MODEL INPUT.npy COUNT OUTPUT.npy
"""
import sys

import numpy as np


def main() -> None:
    engine, model, input_path, count, output_path = sys.argv[1:6]
    x = np.load(input_path)
    if engine == "onnxruntime":
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = options.inter_op_num_threads = 1
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        session = ort.InferenceSession(model, options, providers=["CPUExecutionProvider"])
        feed = {session.get_inputs()[0].name: x}
        for _ in range(int(count)):
            y = session.run(None, feed)[0]
    elif engine == "litert":
        from ai_edge_litert.interpreter import Interpreter

        interpreter = Interpreter(model_path=model, num_threads=1)
        interpreter.allocate_tensors()
        inp, out = interpreter.get_input_details()[0]["index"], interpreter.get_output_details()[0]["index"]
        for _ in range(int(count)):
            interpreter.set_tensor(inp, x)
            interpreter.invoke()
            y = interpreter.get_tensor(out)
    else:
        sys.exit(f"unknown engine {engine}")
    np.save(output_path, y)


if __name__ == "__main__":
    main()
