"""HTML pages read from run folders: a run's summary page, the comparison of runs, and the template helpers (the
prediction gallery's template lives here too). Pages only read what runs wrote; they never run a stage.
"""
