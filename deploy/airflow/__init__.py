"""Local Airflow 3 deployment: start, check and stop the components by pid."""
