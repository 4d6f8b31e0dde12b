"""Server strategies."""

from lightning_fed.strategies.base import Strategy, Upload
from lightning_fed.strategies.expert_exchange import ExpertExchange
from lightning_fed.strategies.fedavg import FedAvg
from lightning_fed.strategies.local_only import LocalOnly
from lightning_fed.strategies.personalized_aggregation import PersonalizedAggregation

__all__ = ["ExpertExchange", "FedAvg", "LocalOnly", "PersonalizedAggregation", "Strategy", "Upload"]
