"""Jobs that turn a checkpoint into another model file, each checked: an exported ONNX model directory
(:mod:`.export`), the compact fp16 default model the package ships (:mod:`.package`) and a temporal checkpoint
with its MAR memory built from a dataset (:mod:`.mar_memory`). ROS-free."""
