"""Reference servers `make bench` runs beside the service, under the same uvicorn settings."""
