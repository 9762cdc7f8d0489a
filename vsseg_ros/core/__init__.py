"""ROS-free core: models, the Segmenter interface, checkpoints, visualisation."""
