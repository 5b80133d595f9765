"""Forward operators: the 2D ray transform with its adjoint and FBP."""

from .backends import BACKENDS, system_matrix
from .fbp import FILTERS
from .geometry import Geometry
from .ray_transform import RayTransform

__all__ = ["BACKENDS", "FILTERS", "Geometry", "RayTransform", "system_matrix"]
