"""A stand-alone MetaChat simulator: same paths and envelopes, simulated time, money and trouble.

It imports nothing else from ``mcjobs`` so it can play the upstream honestly.
"""

from sim.app import create_sim_app
from sim.clock import Clock, ManualClock, SystemClock
from sim.config import PROFILES, SimConfig
from sim.server import SimServer, run_sim
from sim.simulator import Simulator

__all__ = [
    "PROFILES",
    "Clock",
    "ManualClock",
    "SimConfig",
    "SimServer",
    "Simulator",
    "SystemClock",
    "create_sim_app",
    "run_sim",
]
