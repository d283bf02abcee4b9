"""The study engine: tasks with keys, stages, a store on disk, executors, results and report publishing.

:mod:`serobust.pipeline` reads as the table of contents of a study and uses these modules.
"""
