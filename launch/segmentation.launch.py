"""Start vsseg_ros segmentation_node.

    ros2 launch vsseg_ros segmentation.launch.py image_topic:=/sensing/camera/front/image_rect_color \
        namespace:=front device:=cuda:0

The `device` and `use_sim_time` arguments are always passed after `params_file`, so they win over the same keys
in the parameters file (set `device:=...` here rather than in the file). Everything else, the temporal models'
`temporal_mode` (causal / centered) and `max_frame_gap` included, is set in the parameters file, so there is no
launch argument that could silently override it.
DDS discovery is left at the ROS default here (a vehicle's peers are on other computers).
"""

from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument
from launch.substitutions import LaunchConfiguration, PathJoinSubstitution
from launch_ros.actions import Node
from launch_ros.substitutions import FindPackageShare


def generate_launch_description() -> LaunchDescription:
    default_params = PathJoinSubstitution([FindPackageShare("vsseg_ros"), "config", "segmentation.yaml"])
    args = [
        DeclareLaunchArgument("params_file", default_value=default_params,
                              description="node parameters YAML (/**: ros__parameters:)"),
        DeclareLaunchArgument("image_topic", default_value="/camera/image_raw",
                              description="camera topic the node's `image` input is remapped to"),
        DeclareLaunchArgument("namespace", default_value="",
                              description="namespace of the node and its semantic/* outputs"),
        DeclareLaunchArgument("use_sim_time", default_value="false",
                              description="use /clock (rosbag replay with --clock)"),
        DeclareLaunchArgument("device", default_value="auto", description="auto, cpu, cuda or cuda:N"),
    ]
    node = Node(
        package="vsseg_ros",
        executable="segmentation_node",
        name="segmentation_node",
        namespace=LaunchConfiguration("namespace"),
        output="screen",
        emulate_tty=True,
        parameters=[LaunchConfiguration("params_file"),
                    {"use_sim_time": LaunchConfiguration("use_sim_time"),
                     "device": LaunchConfiguration("device")}],
        # The node subscribes <resolved image topic>/compressed itself when image_transport is compressed.
        remappings=[("image", LaunchConfiguration("image_topic"))],
    )
    return LaunchDescription([*args, node])
