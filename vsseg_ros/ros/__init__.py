"""The thin ROS 2 layer: the segmentation node, its parameters, QoS and message conversion."""
