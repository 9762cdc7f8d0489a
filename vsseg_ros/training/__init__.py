"""Training: targets and trainers (ROS-free)."""
