"""vsseg_ros: video semantic segmentation for ROS 2.

The ``core`` and ``imaging`` subpackages are free of ROS imports; ``ros`` holds the thin ROS layer, and what drives a
node over DDS (``demo``, ``replay``, ``bench``, the ``commands`` of the CLI) imports rclpy only where it runs.
When built with colcon, the generated messages live beside this file in ``vsseg_ros.msg``.
"""

# Run from the source tree, this copy of the package comes first on sys.path but lacks the generated msg/;
# extending __path__ lets `vsseg_ros.msg` resolve from the colcon install as well.
__path__ = __import__("pkgutil").extend_path(__path__, __name__)

__version__ = "0.3.0"
