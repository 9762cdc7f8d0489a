"""Hostile input for the decoders: images built to cost a decoder far more than their size (:mod:`.images`), their
cost measured one process each (:mod:`.bombs`), and property-based fuzzing of both decoders (:mod:`.fuzz`).
ROS-free; the commands are ``vsseg-ros decode-bombs`` and ``vsseg-ros fuzz-decoders``."""
