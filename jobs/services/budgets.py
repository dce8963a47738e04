"""Owners' budgets: what a month of an owner's worker-seconds cost, and the refusal of a submit past it."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from jobs.domain import Prices, month_of
from jobs.errors import BudgetExceeded
from jobs.ports import BudgetRepository
from jobs.ports.values import OwnerSpend


@dataclass(frozen=True)
class Spending:
    """What a submit checks an owner's spend with, bound once per process (jobs/wiring.py: `spending`)."""

    budgets: BudgetRepository
    prices: Prices


@dataclass(frozen=True)
class Usage:
    """An owner's month: worker-seconds, their price, the budget (None: none) and what is left of it."""

    month: str
    worker_seconds: float
    spent: float
    budget: float | None

    @property
    def remaining(self) -> float | None:
        return None if self.budget is None else round(max(self.budget - self.spent, 0.0), 2)

    def as_dict(self) -> dict:
        return {
            "month": self.month,
            "worker_seconds": round(self.worker_seconds, 1),
            "spent": round(self.spent, 2),
            "budget": self.budget,
            "remaining": self.remaining,
        }


def usage_get(*, spending: Spending, owner: str, now: datetime) -> Usage:
    """The owner's spend this calendar month (UTC), priced at the configured prices."""
    return _priced(spending, spending.budgets.spend(owner, month=month_of(now)))


def _priced(spending: Spending, spend: OwnerSpend) -> Usage:
    return Usage(
        month=spend.month,
        worker_seconds=spend.worker_seconds,
        spent=spending.prices.dollars(spend.worker_seconds),
        budget=spend.budget,
    )


def budget_check(*, spending: Spending, owner: str, now: datetime) -> None:
    """429 budget_exceeded when the owner has a budget and this month's spend has reached it."""
    spend = spending.budgets.budgeted_spend(owner, month=month_of(now))
    if spend is None:
        return
    usage = _priced(spending, spend)
    if usage.budget is None or usage.spent < usage.budget:
        return
    raise BudgetExceeded(
        f"This owner's budget of ${usage.budget:.2f} for {usage.month} is spent (${usage.spent:.2f} so far); "
        "ask an operator to raise it, or wait for next month.",
        details={"budget": usage.budget, "spent": round(usage.spent, 2), "month": usage.month},
    )


def budget_set(*, budgets: BudgetRepository, owner: str, dollars: float | None, now: datetime) -> None:
    """Set the owner's monthly budget in dollars (None clears it); a negative budget is a caller's error."""
    if dollars is not None and dollars < 0:
        raise ValueError("a budget is 0 dollars or more")
    budgets.set_budget(owner, dollars, now=now)
