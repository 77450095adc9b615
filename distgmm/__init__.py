"""distgmm: Gaussian-mixture clustering (EM) for data that does not fit on one machine."""

__version__ = "0.1.0"

from .estimator import GaussianMixture  # noqa: E402
from .jobspec import JobSpec  # noqa: E402
from .model import load_model, save_model  # noqa: E402
from .numerics.params import GMMParams  # noqa: E402
from .runner import predict_job, run_job  # noqa: E402
from .selection import select_model  # noqa: E402
from .sources import open_source  # noqa: E402

__all__ = ["GMMParams", "GaussianMixture", "JobSpec", "load_model", "open_source",
           "predict_job", "run_job", "save_model", "select_model"]
