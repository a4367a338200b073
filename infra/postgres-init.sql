-- One PostgreSQL for the Prefect server's database and MLflow's backend store.
CREATE DATABASE prefect OWNER ranking;
CREATE DATABASE mlflow OWNER ranking;
