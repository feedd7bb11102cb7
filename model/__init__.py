"""keepwise models: churn, value and offer response; decision policy; MLflow I/O."""
