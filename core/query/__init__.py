"""Query strategies: which unlabelled items to ask the expert about next.

``get_strategy(name, **params).query(ctx, n) -> QueryResult``; see ``docs/strategies.md``.
"""

from core.query.base import QueryContext, QueryResult, QueryStrategy
from core.query.registry import STRATEGY_NAMES, get_strategy

__all__ = ["STRATEGY_NAMES", "QueryContext", "QueryResult", "QueryStrategy", "get_strategy"]
