"""Forecasting: quantile forecasts of request rate and honest rolling-origin backtests.

Methods: persistence, seasonal-naive (-week), the weekday x time-of-day profile, profile-ar (profile plus
the decaying latest deviation), ETS (Holt-Winters via statsmodels), an error-weighted ensemble, and ``auto``
(chosen on each method's recent calibrated errors).
"""

from fleetwise.forecast.backtest import DEFAULT_QUANTILES, Score, backtest
from fleetwise.forecast.forecaster import Forecast, Forecaster, QuantileForecaster
from fleetwise.forecast.models import METHODS
from fleetwise.forecast.rolling import AUTO_CANDIDATES

__all__ = ["AUTO_CANDIDATES", "DEFAULT_QUANTILES", "METHODS", "Forecast", "Forecaster", "QuantileForecaster",
           "Score", "backtest"]
