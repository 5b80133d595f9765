"""Prefect flows that drive the DVC stages (regenerate, retrain, promote).

They orchestrate only: stage logic lives in `tasks/`, the DAG in dvc.yaml.
"""
