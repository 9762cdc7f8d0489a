"""ROS-free image decoding and encoding: sensor_msgs Image / CompressedImage payloads -> HxWx3 uint8 RGB arrays
(:mod:`.decode`, its header checks :mod:`.sniff`) and back (:mod:`.encode`). Import from those modules."""
