"""Synthetic driving world written in the real nuScenes / Occ3D formats.

Modules: `palette` (class colours), `rig` (cameras), `scene` (procedural primitives), `raycast`
(exact vectorised ray casting), `render` (images, depth), `occupancy` (Occ3D labels and masks),
`tables` (nuScenes JSON tables), `generate` (the whole tree; CLI `gausstr-synth`).
"""
