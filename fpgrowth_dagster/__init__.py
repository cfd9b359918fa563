"""fpgrowth-dagster: FP-Growth frequent itemsets and association rules for many groups at once, on Dagster."""

__version__ = "0.1.0"
