"""distgmm: Gaussian-mixture clustering (EM) for data that does not fit on one machine."""

from .estimator import GaussianMixture
from .numerics.params import GMMParams

__all__ = ["GMMParams", "GaussianMixture"]
__version__ = "0.1.0"
