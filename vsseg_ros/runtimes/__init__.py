"""ROS-free deployment runtimes: exported ONNX models and the engines that run them (ONNX Runtime, OpenVINO).

- :mod:`.manifest`: the self-describing exported model directory (``vsseg_model.json`` + graphs);
- :mod:`.export`: a checkpoint's network -> ONNX graph(s) (per-frame: one; temporal: features + fusion);
- :mod:`.sessions`: one graph on one engine (threads, execution providers, TensorRT engine cache);
- :mod:`.exported_net`: the graphs behind the same calls the torch networks answer, so the per-frame and
  temporal segmenters (pre/post-processing, streaming) stay one implementation for every backend;
- :mod:`.backends`: which backends exist here, ``auto``, and the errors that list what is available;
- :mod:`.quantize`: int8 static quantization calibrated on training frames.

onnx, onnxruntime and openvino are imported only where used.
"""
