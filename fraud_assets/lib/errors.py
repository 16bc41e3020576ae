"""The errors a user causes (bad input, bad names) and gets as one readable line from the CLI,
rather than a traceback."""

from fraud_assets.lib.aws.storage import InvalidKeyError
from fraud_assets.lib.experimentation.experiments import ExperimentNotFound
from fraud_assets.lib.experimentation.promotion import ProductionChangeRefused
from fraud_assets.lib.inference.daily import BatchError, MissingBatchError
from fraud_assets.lib.training.endpoint import RollbackRefused
from fraud_assets.lib.training.hyperparameters import HyperparameterError
from fraud_assets.lib.training.raw_data import RawDataError

USER_ERRORS: tuple[type[Exception], ...] = (
    RawDataError,
    BatchError,
    MissingBatchError,
    HyperparameterError,
    ProductionChangeRefused,
    InvalidKeyError,
    FileNotFoundError,
    RollbackRefused,
    ExperimentNotFound,
)
