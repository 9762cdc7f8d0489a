"""`vsseg-ros replay`: a bag played live through the segmentation node over DDS and what comes back scored. The
cameras of a replay (:mod:`.cameras`), the rclpy node that plays and records (:mod:`.player`), the live run with its
node (:mod:`.live`) and the scoring of the recorded outputs (:mod:`.score`); the command is
:mod:`vsseg_ros.commands.replay`."""
