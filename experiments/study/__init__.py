"""User studies of generated videos: `dtl study create | serve | report | migrate` (blind 2AFC and MOS designs).

plan: the balanced, counterbalanced trial plan; sources: the compared methods' videos; attention: the audio-shifted
check videos; models, migrations/, database, store: the database, its schema and a new study's rows; server, guard,
pages, static/, participation, wording: the participant web application; results, statistics, report,
report_output: the analysis and its files; cli: the commands. Nothing below experiments/ imports this package.
"""
