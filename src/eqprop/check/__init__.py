"""Check harness: prove a learner equal to its baseline within the error the theory predicts."""

from .angles import angle_deg, angles
from .compare import Comparison, ParameterComparison, compare, relative_error
from .gdu import GDUReport, bptt_per_step, gdu
from .sweep import Sweep, beta_sweep, log_log_slope

__all__ = ["angles", "angle_deg", "compare", "Comparison", "ParameterComparison", "relative_error", "beta_sweep", "Sweep", "log_log_slope", "gdu", "GDUReport", "bptt_per_step"]
