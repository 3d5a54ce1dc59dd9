"""A local stand-in for the useapi.net Runway API, for tests, benchmarks and the demo.

``create_app()`` builds the Flask app; ``python -m simulator`` serves it.
"""

from simulator.app import create_app, get_state
from simulator.config import SimulatorConfig

__all__ = ["SimulatorConfig", "create_app", "get_state"]
