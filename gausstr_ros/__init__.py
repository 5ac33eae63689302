"""GaussTR ROS 2 node, message builders and bag tools.

The generated interfaces (`gausstr_ros.msg`) may be installed in a different directory from
these sources (a venv developer build, or a colcon install overlay): `extend_path` makes both
directories parts of one package.
"""

from pkgutil import extend_path

import gausstr_core  # noqa: F401  (sets OMP_WAIT_POLICY before torch loads; see gausstr_core/__init__.py)

__path__ = extend_path(__path__, __name__)
