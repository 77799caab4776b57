"""Prefix sharing on Ray Tune: the epochs that trials of a grid compute identically, run once.

The plan (which trial computes which epochs, where the others branch) is a property of the space
and computed without Ray (:func:`tuner.spaces.plan_sharing`). Here: :mod:`.searcher`, the Ray
Tune searcher that hands the trials out as their starting states appear, and :mod:`.trial`, the
files that tell each trial its part of the plan.
"""
