"""Forward operators behind one interface (`LinearOperator`): the 2D ray
transform with FBP, single-pixel imaging, undersampled MRI, deblurring and
1-D integration."""

from .backends import BACKENDS, system_matrix
from .base import LinearOperator
from .blur import Blur
from .fbp import FILTERS
from .forward import CT_KINDS, OPERATOR_KINDS, SIGNAL_KINDS, canonical, operator_from, operator_kind
from .geometry import Geometry
from .integration import Integration
from .mri import UndersampledFourier
from .ray_transform import RayTransform
from .single_pixel import SinglePixel

__all__ = [
    "BACKENDS", "Blur", "CT_KINDS", "FILTERS", "Geometry", "Integration", "LinearOperator", "OPERATOR_KINDS", "RayTransform",
    "SIGNAL_KINDS", "SinglePixel", "UndersampledFourier", "canonical", "operator_from", "operator_kind", "system_matrix",
]
