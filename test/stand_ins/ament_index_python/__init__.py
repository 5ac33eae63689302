"""Stand-in for `ament_index_python` (see test/stand_ins/README.md)."""
