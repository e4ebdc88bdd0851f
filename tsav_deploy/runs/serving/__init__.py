"""``tsav serve``: the model as an HTTP service on Ray Serve (README "Serving").

settings (the service's options, checked up front) → launch (Ray, Serve, the deployments) →
ingress (the FastAPI routes; intake checks each request, jobs keeps asynchronous results) and
replica (the network deployment, whose batches join concurrent requests' frames); telemetry holds
the Prometheus metrics. Ray is an optional extra, imported only when the service starts.
"""

from tsav_deploy.runs.serving.settings import ServeOptions

__all__ = ["ServeOptions"]
