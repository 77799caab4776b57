"""``egotune ui``: a read-only web view of the experiments in a storage folder, live while they run.

The Ray dashboard shows jobs, actors and nodes but no trials; this shows the trials. Its pages list
the experiments, then for one experiment the trial table, learning curves, the Fig. 10-style pivot
heatmap, hyperparameter importance, parallel coordinates and the time spent per epoch, for one
trial its curves, configuration and log folders, and two trials side by side. Every number is
computed by :mod:`tuner.results`, as ``egotune results`` prints it; the pages poll the tables and
redraw when a search writes. The charts are Plotly's, served from the installed ``plotly`` package
(nothing is fetched from the network).

Modules: ``_cache`` (experiments read once per change of their files), ``views`` (the JSON the
pages draw), ``_statistics`` (where the predictions' statistics enter), ``_app`` (routes, guards),
``_dashboard`` (is the Ray dashboard up), ``_server`` (binding, token rule, uvicorn). Like
``tuner.results`` it imports neither ray nor torch.
"""

from tuner.ui._app import create_app
from tuner.ui._server import DEFAULT_PORT, TOKEN_ENV, is_loopback, read_token, serve
from tuner.ui._statistics import Statistics, TrialStatistics

__all__ = [
    "DEFAULT_PORT",
    "TOKEN_ENV",
    "Statistics",
    "TrialStatistics",
    "create_app",
    "is_loopback",
    "read_token",
    "serve",
]
