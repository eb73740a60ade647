"""HTTP: the FastAPI application every service serves, bearer-token authentication and roles."""
