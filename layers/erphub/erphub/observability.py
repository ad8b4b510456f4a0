"""The one Logger and the one Metrics object of the process; nobody else creates them.

The template sets POWERTOOLS_SERVICE_NAME and POWERTOOLS_METRICS_NAMESPACE; the defaults here only
matter where the module is imported before the environment is set (tests, local tools).
"""

from __future__ import annotations

import os

from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.metrics import MetricUnit

SERVICE = os.environ.get("POWERTOOLS_SERVICE_NAME", "erphub")
NAMESPACE = os.environ.get("POWERTOOLS_METRICS_NAMESPACE", "erphub")

logger = Logger(service=SERVICE)
metrics = Metrics(namespace=NAMESPACE, service=SERVICE)

__all__ = ["MetricUnit", "logger", "metrics"]
