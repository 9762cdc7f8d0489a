"""Start vsseg_ros segmentation_node.

    ros2 launch vsseg_ros segmentation.launch.py image_topic:=/sensing/camera/front/image_rect_color \
        namespace:=front device:=cuda:0 fastdds_profile:=true

The parameters file comes first; `device` and `use_sim_time` override it only when given (by default they are
empty and the file's values stand). `lifecycle:=true` starts the managed node, segmentation_lifecycle_node, which
waits unconfigured for a lifecycle manager. `fastdds_profile:=true` gives the node process the shipped Fast DDS
profile, so its camera-sized outputs reach best-effort subscribers (the camera driver needs it too for its frames
to reach the node). Everything else, the temporal models' `temporal_mode` and `max_frame_gap` included, is set in
the parameters file, so no launch argument silently overrides it. The rules live in
vsseg_ros/ros/launch_args.py (tested without launch). DDS discovery is left at the ROS default here (a vehicle's
peers are on other computers).
"""

from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, OpaqueFunction
from launch.substitutions import LaunchConfiguration, PathJoinSubstitution
from launch_ros.actions import Node
from launch_ros.substitutions import FindPackageShare

from vsseg_ros.ros.launch_args import ARGUMENTS, node_settings


def _node(context):
    given = {name: LaunchConfiguration(name).perform(context) for name in ARGUMENTS}
    default_params = PathJoinSubstitution([FindPackageShare("vsseg_ros"), "config", "segmentation.yaml"])
    settings = node_settings(given, default_params.perform(context))
    return [Node(package="vsseg_ros", output="screen", emulate_tty=True, **settings)]


def generate_launch_description() -> LaunchDescription:
    args = [DeclareLaunchArgument(name, default_value=default, description=description)
            for name, (default, description) in ARGUMENTS.items()]
    return LaunchDescription([*args, OpaqueFunction(function=_node)])
