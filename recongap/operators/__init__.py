"""Forward operators behind one interface (`LinearOperator`): the 2D ray
transform with FBP, single-pixel imaging, undersampled MRI, deblurring and
1-D integration."""

from .backends import BACKENDS, system_matrix
from .base import LinearOperator
from .blur import Blur
from .fbp import FILTERS
from .geometry import Geometry
from .integration import Integration
from .mri import UndersampledFourier
from .ray_transform import RayTransform
from .single_pixel import SinglePixel

__all__ = ["BACKENDS", "Blur", "FILTERS", "Geometry", "Integration", "LinearOperator", "RayTransform", "SinglePixel", "UndersampledFourier", "system_matrix"]
