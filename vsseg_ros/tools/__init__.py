"""Command-line jobs around the node: demo, bench (they import rclpy lazily)."""
