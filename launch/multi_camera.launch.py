"""Start vsseg_ros segmentation_node for several cameras: one model, each camera's outputs beside its image.

    ros2 launch vsseg_ros multi_camera.launch.py \
        image_topics:=/cam_front/image_raw,/cam_rear/image_raw,/cam_left/image_raw,/cam_right/image_raw

/cam_front/image_raw gives /cam_front/semantic/mask, ... and /cam_front/semantic/camera_info (from
/cam_front/camera_info). `image_topics` overrides the parameters file's list only when given; the default file
is the installed config/multi_camera.yaml (four cameras). The other arguments are segmentation.launch.py's; the
rules live in vsseg_ros/ros/launch_args.py (tested without launch).
"""

from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, OpaqueFunction
from launch.substitutions import LaunchConfiguration, PathJoinSubstitution
from launch_ros.actions import Node
from launch_ros.substitutions import FindPackageShare

from vsseg_ros.ros.launch_args import MULTI_CAMERA_ARGUMENTS, multi_camera_settings


def _node(context):
    given = {name: LaunchConfiguration(name).perform(context) for name in MULTI_CAMERA_ARGUMENTS}
    default_params = PathJoinSubstitution([FindPackageShare("vsseg_ros"), "config", "multi_camera.yaml"])
    settings = multi_camera_settings(given, default_params.perform(context))
    return [Node(package="vsseg_ros", output="screen", emulate_tty=True, **settings)]


def generate_launch_description() -> LaunchDescription:
    args = [DeclareLaunchArgument(name, default_value=default, description=description)
            for name, (default, description) in MULTI_CAMERA_ARGUMENTS.items()]
    return LaunchDescription([*args, OpaqueFunction(function=_node)])
