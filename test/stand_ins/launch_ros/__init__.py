"""Stand-in for ROS 2 `launch_ros` (see test/stand_ins/README.md)."""
